package imageinfo

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"runtime"
	"sync"
	"testing"
	"testing/iotest"
)

var (
	sampleOnce  sync.Once
	sampleFiles map[string][]byte
)

// samples returns a 1000×500 picture, left half red and right half blue, in
// each format, encoded once; callers must not modify it.
func samples(t testing.TB) map[string][]byte {
	sampleOnce.Do(func() {
		m := halves(1000, 500, 255)
		sampleFiles = map[string][]byte{
			"jpeg": encJPEG(t, m),
			"png":  encPNG(t, m),
			"gif":  encGIF(t, m),
			"webp": encWebP(1000, 500, color.NRGBA{R: 255, A: 255}),
		}
	})
	return sampleFiles
}

func decodeThumb(t *testing.T, thumb []byte) image.Image {
	t.Helper()
	m, err := jpeg.Decode(bytes.NewReader(thumb))
	if err != nil {
		t.Fatalf("thumbnail is not a JPEG: %v", err)
	}
	return m
}

// near reports whether c is within 40 of r, g, b in each channel.
func near(c color.Color, r, g, b uint8) bool {
	cr, cg, cb, _ := c.RGBA()
	d := func(x uint32, y uint8) bool { v := int(x>>8) - int(y); return v > -40 && v < 40 }
	return d(cr, r) && d(cg, g) && d(cb, b)
}

func TestProbeAndThumbnail(t *testing.T) {
	for format, data := range samples(t) {
		t.Run(format, func(t *testing.T) {
			want := Image{Format: format, Width: 1000, Height: 500, Orientation: 1}
			img, err := Probe(bytes.NewReader(data))
			if err != nil || img != want {
				t.Fatalf("Probe = %+v, %v; want %+v", img, err, want)
			}
			thumb, img, err := Thumbnail(bytes.NewReader(data), 0)
			if err != nil || img != want {
				t.Fatalf("Thumbnail = %+v, %v; want %+v", img, err, want)
			}
			m := decodeThumb(t, thumb)
			if got := m.Bounds().Size(); got != image.Pt(320, 160) {
				t.Fatalf("thumbnail size %v, want 320×160", got)
			}
			if !near(m.At(10, 80), 255, 0, 0) {
				t.Errorf("left pixel %v, want red", m.At(10, 80))
			}
			if format != "webp" && !near(m.At(310, 80), 0, 0, 255) {
				t.Errorf("right pixel %v, want blue", m.At(310, 80))
			}
		})
	}
}

func TestThumbnailSizes(t *testing.T) {
	f := func(w, h, max, ww, wh int) {
		t.Helper()
		thumb, _, err := Thumbnail(bytes.NewReader(encPNG(t, halves(w, h, 255))), max)
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeThumb(t, thumb).Bounds().Size(); got != image.Pt(ww, wh) {
			t.Errorf("%d×%d max %d: thumbnail %v, want %d×%d", w, h, max, got, ww, wh)
		}
	}
	f(500, 1000, 0, 160, 320) // portrait
	f(1000, 500, 100, 100, 50)
	f(200, 100, 320, 200, 100) // never enlarged
	f(2000, 3, 320, 320, 1)    // at least one pixel
	f(333, 1000, 320, 107, 320)
}

