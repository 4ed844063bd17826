package botapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of what bots send, the node's own where MAX publishes none
// (broker/wire's Content).
const (
	maxText          = 4000 // characters of a message's text
	maxAttachments   = 10   // files of one message, the keyboard aside
	maxRows          = 30   // rows of an inline keyboard
	maxRowButtons    = 7    // buttons of one row
	maxButtons       = 210  // buttons of one keyboard
	maxButtonText    = 128  // characters of a button's text
	maxButtonPayload = 1024 // bytes of a callback button's payload
	maxStartParam    = 512  // bytes of an open_app button's payload
	maxURL           = 2048 // bytes of a URL
	maxToken         = 512  // bytes of an upload token or photo token
	maxMid           = 128  // bytes of a message id
	maxCommands      = 32   // commands of a bot
	maxCommandName   = 64   // characters of a command's name
	maxCommandDesc   = 128  // characters of a command's description
	maxTitle         = 200  // characters of a chat's title
	maxNotification  = 4000 // characters of a callback's notification
	maxUserIDs       = 100  // users of one members request
	maxSecret        = 256  // bytes of a webhook's secret
	minSecret        = 5    // bytes of a webhook's secret, when set
	maxUpdateTypes   = 32   // update types of one request
	maxUpdateType    = 64   // bytes of an update type's name
)

// decodeJSON decodes exactly one JSON value from b into v, refusing
// fields v does not have and anything after the value.
func decodeJSON(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return Errorf(ErrBadJSON, "the request has no JSON body")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return Errorf(ErrBadJSON, "malformed JSON: %s", jsonReason(err))
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return Errorf(ErrBadJSON, "malformed JSON: data after the value")
	}
	return nil
}

// jsonReason is err's text without the package prefix.
func jsonReason(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}

// badRequest returns a 400 proto.payload error with a message.
func badRequest(format string, args ...any) error {
	return Errorf(ErrBadRequest, format, args...)
}

// decodeNewMessageBody decodes and checks a message a bot sends (POST
// /messages) or edits (PUT /messages). A sent message must have text or
// attachments.
func decodeNewMessageBody(b []byte, send bool) (NewMessageBody, error) {
	var m NewMessageBody
	if err := decodeJSON(b, &m); err != nil {
		return m, err
	}
	return m, validateNewMessageBody(&m, send)
}

// validateNewMessageBody checks m against the limits.
func validateNewMessageBody(m *NewMessageBody, send bool) error {
	if m.Text != nil && utf8.RuneCountInString(*m.Text) > maxText {
		return ErrTooLong
	}
	if m.Format != nil {
		switch *m.Format {
		case "", "markdown", "html":
		default:
			return badRequest("format must be \"markdown\" or \"html\"")
		}
	}
	if l := m.Link; l != nil {
		if l.Type != "reply" && l.Type != "forward" {
			return badRequest("link.type must be \"reply\" or \"forward\"")
		}
		if !validMid(l.Mid) {
			return badRequest("link.mid is not a message id")
		}
	}
	files, keyboards := 0, 0
	for i := range m.Attachments {
		a := &m.Attachments[i]
		if err := validateAttachment(a); err != nil {
			return err
		}
		if a.Type == "inline_keyboard" {
			keyboards++
		} else {
			files++
		}
	}
	if files > maxAttachments {
		return badRequest("a message has at most %d attachments", maxAttachments)
	}
	if keyboards > 1 {
		return badRequest("a message has at most one inline_keyboard")
	}
	if send && (m.Text == nil || *m.Text == "") && len(m.Attachments) == 0 {
		return badRequest("the message has neither text nor attachments")
	}
	return nil
}

// validateAttachment checks one attachment of a message.
func validateAttachment(a *AttachmentRequest) error {
	p := &a.Payload
	switch a.Type {
	case "image":
		if p.Buttons != nil {
			return badRequest("an image has no buttons")
		}
		n := 0
		if p.Token != "" {
			n++
		}
		if p.URL != "" {
			n++
			if !validHTTPURL(p.URL) {
				return badRequest("image url must be an http or https URL")
			}
		}
		if len(p.Photos) > 0 {
			n++
			if len(p.Photos) > maxAttachments {
				return badRequest("too many photos")
			}
			for _, ph := range p.Photos {
				if !validToken(ph.Token) {
					return badRequest("a photo's token is malformed")
				}
			}
		}
		if n != 1 {
			return badRequest("an image has one of token, url or photos")
		}
		if p.Token != "" && !validToken(p.Token) {
			return badRequest("the image's token is malformed")
		}
	case "video", "audio", "file":
		if p.URL != "" || p.Photos != nil || p.Buttons != nil {
			return badRequest("a %s has only a token", a.Type)
		}
		if !validToken(p.Token) {
			return badRequest("a %s needs the token of its upload", a.Type)
		}
	case "inline_keyboard":
		if p.Token != "" || p.URL != "" || p.Photos != nil {
			return badRequest("an inline_keyboard has only buttons")
		}
		return validateKeyboard(p.Buttons)
	case "":
		return badRequest("an attachment has no type")
	default:
		return badRequest("attachment type %q is not supported", clip(a.Type))
	}
	return nil
}

