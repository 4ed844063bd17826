package broker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// Errors of a MEDIA message's Content.
var (
	// ErrBadContent is returned for a MEDIA body that is not a valid
	// Content (BAD_CONTENT).
	ErrBadContent = errors.New("broker: bad content")
	// ErrUnknownFile is wrapped by Attachments for a file the node does
	// not hold (UNKNOWN_FILE).
	ErrUnknownFile = errors.New("broker: unknown file")
)

// Attachments holds the files messages carry: the node's media store.
// Sends of MEDIA messages with attachments are refused (UNKNOWN_FILE)
// when the broker has none.
type Attachments interface {
	// Attach checks the files of a message user is sending and takes a
	// reference on each (and on its thumbnail) for the message; it fills
	// what the node knows of each file, overriding the client: size, and
	// for photos width, height and thumb_sha256. A file the node does not
	// hold is an error wrapping ErrUnknownFile, and then Attach holds no
	// reference. It must not block on the network.
	Attach(ctx context.Context, user storage.UserID, atts []*wire.Attachment) error
	// Release gives back the references Attach took for atts, as filled
	// by Attach: the message was not stored (its send failed, or it was a
	// resend of one stored already), or it was deleted.
	Release(atts []*wire.Attachment)
}

// EditAttachments is an Attachments that takes an edit's files knowing
// those of the Content it replaces: a file the message already carries
// needs no fresh proof that the user may attach it (its uploader's
// receipt, which expires), so that a caption can be edited any time.
type EditAttachments interface {
	AttachEdit(ctx context.Context, user storage.UserID, atts, prev []*wire.Attachment) error
}

// Content limits (docs/protocol.md, Content).
const (
	maxContentText    = 4000
	maxAttachments    = 10
	maxKeyboardRows   = 30
	maxRowButtons     = 7
	maxButtons        = 210
	maxButtonText     = 128
	maxButtonPayload  = 1024
	maxButtonURL      = 2048
	maxAttachmentName = 255
	maxAttachmentMIME = 255
)

// parseContent decodes and checks a MEDIA body.
func parseContent(body []byte) (*wire.Content, error) {
	var c wire.Content
	if err := proto.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("%w: not a Content: %v", ErrBadContent, err)
	}
	if err := checkContent(&c); err != nil {
		return nil, err
	}
	return &c, nil
}

// checkContent checks c against the Content limits.
func checkContent(c *wire.Content) error {
	switch {
	case !utf8.ValidString(c.Text):
		return fmt.Errorf("%w: text is not UTF-8", ErrBadContent)
	case utf8.RuneCountInString(c.Text) > maxContentText:
		return fmt.Errorf("%w: text longer than %d characters", ErrBadContent, maxContentText)
	case c.Format < wire.TextFormat_TEXT_FORMAT_PLAIN || c.Format > wire.TextFormat_TEXT_FORMAT_HTML:
		return fmt.Errorf("%w: unknown format %d", ErrBadContent, c.Format)
	case len(c.Attachments) > maxAttachments:
		return fmt.Errorf("%w: more than %d attachments", ErrBadContent, maxAttachments)
	case c.Text == "" && len(c.Attachments) == 0:
		return fmt.Errorf("%w: neither text nor attachments", ErrBadContent)
	}
	for i, a := range c.Attachments {
		switch {
		case a == nil:
			return fmt.Errorf("%w: attachment %d empty", ErrBadContent, i)
		case a.Type < wire.AttachmentType_ATTACHMENT_TYPE_PHOTO || a.Type > wire.AttachmentType_ATTACHMENT_TYPE_FILE:
			return fmt.Errorf("%w: attachment %d: unknown type %d", ErrBadContent, i, a.Type)
		case !validSHA256(a.Sha256):
			return fmt.Errorf("%w: attachment %d: sha256 is not 64 lowercase hex digits", ErrBadContent, i)
		case len(a.Name) > maxAttachmentName || !utf8.ValidString(a.Name):
			return fmt.Errorf("%w: attachment %d: name", ErrBadContent, i)
		case len(a.Mime) > maxAttachmentMIME:
			return fmt.Errorf("%w: attachment %d: MIME type", ErrBadContent, i)
		}
		// Filled by the node's media store.
		a.Size, a.Width, a.Height, a.ThumbSha256 = 0, 0, 0, ""
	}
	return checkKeyboard(c.Keyboard)
}