func TestEXIFOrientation(t *testing.T) {
	base := encJPEG(t, halves(1000, 500, 255))
	for _, little := range []bool{false, true} {
		// Orientation 6: the stored left (red) half is the displayed top.
		data := withEXIF(base, 6, little)
		img, err := Probe(bytes.NewReader(data))
		if want := (Image{Format: "jpeg", Width: 500, Height: 1000, Orientation: 6}); err != nil || img != want {
			t.Fatalf("Probe = %+v, %v; want %+v", img, err, want)
		}
		thumb, img, err := Thumbnail(bytes.NewReader(data), 320)
		if err != nil || img.Width != 500 || img.Height != 1000 {
			t.Fatalf("Thumbnail = %+v, %v", img, err)
		}
		m := decodeThumb(t, thumb)
		if got := m.Bounds().Size(); got != image.Pt(160, 320) {
			t.Fatalf("thumbnail size %v, want 160×320", got)
		}
		if !near(m.At(80, 10), 255, 0, 0) || !near(m.At(80, 310), 0, 0, 255) {
			t.Errorf("top %v bottom %v, want red over blue", m.At(80, 10), m.At(80, 310))
		}
	}
	// Orientation 3 keeps the size and puts blue on the left.
	thumb, img, err := Thumbnail(bytes.NewReader(withEXIF(base, 3, false)), 320)
	if err != nil || img.Width != 1000 || img.Orientation != 3 {
		t.Fatalf("Thumbnail = %+v, %v", img, err)
	}
	if m := decodeThumb(t, thumb); !near(m.At(10, 80), 0, 0, 255) {
		t.Errorf("left pixel %v, want blue", m.At(10, 80))
	}
	// An out-of-range value is ignored.
	if img, err := Probe(bytes.NewReader(withEXIF(base, 9, false))); err != nil || img.Orientation != 1 {
		t.Errorf("orientation 9: %+v, %v", img, err)
	}
}

func TestOrient(t *testing.T) {
	// Where the stored top-left and top-right pixels of a 3×2 picture
	// appear once displayed, per orientation.
	p := image.Pt
	want := map[int][2]image.Point{
		1: {p(0, 0), p(2, 0)}, 2: {p(2, 0), p(0, 0)}, 3: {p(2, 1), p(0, 1)}, 4: {p(0, 1), p(2, 1)},
		5: {p(0, 0), p(0, 2)}, 6: {p(1, 0), p(1, 2)}, 7: {p(1, 2), p(1, 0)}, 8: {p(0, 2), p(0, 0)},
	}
	for o, w := range want {
		m := image.NewRGBA(image.Rect(0, 0, 3, 2))
		m.Set(0, 0, color.RGBA{R: 255, A: 255})
		m.Set(2, 0, color.RGBA{G: 255, A: 255})
		d := orient(m, o)
		if c := d.RGBAAt(w[0].X, w[0].Y); c.R != 255 {
			t.Errorf("orientation %d: top-left not at %v", o, w[0])
		}
		if c := d.RGBAAt(w[1].X, w[1].Y); c.G != 255 {
			t.Errorf("orientation %d: top-right not at %v", o, w[1])
		}
	}
}

func TestTransparencyOnWhite(t *testing.T) {
	clear := halves(1000, 1000, 0)
	for format, data := range map[string][]byte{
		"png":  encPNG(t, clear),
		"gif":  encGIF(t, image.NewPaletted(image.Rect(0, 0, 1000, 1000), color.Palette{color.Transparent, color.Black})),
		"webp": encWebP(1000, 1000, color.NRGBA{R: 255}),
	} {
		thumb, _, err := Thumbnail(bytes.NewReader(data), 50)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if m := decodeThumb(t, thumb); !near(m.At(25, 25), 255, 255, 255) {
			t.Errorf("%s: transparent pixel became %v, want white", format, m.At(25, 25))
		}
	}
}

func TestBombRefused(t *testing.T) {
	bombs := map[string][]byte{
		"png":  pngHeader(100000, 100000),
		"jpeg": jpegHeader(65535, 65535),
		"gif":  gifHeader(65535, 65535),
		"webp": encWebP(16384, 16384, color.NRGBA{A: 255}),
	}
	for format, data := range bombs {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 10 {
			if _, err := Probe(bytes.NewReader(data)); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%s Probe: %v, want ErrTooLarge", format, err)
			}
			if _, _, err := Thumbnail(bytes.NewReader(data), 0); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%s Thumbnail: %v, want ErrTooLarge", format, err)
			}
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
			t.Errorf("%s: 20 refusals allocated %d bytes", format, n)
		}
	}
	// A smaller MaxPixels refuses an ordinary picture.
	_, _, err := Limits{MaxPixels: 1000*500 - 1}.Thumbnail(bytes.NewReader(samples(t)["png"]), 0)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxPixels: %v, want ErrTooLarge", err)
	}
}

