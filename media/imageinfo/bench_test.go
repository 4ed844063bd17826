package imageinfo

import (
	"bytes"
	"image"
	"image/jpeg"
	"testing"

	"golang.org/x/image/draw"
)

// photo returns a w×h picture with smooth gradients and fine detail, so
// that it compresses like a photograph rather than a flat fill.
func photo(w, h int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := m.PixOffset(x, y)
			m.Pix[i] = uint8(x * 255 / w)
			m.Pix[i+1] = uint8(y * 255 / h)
			m.Pix[i+2] = uint8((x ^ y) & 0xff)
			m.Pix[i+3] = 255
		}
	}
	return m
}

var photo12MP []byte

func jpeg12MP(b *testing.B) []byte {
	if photo12MP == nil {
		photo12MP = encJPEG(b, photo(4000, 3000))
	}
	return photo12MP
}

// BenchmarkThumbnail measures a 320-pixel thumbnail of a 12 MP (4000×3000)
// JPEG: decode, scale, encode.
func BenchmarkThumbnail(b *testing.B) {
	data := jpeg12MP(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := Thumbnail(bytes.NewReader(data), 320); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
}

// BenchmarkScale compares the scalers on the decoded 12 MP picture, the
// step that the choice of kernel decides.
func BenchmarkScale(b *testing.B) {
	m, err := jpeg.Decode(bytes.NewReader(jpeg12MP(b)))
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range []struct {
		name string
		k    draw.Interpolator
	}{
		{"CatmullRom", draw.CatmullRom},
		{"BiLinear", draw.BiLinear},
		{"ApproxBiLinear", draw.ApproxBiLinear},
	} {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				dst := image.NewRGBA(image.Rect(0, 0, 320, 240))
				s.k.Scale(dst, dst.Bounds(), m, m.Bounds(), draw.Src, nil)
			}
		})
	}
}

// BenchmarkScaleBoxThenCatmullRom is what Thumbnail does.
func BenchmarkScaleBoxThenCatmullRom(b *testing.B) {
	m, err := jpeg.Decode(bytes.NewReader(jpeg12MP(b)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		scale(m, 320)
	}
}
