package bots

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/bots/botapi"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// A message id (mid) is "mid.<chat>.<seq>": the Bot API names messages
// by string, the store by chat and seq.
func mid(chat storage.ChatID, seq uint64) string {
	return "mid." + strconv.FormatUint(uint64(chat), 10) + "." + strconv.FormatUint(seq, 10)
}

// parseMid reads a mid.
func parseMid(s string) (storage.ChatID, uint64, error) {
	rest, ok := strings.CutPrefix(s, "mid.")
	c, q, ok2 := strings.Cut(rest, ".")
	chat, err1 := strconv.ParseUint(c, 10, 64)
	seq, err2 := strconv.ParseUint(q, 10, 64)
	if !ok || !ok2 || err1 != nil || err2 != nil || chat == 0 || seq == 0 {
		return 0, 0, botapi.Errorf(botapi.ErrBadRequest, "%q is not a message id", s)
	}
	return storage.ChatID(chat), seq, nil
}

func marshalService(s *wire.Service) ([]byte, error) { return proto.Marshal(s) }

// chatType is a chat kind as the Bot API names it.
func chatType(k storage.ChatKind) string {
	switch k {
	case storage.ChatDirect:
		return "dialog"
	case storage.ChatChannel:
		return "channel"
	}
	return "chat"
}

func ms(us int64) int64 { return us / 1000 }

// user returns a User for u.
func (n *Node) user(u storage.UserID) *botapi.User {
	out := &botapi.User{UserID: int64(u), FirstName: userName(u), Name: userName(u)}
	if n.o.Accounts.IsBot(u) {
		out.IsBot = true
		if info, err := n.o.Accounts.BotInfo(u); err == nil {
			out.FirstName, out.Name = info.Name, info.Name
			if info.Username != "" {
				un := info.Username
				out.Username = &un
			}
		}
	}
	return out
}

// message renders record r of a chat of kind as the Bot API's Message,
// for bot (a dialog's recipient is the bot's peer).
func (n *Node) message(r *storage.Record, kind storage.ChatKind, bot storage.UserID) botapi.Message {
	m := botapi.Message{
		Sender:    n.user(r.Sender),
		Recipient: botapi.Recipient{ChatID: int64(r.Chat), ChatType: chatType(kind)},
		Timestamp: ms(r.Time),
		Body:      botapi.MessageBody{Mid: mid(r.Chat, r.Seq), Seq: int64(r.Seq), Attachments: []botapi.Attachment{}},
	}
	if kind == storage.ChatDirect {
		peer := int64(bot)
		if r.Sender == bot {
			peer = 0 // filled by the caller when it knows the peer
		}
		if peer != 0 {
			m.Recipient.UserID = &peer
		}
	}
	switch r.Kind {
	case storage.MsgText:
		m.Body.Text = string(r.Body)
	case storage.MsgMedia:
		var c wire.Content
		if proto.Unmarshal(r.Body, &c) == nil {
			n.fillBody(&m.Body, r.Chat, r.Seq, &c)
			if c.ReplyTo != 0 {
				m.Link = &botapi.LinkedMsg{Type: "reply", ChatID: int64(r.Chat), Message: botapi.MessageBody{Mid: mid(r.Chat, c.ReplyTo), Seq: int64(c.ReplyTo), Attachments: []botapi.Attachment{}}}
			}
		}
	}
	return m
}

// fillBody renders a Content into a MessageBody.
func (n *Node) fillBody(b *botapi.MessageBody, chat storage.ChatID, seq uint64, c *wire.Content) {
	b.Text = c.Text
	for _, a := range c.Attachments {
		at := botapi.Attachment{Type: attachmentType(a.Type)}
		at.Payload.Token = a.Sha256
		if n.o.Files != nil {
			at.Payload.URL = n.o.Files.SignedURL(uint64(chat), seq, a.Sha256, n.o.URLTTL)
		}
		switch a.Type {
		case wire.AttachmentType_ATTACHMENT_TYPE_PHOTO:
			at.Width, at.Height = int(a.Width), int(a.Height)
		case wire.AttachmentType_ATTACHMENT_TYPE_FILE:
			at.Filename, at.Size = a.Name, a.Size
		case wire.AttachmentType_ATTACHMENT_TYPE_VIDEO, wire.AttachmentType_ATTACHMENT_TYPE_AUDIO:
			at.Duration = int(a.DurationMs / 1000)
		}
		b.Attachments = append(b.Attachments, at)
	}
	if c.Keyboard != nil && len(c.Keyboard.Rows) > 0 {
		kb := botapi.Attachment{Type: "inline_keyboard"}
		for _, row := range c.Keyboard.Rows {
			var out []botapi.Button
			for _, bt := range row.Buttons {
				out = append(out, botapi.Button{Type: buttonType(bt.Type), Text: bt.Text, Payload: bt.Payload, URL: bt.Url})
			}
			kb.Payload.Buttons = append(kb.Payload.Buttons, out)
		}
		b.Attachments = append(b.Attachments, kb)
	}
}

func attachmentType(t wire.AttachmentType) string {
	switch t {
	case wire.AttachmentType_ATTACHMENT_TYPE_PHOTO:
		return "image"
	case wire.AttachmentType_ATTACHMENT_TYPE_VIDEO:
		return "video"
	case wire.AttachmentType_ATTACHMENT_TYPE_AUDIO:
		return "audio"
	}
	return "file"
}

