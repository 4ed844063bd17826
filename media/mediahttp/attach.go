package mediahttp

import (
	"context"
	"errors"
	"fmt"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/media"
	"github.com/gonets/gonets/storage"
)

var _ broker.Attachments = (*Server)(nil)

// Attach implements broker.Attachments: it checks that each attachment's
// file is one user uploaded (holds a receipt for: within the store's
// GCGrace, a re-upload of stored content and a bot's upload included)
// and is stored, takes a reference on it (and on a photo's thumbnail)
// and fills what the node knows: size, the MIME type and name when the
// client gave none, and for photos width, height and thumb_sha256 (cleared
// for other types, whose thumbnails the node does not hold). A file
// without the user's receipt, like a missing one, is an error wrapping
// broker.ErrUnknownFile (the same answer, so that nobody learns whether
// the node holds a file whose hash they know), and then every
// reference taken is given back. It touches only the local disk.
func (s *Server) Attach(ctx context.Context, user storage.UserID, atts []*wire.Attachment) error {
	return s.attach(ctx, user, atts, nil)
}

// AttachEdit is Attach for an edit of a message that carried prev: a
// file among prev's (the message's own, or a photo's thumbnail) needs no
// receipt, so that a caption can be edited after the receipts expired.
// Other files are checked as Attach checks them.
func (s *Server) AttachEdit(ctx context.Context, user storage.UserID, atts, prev []*wire.Attachment) error {
	held := make(map[string]bool, len(prev))
	for _, a := range prev {
		held[a.GetSha256()] = true
	}
	return s.attach(ctx, user, atts, held)
}

// attach is Attach, taking the files in held without a receipt.
func (s *Server) attach(ctx context.Context, user storage.UserID, atts []*wire.Attachment, held map[string]bool) error {
	var taken []string
	undo := func() {
		for _, sha := range taken {
			if err := s.store.Unref(sha, 1); err != nil {
				s.opts.Log.Error("mediahttp: attach: give back a reference", "sha256", sha, "err", err)
			}
		}
	}
	for _, a := range atts {
		if err := ctx.Err(); err != nil {
			undo()
			return err
		}
		sha := a.GetSha256()
		if !held[sha] && !s.rcpt.has(uint64(user), sha, s.opts.Now()) {
			undo()
			return fmt.Errorf("mediahttp: attach %.64q: %w", sha, broker.ErrUnknownFile)
		}
		info, err := s.store.Stat(sha)
		if err == nil {
			err = s.store.Ref(sha, 1)
		}
		if err != nil {
			undo()
			if errors.Is(err, media.ErrNotFound) {
				return fmt.Errorf("mediahttp: attach %.64q: %w", sha, broker.ErrUnknownFile)
			}
			return fmt.Errorf("mediahttp: attach %.64q: %w", sha, err)
		}
		taken = append(taken, sha)
		a.Size = info.Size
		if a.Mime == "" {
			a.Mime = info.MIME
		}
		if a.Name == "" {
			a.Name = info.Name
		}
		a.ThumbSha256 = ""
		if a.Type != wire.AttachmentType_ATTACHMENT_TYPE_PHOTO {
			continue
		}
		a.Width, a.Height = uint32(info.Width), uint32(info.Height)
		if info.ThumbSHA256 == "" {
			continue
		}
		if err := s.store.Ref(info.ThumbSHA256, 1); err != nil {
			// A thumbnail is optional: the photo goes without it.
			s.opts.Log.Warn("mediahttp: attach: thumbnail", "sha256", sha, "thumb", info.ThumbSHA256, "err", err)
			continue
		}
		taken = append(taken, info.ThumbSHA256)
		a.ThumbSha256 = info.ThumbSHA256
	}
	return nil
}

// Release implements broker.Attachments: it gives back the references
// Attach took for atts (as Attach filled them).
// Each file is given back once with its count (one write of its meta),
// in the order first named.
func (s *Server) Release(atts []*wire.Attachment) {
	var order []string
	counts := make(map[string]int, len(atts))
	for _, a := range atts {
		for _, sha := range []string{a.GetSha256(), a.GetThumbSha256()} {
			if sha == "" {
				continue
			}
			if counts[sha] == 0 {
				order = append(order, sha)
			}
			counts[sha]++
		}
	}
	for _, sha := range order {
		if err := s.store.Unref(sha, counts[sha]); err != nil {
			s.opts.Log.Error("mediahttp: release references", "sha256", sha, "count", counts[sha], "err", err)
		}
	}
}
