package broker

import (
	"context"
	"errors"

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
