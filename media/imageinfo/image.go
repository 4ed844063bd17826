package imageinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/webp"
)

// Image describes a picture as a viewer shows it.
type Image struct {
	// Format is "jpeg", "png", "gif" or "webp".
	Format string
	// Width and Height are the displayed dimensions in pixels: for a JPEG
	// whose EXIF orientation turns it a quarter (5 to 8), the stored width
	// and height swapped.
	Width, Height int
	// Orientation is the EXIF orientation, 1 to 8; 1 (as stored) for every
	// format but JPEG and for a JPEG without a valid tag.
	Orientation int
}

// Limits bounds the work done on one image. The zero value means the
// defaults.
type Limits struct {
	// MaxPixels caps the width×height an image may claim in its header.
	// Default: 50,000,000 (50 MP, a 200 MB RGBA buffer).
	MaxPixels int64
	// MaxBytes caps the bytes read from the reader. Default: 64 MiB.
	MaxBytes int64
}

// Defaults of Limits.
const (
	DefaultMaxPixels = 50_000_000
	DefaultMaxBytes  = 64 << 20
)

// probeKeep is how much of the header Probe keeps to look for the EXIF
// orientation: an APP1 segment is at most 64 KiB and comes first or after
// the JFIF APP0.
const probeKeep = 128 << 10

func (l Limits) withDefaults() Limits {
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	return l
}

// Probe reads only the header of the image in r with the default Limits and
// reports its format and dimensions.
func Probe(r io.Reader) (Image, error) {
	return Limits{}.Probe(r)
}

// Probe reads only the header of the image in r, at most l.MaxBytes, and
// reports its format and dimensions. It returns ErrUnsupported for a format
// other than JPEG, PNG, GIF and WebP, ErrTooLarge for an image over
// l.MaxPixels, and ErrCorrupt for a header it cannot read. It reads ahead of
// the header by up to a buffer's worth, so r is not positioned usefully
// afterwards.
func (l Limits) Probe(r io.Reader) (Image, error) {
	l = l.withDefaults()
	src := &limitedReader{r: r, n: l.MaxBytes}
	rec := &recorder{r: src, keep: probeKeep}
	img, err := l.header(rec, src)
	return img, err
}

// header sniffs the format from rec, decodes the header, checks it against
// l and reads the EXIF orientation from what rec kept.
func (l Limits) header(rec *recorder, src *limitedReader) (Image, error) {
	br := bufio.NewReaderSize(rec, 4096)
	magic, _ := br.Peek(16)
	format := sniff(magic)
	if format == "" {
		if src.exceeded {
			return Image{}, ErrTooLarge
		}
		if len(magic) == 0 {
			if src.err != nil {
				return Image{}, fmt.Errorf("imageinfo: read: %w", src.err)
			}
			return Image{}, fmt.Errorf("%w: empty input", ErrUnsupported)
		}
		return Image{}, ErrUnsupported
	}
	cfg, err := decodeConfig(format, br)
	if err != nil {
		return Image{}, decodeErr(format, "header", src, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return Image{}, fmt.Errorf("%w: %s: %d×%d", ErrCorrupt, format, cfg.Width, cfg.Height)
	}
	if int64(cfg.Width) > l.MaxPixels || int64(cfg.Height) > l.MaxPixels ||
		int64(cfg.Width)*int64(cfg.Height) > l.MaxPixels {
		return Image{}, fmt.Errorf("%w: %s %d×%d over %d pixels", ErrTooLarge, format, cfg.Width, cfg.Height, l.MaxPixels)
	}
	img := Image{Format: format, Width: cfg.Width, Height: cfg.Height, Orientation: 1}
	if format == "jpeg" {
		img.Orientation = exifOrientation(rec.buf)
		if img.Orientation >= 5 {
			img.Width, img.Height = img.Height, img.Width
		}
	}
	return img, nil
}

// sniff names the format from the first bytes of a file, or returns "".
func sniff(b []byte) string {
	switch {
	case len(b) >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff:
		return "jpeg"
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return "png"
	case bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")):
		return "gif"
	case len(b) >= 15 && bytes.Equal(b[:4], []byte("RIFF")) && bytes.Equal(b[8:15], []byte("WEBPVP8")):
		return "webp"
	}
	return ""
}

// decodeConfig calls the header decoder of format directly, so that what
// other packages register with the image package cannot change the set.
func decodeConfig(format string, r io.Reader) (image.Config, error) {
	switch format {
	case "jpeg":
		return jpeg.DecodeConfig(r)
	case "png":
		return png.DecodeConfig(r)
	case "gif":
		return gif.DecodeConfig(r)
	case "webp":
		return webp.DecodeConfig(r)
	}
	return image.Config{}, ErrUnsupported
}

// decode calls the full decoder of format; for a GIF, the first frame.
func decode(format string, r io.Reader) (image.Image, error) {
	switch format {
	case "jpeg":
		return jpeg.Decode(r)
	case "png":
		return png.Decode(r)
	case "gif":
		return gif.Decode(r)
	case "webp":
		return webp.Decode(r)
	}
	return nil, ErrUnsupported
}

// decodeErr classifies an error of a decoder: the byte limit, the source's
// own read error, or corrupt data.
func decodeErr(format, what string, src *limitedReader, err error) error {
	switch {
	case src.exceeded:
		return fmt.Errorf("%w: over %d bytes", ErrTooLarge, src.max())
	case src.err != nil:
		return fmt.Errorf("imageinfo: read %s %s: %w", format, what, src.err)
	}
	return fmt.Errorf("%w: %s %s: %v", ErrCorrupt, format, what, err)
}

// limitedReader reads at most n bytes from r and records whether the source
// had more, or failed.
type limitedReader struct {
	r        io.Reader
	n        int64 // bytes left
	read     int64
	exceeded bool
	err      error // the source's error other than io.EOF
}

func (l *limitedReader) max() int64 { return l.n + l.read }

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.exceeded {
		return 0, ErrTooLarge
	}
	if l.n <= 0 {
		// Look one byte past the limit: only a longer source is too large.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.exceeded = true
			return 0, ErrTooLarge
		}
		return 0, l.note(err)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	l.read += int64(n)
	return n, l.note(err)
}

func (l *limitedReader) note(err error) error {
	if err != nil && err != io.EOF && l.err == nil {
		l.err = err
	}
	return err
}

// recorder keeps the first keep bytes read through it (all when keep is
// negative), so that the header can be parsed again or replayed.
type recorder struct {
	r    io.Reader
	keep int
	buf  []byte
}

func (c *recorder) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.keep < 0 {
		c.buf = append(c.buf, p[:n]...)
	} else if room := c.keep - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(n, room)]...)
	}
	return n, err
}