func wireAttachmentType(s string) (wire.AttachmentType, bool) {
	switch s {
	case "image":
		return wire.AttachmentType_ATTACHMENT_TYPE_PHOTO, true
	case "video":
		return wire.AttachmentType_ATTACHMENT_TYPE_VIDEO, true
	case "audio":
		return wire.AttachmentType_ATTACHMENT_TYPE_AUDIO, true
	case "file":
		return wire.AttachmentType_ATTACHMENT_TYPE_FILE, true
	}
	return 0, false
}

func buttonType(t wire.ButtonType) string {
	switch t {
	case wire.ButtonType_BUTTON_TYPE_CALLBACK:
		return "callback"
	case wire.ButtonType_BUTTON_TYPE_LINK:
		return "link"
	case wire.ButtonType_BUTTON_TYPE_REQUEST_CONTACT:
		return "request_contact"
	case wire.ButtonType_BUTTON_TYPE_OPEN_APP:
		return "open_app"
	}
	return "message"
}

func wireButtonType(s string) (wire.ButtonType, bool) {
	switch s {
	case "callback":
		return wire.ButtonType_BUTTON_TYPE_CALLBACK, true
	case "link":
		return wire.ButtonType_BUTTON_TYPE_LINK, true
	case "request_contact":
		return wire.ButtonType_BUTTON_TYPE_REQUEST_CONTACT, true
	case "open_app":
		return wire.ButtonType_BUTTON_TYPE_OPEN_APP, true
	case "message":
		return wire.ButtonType_BUTTON_TYPE_MESSAGE, true
	}
	return 0, false
}

// maxText is the longest message text, in characters.
const maxText = 4000

// content turns a bot's NewMessageBody into the record it stores: a
// plain TEXT record when it is only text, else a MEDIA record with a
// Content. Upload tokens are resolved to files; one not complete yet is
// ErrAttachmentNotReady.
func (n *Node) content(bot storage.UserID, nb botapi.NewMessageBody) (storage.MsgKind, []byte, error) {
	text := ""
	if nb.Text != nil {
		text = *nb.Text
	}
	if !utf8.ValidString(text) {
		return 0, nil, botapi.Errorf(botapi.ErrBadRequest, "text is not UTF-8")
	}
	if utf8.RuneCountInString(text) > maxText {
		return 0, nil, botapi.ErrTooLong
	}
	c := &wire.Content{Text: text}
	if nb.Format != nil {
		f, err := textFormat(*nb.Format)
		if err != nil {
			return 0, nil, err
		}
		c.Format = f
	}
	if nb.Link != nil && nb.Link.Type == "reply" {
		_, seq, err := parseMid(nb.Link.Mid)
		if err != nil {
			return 0, nil, err
		}
		c.ReplyTo = seq
	}
	for i, a := range nb.Attachments {
		if a.Type == "inline_keyboard" {
			kb := &wire.Keyboard{}
			for _, row := range a.Payload.Buttons {
				wr := &wire.KeyboardRow{}
				for _, bt := range row {
					t, ok := wireButtonType(bt.Type)
					if !ok {
						return 0, nil, botapi.Errorf(botapi.ErrBadRequest, "button type %q is not supported", bt.Type)
					}
					wr.Buttons = append(wr.Buttons, &wire.Button{Type: t, Text: bt.Text, Payload: bt.Payload, Url: bt.URL})
				}
				kb.Rows = append(kb.Rows, wr)
			}
			c.Keyboard = kb
			continue
		}
		t, ok := wireAttachmentType(a.Type)
		if !ok {
			return 0, nil, botapi.Errorf(botapi.ErrBadRequest, "attachment %d: type %q is not supported", i, a.Type)
		}
		tok := a.Payload.Token
		if tok == "" {
			for _, p := range a.Payload.Photos {
				tok = p.Token
				break
			}
		}
		if tok == "" || n.o.Files == nil {
			return 0, nil, botapi.Errorf(botapi.ErrBadRequest, "attachment %d names no upload token", i)
		}
		att, ready, err := n.o.Files.Resolve(uint64(bot), tok)
		if err != nil {
			return 0, nil, botapi.Errorf(botapi.ErrBadRequest, "attachment %d: %v", i, err)
		}
		if !ready {
			return 0, nil, botapi.ErrAttachmentNotReady
		}
		att = proto.Clone(att).(*wire.Attachment)
		att.Type = t
		c.Attachments = append(c.Attachments, att)
	}
	if c.Format == wire.TextFormat_TEXT_FORMAT_PLAIN && len(c.Attachments) == 0 && c.Keyboard == nil && c.ReplyTo == 0 {
		if text == "" {
			return 0, nil, botapi.Errorf(botapi.ErrBadRequest, "a message needs text or attachments")
		}
		return storage.MsgText, []byte(text), nil
	}
	if text == "" && len(c.Attachments) == 0 {
		return 0, nil, botapi.Errorf(botapi.ErrBadRequest, "a message needs text or attachments")
	}
	body, err := proto.Marshal(c)
	if err != nil {
		return 0, nil, fmt.Errorf("bots: content: %w", err)
	}
	return storage.MsgMedia, body, nil
}

func marshalContent(c *wire.Content) ([]byte, error) { return proto.Marshal(c) }

func errorIs(err, target error) bool { return errors.Is(err, target) }

// textFormat reads a NewMessageBody's format.
func textFormat(f string) (wire.TextFormat, error) {
	switch f {
	case "markdown":
		return wire.TextFormat_TEXT_FORMAT_MARKDOWN, nil
	case "html":
		return wire.TextFormat_TEXT_FORMAT_HTML, nil
	case "":
		return wire.TextFormat_TEXT_FORMAT_PLAIN, nil
	}
	return 0, botapi.Errorf(botapi.ErrBadRequest, "format %q: use markdown or html", f)
}