func TestMaxBytes(t *testing.T) {
	data := samples(t)["png"]
	l := Limits{MaxBytes: int64(len(data)) - 1}
	if _, _, err := l.Thumbnail(bytes.NewReader(data), 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one byte over: %v, want ErrTooLarge", err)
	}
	l.MaxBytes = int64(len(data))
	if _, _, err := l.Thumbnail(bytes.NewReader(data), 0); err != nil {
		t.Errorf("exactly MaxBytes: %v", err)
	}
	// A JPEG whose header is an endless run of APP2 segments stops at the
	// limit.
	seg := append([]byte{0xff, 0xe2, 0xff, 0xff}, make([]byte, 0xfffd)...)
	long := append([]byte{0xff, 0xd8}, bytes.Repeat(seg, 20)...)
	if _, err := (Limits{MaxBytes: 1 << 18}).Probe(bytes.NewReader(long)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("endless header: %v, want ErrTooLarge", err)
	}
}

func TestTruncatedAndUnsupported(t *testing.T) {
	for format, data := range samples(t) {
		for _, n := range []int{0, 1, 5, 20, 40, len(data) / 2, len(data) - 10} {
			if n >= len(data) {
				continue
			}
			_, _, err := Thumbnail(bytes.NewReader(data[:n]), 0)
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Errorf("%s cut at %d: %v, want ErrCorrupt or ErrUnsupported", format, n, err)
			}
		}
	}
	bmp := []byte("BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00")
	for name, data := range map[string][]byte{
		"bmp": bmp, "tiff": []byte("II*\x00\x08\x00\x00\x00"), "text": []byte("hello, world"),
	} {
		if _, err := Probe(bytes.NewReader(data)); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", name, err)
		}
	}
}

func TestReadError(t *testing.T) {
	data := samples(t)["png"]
	r := io.MultiReader(bytes.NewReader(data[:200]), iotest.ErrReader(io.ErrClosedPipe))
	_, _, err := Thumbnail(r, 0)
	if !errors.Is(err, io.ErrClosedPipe) || errors.Is(err, ErrCorrupt) {
		t.Errorf("read error: %v, want it wrapped, not ErrCorrupt", err)
	}
}

func TestLargeShrunkFirst(t *testing.T) {
	// 1400×700 is shrunk 2× by the box filter before CatmullRom: colours
	// and halves survive on both paths (YCbCr and the generic one).
	m := halves(1400, 700, 255)
	for format, data := range map[string][]byte{"jpeg": encJPEG(t, m), "png": encPNG(t, m)} {
		thumb, _, err := Thumbnail(bytes.NewReader(data), 320)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		d := decodeThumb(t, thumb)
		if d.Bounds().Size() != image.Pt(320, 160) || !near(d.At(10, 80), 255, 0, 0) || !near(d.At(310, 80), 0, 0, 255) {
			t.Errorf("%s: %v, left %v, right %v", format, d.Bounds(), d.At(10, 80), d.At(310, 80))
		}
	}
	// A one-pixel checkerboard averages to grey rather than aliasing to
	// black or white.
	g := image.NewGray(image.Rect(0, 0, 1000, 500))
	for i := range g.Pix {
		if (i%1000+i/1000)%2 == 0 {
			g.Pix[i] = 255
		}
	}
	thumb, _, err := Thumbnail(bytes.NewReader(encPNG(t, g)), 100)
	if err != nil {
		t.Fatal(err)
	}
	d := decodeThumb(t, thumb)
	for _, p := range []image.Point{{5, 5}, {50, 25}, {90, 45}, {51, 26}} {
		if !near(d.At(p.X, p.Y), 128, 128, 128) {
			t.Errorf("checkerboard at %v: %v, want grey", p, d.At(p.X, p.Y))
		}
	}
}
