package mediahttp

import (
	"bytes"
	"context"
	"errors"
	"mime"

	"github.com/gonets/gonets/media"
	"github.com/gonets/gonets/media/imageinfo"
)

// isPicture reports whether a MIME type names a format the node probes
// and thumbnails.
func isPicture(t string) bool {
	mt, _, _ := mime.ParseMediaType(t)
	switch mt {
	case "image/jpeg", "image/png", "image/gif", "image/webp":
		return true
	}
	return false
}

// finishDetached is finish off the request's context (bounded by
// finishTimeout), so that a client going away does not leave a picture
// without its thumbnail.
func (s *Server) finishDetached(ctx context.Context, user uint64, info media.Info) File {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	return s.finish(ctx, user, info)
}

// finish returns the File of a just stored blob. A picture is probed for
// its dimensions and gets a JPEG thumbnail, stored as its own blob and
// recorded with the picture (media.Store.SetImage); a picture stored
// before keeps what was recorded, and its thumbnail's grace restarts with
// its own. A picture that cannot be read is stored as a plain file: the
// failure is logged, never the upload's.
func (s *Server) finish(ctx context.Context, user uint64, info media.Info) File {
	f := fileOf(info)
	if !isPicture(info.MIME) {
		return f
	}
	if info.Width > 0 {
		if info.ThumbSHA256 == "" {
			return f
		}
		err := s.store.Touch(info.ThumbSHA256)
		if err == nil {
			return f
		}
		if !errors.Is(err, media.ErrNotFound) {
			s.opts.Log.Warn("mediahttp: touch thumbnail", "sha256", info.SHA256, "err", err)
			return f
		}
		// The thumbnail was collected: make it again.
	}
	select {
	case s.thumbs <- struct{}{}:
		defer func() { <-s.thumbs }()
	case <-ctx.Done():
		return f
	}
	w, h, thumb, err := s.thumbnail(ctx, user, info.SHA256)
	if err != nil {
		s.opts.Log.Info("mediahttp: picture not thumbnailed", "sha256", info.SHA256, "mime", info.MIME, "err", err)
		return f
	}
	if err := s.store.SetImage(info.SHA256, w, h, thumb); err != nil {
		s.opts.Log.Error("mediahttp: record picture", "sha256", info.SHA256, "err", err)
		return f
	}
	f.Width, f.Height, f.ThumbSHA256 = w, h, thumb
	return f
}

// thumbnail probes blob sha and stores its thumbnail, returning its
// dimensions and the thumbnail's address ("" when only the probe
// succeeded).
func (s *Server) thumbnail(ctx context.Context, user uint64, sha string) (w, h int, thumb string, err error) {
	src, _, err := s.store.Open(sha)
	if err != nil {
		return 0, 0, "", err
	}
	defer src.Close()
	img, err := imageinfo.Probe(src)
	if err != nil {
		return 0, 0, "", err
	}
	if _, err := src.Seek(0, 0); err != nil {
		return 0, 0, "", err
	}
	jpg, _, err := imageinfo.Thumbnail(src, s.opts.ThumbnailSize)
	if err != nil {
		s.opts.Log.Info("mediahttp: no thumbnail", "sha256", sha, "err", err)
		return img.Width, img.Height, "", nil
	}
	ti, err := s.store.Put(ctx, user, bytes.NewReader(jpg), int64(len(jpg)), media.Meta{Name: "thumb.jpg", MIME: "image/jpeg"})
	if err != nil {
		s.opts.Log.Warn("mediahttp: store thumbnail", "sha256", sha, "err", err)
		return img.Width, img.Height, "", nil
	}
	return img.Width, img.Height, ti.SHA256, nil
}
