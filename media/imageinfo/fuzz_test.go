package imageinfo

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"testing"
)

// fuzzLimits keeps each fuzz input cheap: a few megapixels at most.
var fuzzLimits = Limits{MaxPixels: 1 << 22, MaxBytes: 1 << 20}

// seeds returns tiny valid images of each format, one with EXIF, and
// truncated and mutated copies of them.
func seeds(t testing.TB) [][]byte {
	small := halves(7, 5, 200)
	valid := [][]byte{
		encJPEG(t, small),
		withEXIF(encJPEG(t, small), 6, true),
		encPNG(t, small),
		encGIF(t, small),
		encWebP(7, 5, color.NRGBA{R: 9, G: 8, B: 7, A: 6}),
		pngHeader(100000, 100000),
		jpegHeader(65535, 65535),
		gifHeader(3, 3),
	}
	out := append([][]byte{}, valid...)
	for _, v := range valid {
		out = append(out, v[:len(v)/2], v[:len(v)*3/4])
		m := bytes.Clone(v)
		m[len(m)/3] ^= 0xff
		out = append(out, m)
	}
	return out
}

// checkImage holds for every Image returned without error.
func checkImage(t *testing.T, img Image) {
	t.Helper()
	switch img.Format {
	case "jpeg", "png", "gif", "webp":
	default:
		t.Fatalf("format %q", img.Format)
	}
	if img.Width <= 0 || img.Height <= 0 || int64(img.Width)*int64(img.Height) > fuzzLimits.MaxPixels {
		t.Fatalf("dimensions %d×%d", img.Width, img.Height)
	}
	if img.Orientation < 1 || img.Orientation > 8 {
		t.Fatalf("orientation %d", img.Orientation)
	}
}

func checkErr(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooLarge) {
		t.Fatalf("unclassified error: %v", err)
	}
}

func FuzzProbe(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := fuzzLimits.Probe(bytes.NewReader(data))
		if err != nil {
			checkErr(t, err)
			return
		}
		checkImage(t, img)
		if o := exifOrientation(data); img.Format == "jpeg" && len(data) <= probeKeep && o != img.Orientation {
			t.Fatalf("orientation %d, parser alone says %d", img.Orientation, o)
		}
	})
}

func FuzzThumbnail(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		thumb, img, err := fuzzLimits.Thumbnail(bytes.NewReader(data), 16)
		if err != nil {
			checkErr(t, err)
			return
		}
		checkImage(t, img)
		probed, err := fuzzLimits.Probe(bytes.NewReader(data))
		if err != nil || probed != img {
			t.Fatalf("Probe %+v, %v; Thumbnail %+v", probed, err, img)
		}
		m, err := jpeg.Decode(bytes.NewReader(thumb))
		if err != nil {
			t.Fatalf("thumbnail: %v", err)
		}
		if s := m.Bounds().Size(); s.X > 16 || s.Y > 16 || s.X < 1 || s.Y < 1 ||
			(img.Width > img.Height) != (s.X > s.Y) && s != image.Pt(16, 16) && img.Width != img.Height {
			t.Fatalf("thumbnail %v of %d×%d", s, img.Width, img.Height)
		}
	})
}