// validateKeyboard checks an inline keyboard's rows and buttons.
func validateKeyboard(rows [][]Button) error {
	if len(rows) == 0 {
		return badRequest("an inline_keyboard has no buttons")
	}
	if len(rows) > maxRows {
		return badRequest("an inline_keyboard has at most %d rows", maxRows)
	}
	total := 0
	for _, row := range rows {
		if len(row) == 0 {
			return badRequest("an inline_keyboard's row is empty")
		}
		if len(row) > maxRowButtons {
			return badRequest("a row has at most %d buttons", maxRowButtons)
		}
		total += len(row)
		for i := range row {
			if err := validateButton(&row[i]); err != nil {
				return err
			}
		}
	}
	if total > maxButtons {
		return badRequest("an inline_keyboard has at most %d buttons", maxButtons)
	}
	return nil
}

// validateButton checks one button.
func validateButton(b *Button) error {
	if b.Text == "" || utf8.RuneCountInString(b.Text) > maxButtonText {
		return badRequest("a button's text is 1 to %d characters", maxButtonText)
	}
	if b.Intent != "" && b.Type != "callback" {
		return badRequest("only a callback button has an intent")
	}
	if (b.WebApp != "" || b.ContactID != 0) && b.Type != "open_app" {
		return badRequest("only an open_app button has web_app or contact_id")
	}
	if b.URL != "" && b.Type != "link" {
		return badRequest("only a link button has a url")
	}
	switch b.Type {
	case "callback":
		if b.Payload == "" || len(b.Payload) > maxButtonPayload {
			return badRequest("a callback button's payload is 1 to %d bytes", maxButtonPayload)
		}
		switch b.Intent {
		case "", "default", "positive", "negative":
		default:
			return badRequest("intent must be \"default\", \"positive\" or \"negative\"")
		}
	case "link":
		if !validHTTPURL(b.URL) {
			return badRequest("a link button's url must be an http or https URL")
		}
	case "open_app":
		if len(b.Payload) > maxStartParam {
			return badRequest("an open_app button's payload is at most %d bytes", maxStartParam)
		}
		if len(b.WebApp) > maxURL || b.ContactID < 0 {
			return badRequest("an open_app button's web_app or contact_id is malformed")
		}
	case "request_contact", "message":
		if b.Payload != "" {
			return badRequest("a %s button has no payload", b.Type)
		}
	case "":
		return badRequest("a button has no type")
	default:
		return badRequest("button type %q is not supported", clip(b.Type))
	}
	return nil
}

// validHTTPURL reports whether s is an absolute http or https URL with a
// host.
func validHTTPURL(s string) bool {
	return validURL(s, "http", "https")
}

// validURL reports whether s is an absolute URL of one of schemes with
// a host and no user info.
func validURL(s string, schemes ...string) bool {
	if s == "" || len(s) > maxURL || strings.ContainsFunc(s, isSpaceOrControl) {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" {
		return false
	}
	return slices.Contains(schemes, strings.ToLower(u.Scheme))
}

// validToken reports whether s can be an upload's token: printable ASCII
// without spaces, at most maxToken bytes.
func validToken(s string) bool {
	return s != "" && len(s) <= maxToken && printableASCII(s, "")
}

// validMid reports whether s can be a message id: printable ASCII
// without spaces or commas, at most maxMid bytes.
func validMid(s string) bool {
	return s != "" && len(s) <= maxMid && printableASCII(s, ",")
}

// printableASCII reports whether s is made of ASCII from '!' to '~'
// except the bytes in not.
func printableASCII(s, not string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c > '~' || strings.IndexByte(not, c) >= 0 {
			return false
		}
	}
	return true
}

func isSpaceOrControl(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) <= 32 {
		return s
	}
	return s[:32] + "…"
}

// decodeCommands decodes PATCH /me/commands' body; an empty list deletes
// the commands and is returned as nil.
func decodeCommands(b []byte) ([]BotCommand, error) {
	var body struct {
		Commands *[]BotCommand `json:"commands"`
	}
	if err := decodeJSON(b, &body); err != nil {
		return nil, err
	}
	if body.Commands == nil {
		return nil, badRequest("commands is missing (an empty array deletes them)")
	}
	cmds := *body.Commands
	if len(cmds) > maxCommands {
		return nil, badRequest("a bot has at most %d commands", maxCommands)
	}
	seen := make(map[string]bool, len(cmds))
	for _, c := range cmds {
		if c.Name == "" || utf8.RuneCountInString(c.Name) > maxCommandName || strings.ContainsFunc(c.Name, isSpaceOrControl) {
			return nil, badRequest("a command's name is 1 to %d characters without spaces", maxCommandName)
		}
		if seen[c.Name] {
			return nil, badRequest("command %q is given twice", clip(c.Name))
		}
		seen[c.Name] = true
		if c.Description != nil && utf8.RuneCountInString(*c.Description) > maxCommandDesc {
			return nil, badRequest("a command's description is at most %d characters", maxCommandDesc)
		}
	}
	if len(cmds) == 0 {
		return nil, nil
	}
	return cmds, nil
}

