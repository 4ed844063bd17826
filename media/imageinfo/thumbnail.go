package imageinfo

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"io"
)

// DefaultThumbnail is the longer side of a thumbnail when Thumbnail is
// given no size.
const DefaultThumbnail = 320

// thumbQuality is the JPEG quality of thumbnails.
const thumbQuality = 80

// Thumbnail decodes the image in r with the default Limits and returns a
// JPEG thumbnail of it; see Limits.Thumbnail.
func Thumbnail(r io.Reader, max int) (thumb []byte, img Image, err error) {
	return Limits{}.Thumbnail(r, max)
}

// Thumbnail decodes the image in r and returns a JPEG thumbnail whose
// longer side is at most max pixels (DefaultThumbnail when max <= 0), with
// the aspect ratio kept and never enlarged, the EXIF orientation of a JPEG
// applied and transparency flattened onto white, together with what Probe
// reports. The header is checked against l before any pixel is decoded
// (ErrTooLarge); at most l.MaxBytes are read from r and the file is not held
// in memory beyond its header.
func (l Limits) Thumbnail(r io.Reader, max int) (thumb []byte, img Image, err error) {
	l = l.withDefaults()
	if max <= 0 {
		max = DefaultThumbnail
	}
	src := &limitedReader{r: r, n: l.MaxBytes}
	rec := &recorder{r: src, keep: -1}
	img, err = l.header(rec, src)
	if err != nil {
		return nil, Image{}, err
	}
	// Replay the bytes the header consumed, then stream the rest.
	full := io.MultiReader(bytes.NewReader(rec.buf), src)
	m, err := decode(img.Format, full)
	if err != nil {
		return nil, Image{}, decodeErr(img.Format, "data", src, err)
	}
	b := m.Bounds()
	if b.Dx() <= 0 || b.Dy() <= 0 {
		return nil, Image{}, fmt.Errorf("%w: %s: empty frame", ErrCorrupt, img.Format)
	}
	t := orient(scale(m, max), img.Orientation)
	var out bytes.Buffer
	if err := jpeg.Encode(&out, t, &jpeg.Options{Quality: thumbQuality}); err != nil {
		return nil, Image{}, fmt.Errorf("imageinfo: encode thumbnail: %w", err)
	}
	return out.Bytes(), img, nil
}

// orient applies the EXIF orientation o to m.
func orient(m *image.RGBA, o int) *image.RGBA {
	if o <= 1 || o > 8 {
		return m
	}
	w, h := m.Rect.Dx(), m.Rect.Dy()
	dw, dh := w, h
	if o >= 5 {
		dw, dh = h, w
	}
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var dx, dy int
			switch o {
			case 2: // mirrored horizontally
				dx, dy = w-1-x, y
			case 3: // rotated 180°
				dx, dy = w-1-x, h-1-y
			case 4: // mirrored vertically
				dx, dy = x, h-1-y
			case 5: // transposed
				dx, dy = y, x
			case 6: // rotated 90° clockwise to display
				dx, dy = h-1-y, x
			case 7: // transversed
				dx, dy = h-1-y, w-1-x
			case 8: // rotated 90° counter-clockwise to display
				dx, dy = y, w-1-x
			}
			si := m.PixOffset(x, y)
			di := dst.PixOffset(dx, dy)
			copy(dst.Pix[di:di+4], m.Pix[si:si+4])
		}
	}
	return dst
}