// checkKeyboard checks an inline keyboard's shape and buttons.
func checkKeyboard(k *wire.Keyboard) error {
	if k == nil {
		return nil
	}
	if len(k.Rows) > maxKeyboardRows {
		return fmt.Errorf("%w: more than %d keyboard rows", ErrBadContent, maxKeyboardRows)
	}
	n := 0
	for i, row := range k.Rows {
		if row == nil || len(row.Buttons) == 0 || len(row.Buttons) > maxRowButtons {
			return fmt.Errorf("%w: keyboard row %d has no buttons or more than %d", ErrBadContent, i, maxRowButtons)
		}
		n += len(row.Buttons)
		for j, bt := range row.Buttons {
			if err := checkButton(bt); err != nil {
				return fmt.Errorf("%w: button %d of row %d: %v", ErrBadContent, j, i, err)
			}
		}
	}
	if n > maxButtons {
		return fmt.Errorf("%w: more than %d buttons", ErrBadContent, maxButtons)
	}
	return nil
}

func checkButton(b *wire.Button) error {
	switch {
	case b == nil:
		return errors.New("empty")
	case b.Text == "" || utf8.RuneCountInString(b.Text) > maxButtonText || !utf8.ValidString(b.Text):
		return fmt.Errorf("text must be 1 to %d characters", maxButtonText)
	case len(b.Payload) > maxButtonPayload:
		return fmt.Errorf("payload longer than %d bytes", maxButtonPayload)
	case len(b.Url) > maxButtonURL:
		return fmt.Errorf("url longer than %d bytes", maxButtonURL)
	}
	switch b.Type {
	case wire.ButtonType_BUTTON_TYPE_CALLBACK:
		if b.Payload == "" {
			return errors.New("a callback button needs a payload")
		}
	case wire.ButtonType_BUTTON_TYPE_LINK:
		u, err := url.Parse(b.Url)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("a link button needs an http(s) url")
		}
	case wire.ButtonType_BUTTON_TYPE_REQUEST_CONTACT, wire.ButtonType_BUTTON_TYPE_OPEN_APP, wire.ButtonType_BUTTON_TYPE_MESSAGE:
	default:
		return fmt.Errorf("unknown type %d", b.Type)
	}
	return nil
}

// validSHA256 reports whether s is 64 lowercase hex digits.
func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// prepareContent checks a MEDIA body user sends and takes its files'
// references: it returns the body to store (with what the node knows of
// each file) and the attachments to Release should the message not be
// stored.
func (b *Broker) prepareContent(ctx context.Context, user storage.UserID, body []byte, prev ...*wire.Attachment) ([]byte, []*wire.Attachment, error) {
	c, err := parseContent(body)
	if err != nil {
		return nil, nil, err
	}
	if len(c.Attachments) == 0 {
		return body, nil, nil
	}
	if b.opts.Attachments == nil {
		return nil, nil, fmt.Errorf("%w: this node stores no files", ErrUnknownFile)
	}
	if ea, ok := b.opts.Attachments.(EditAttachments); ok && len(prev) > 0 {
		err = ea.AttachEdit(ctx, user, c.Attachments, prev)
	} else {
		err = b.opts.Attachments.Attach(ctx, user, c.Attachments)
	}
	if err != nil {
		return nil, nil, err
	}
	out, err := proto.Marshal(c)
	if err != nil {
		b.opts.Attachments.Release(c.Attachments)
		return nil, nil, err
	}
	return out, c.Attachments, nil
}

// ReleaseRemoved gives back the files of MEDIA records that retention
// removed from the store (storage.Options.Removed): each record's Content,
// as Attach filled it, references them no more.
// They are given back in one Release, which counts each file once.
func ReleaseRemoved(a Attachments, recs []storage.Record) {
	var atts []*wire.Attachment
	for i := range recs {
		var c wire.Content
		if recs[i].Kind == storage.MsgMedia && proto.Unmarshal(recs[i].Body, &c) == nil {
			atts = append(atts, c.Attachments...)
		}
	}
	if len(atts) > 0 {
		a.Release(atts)
	}
}

// releaseContent gives back a MEDIA message's references when it was not
// stored.
func (b *Broker) releaseContent(atts []*wire.Attachment) {
	if len(atts) > 0 && b.opts.Attachments != nil {
		b.opts.Attachments.Release(atts)
	}
}