// decodeChatPatch decodes PATCH /chats/{chat_id}'s body: the new title.
func decodeChatPatch(b []byte) (string, error) {
	var p ChatPatch
	if err := decodeJSON(b, &p); err != nil {
		return "", err
	}
	if p.Icon != nil || p.Pin != nil || p.Notify != nil || p.Description != nil {
		return "", badRequest("only a chat's title can be changed")
	}
	if p.Title == nil {
		return "", badRequest("title is missing")
	}
	t := *p.Title
	if strings.TrimSpace(t) == "" || utf8.RuneCountInString(t) > maxTitle {
		return "", badRequest("a title is 1 to %d characters", maxTitle)
	}
	return t, nil
}

// chatActions are the actions POST /chats/{chat_id}/actions takes.
var chatActions = []string{"typing_on", "typing_off", "sending_photo", "sending_video", "sending_audio", "sending_file", "mark_seen"}

// decodeAction decodes POST /chats/{chat_id}/actions' body.
func decodeAction(b []byte) (string, error) {
	var a ActionRequest
	if err := decodeJSON(b, &a); err != nil {
		return "", err
	}
	if !slices.Contains(chatActions, a.Action) {
		return "", badRequest("action must be one of %s", strings.Join(chatActions, ", "))
	}
	return a.Action, nil
}

// decodeUserIDs decodes POST /chats/{chat_id}/members' body.
func decodeUserIDs(b []byte) ([]int64, error) {
	var l UserIDsList
	if err := decodeJSON(b, &l); err != nil {
		return nil, err
	}
	if len(l.UserIDs) == 0 || len(l.UserIDs) > maxUserIDs {
		return nil, badRequest("user_ids has 1 to %d users", maxUserIDs)
	}
	for _, id := range l.UserIDs {
		if id <= 0 {
			return nil, badRequest("user ids are positive integers")
		}
	}
	return dedupe(l.UserIDs), nil
}

// dedupe returns ids without repeats, in their first order.
func dedupe[T comparable](ids []T) []T {
	seen := make(map[T]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// decodeCallbackAnswer decodes POST /answers' body: a message, a
// notification or both.
func decodeCallbackAnswer(b []byte) (CallbackAnswer, error) {
	var a CallbackAnswer
	if err := decodeJSON(b, &a); err != nil {
		return a, err
	}
	if a.Message == nil && a.Notification == nil {
		return a, badRequest("an answer has a message or a notification")
	}
	if a.Notification != nil && utf8.RuneCountInString(*a.Notification) > maxNotification {
		return a, Errorf(ErrTooLong, "a notification is at most %d characters", maxNotification)
	}
	if a.Message != nil {
		if err := validateNewMessageBody(a.Message, false); err != nil {
			return a, err
		}
	}
	return a, nil
}

// decodeSubscription decodes POST /subscriptions' body: an https URL,
// an optional secret of 5 to 256 letters, digits, '_' and '-', and the
// update types (none: all).
func decodeSubscription(b []byte) (SubscriptionRequest, error) {
	var s SubscriptionRequest
	if err := decodeJSON(b, &s); err != nil {
		return s, err
	}
	if !validURL(s.URL, "https") {
		return s, Errorf(ErrWebhookURL, "a webhook's url must be an https URL")
	}
	if s.Secret != "" && !validSecret(s.Secret) {
		return s, badRequest("a secret is %d to %d letters, digits, '_' or '-'", minSecret, maxSecret)
	}
	types, err := checkUpdateTypes(s.UpdateTypes)
	if err != nil {
		return s, err
	}
	s.UpdateTypes = types
	if len(s.Version) > 32 {
		return s, badRequest("version is too long")
	}
	return s, nil
}

// validSecret reports whether s can be a webhook's secret.
func validSecret(s string) bool {
	if len(s) < minSecret || len(s) > maxSecret {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkUpdateTypes checks a list of update types' names and returns it
// without repeats. Names are not checked against the types the node
// produces: a bot may ask for MAX's others and simply gets none.
func checkUpdateTypes(types []string) ([]string, error) {
	if len(types) > maxUpdateTypes {
		return nil, badRequest("at most %d update types", maxUpdateTypes)
	}
	for _, t := range types {
		if !validUpdateType(t) {
			return nil, badRequest("update type %q is malformed", clip(t))
		}
	}
	if len(types) == 0 {
		return nil, nil
	}
	return dedupe(types), nil
}

// validUpdateType reports whether s is an update type's name: lowercase
// letters and '_'.
func validUpdateType(s string) bool {
	if s == "" || len(s) > maxUpdateType {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}
