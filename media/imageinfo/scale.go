package imageinfo

import (
	"image"
	"image/color"

	"golang.org/x/image/draw"
)

// fit returns w×h scaled so that the longer side is at most max, at least
// one pixel each.
func fit(w, h, max int) (int, int) {
	if w <= max && h <= max {
		return w, h
	}
	if w >= h {
		return max, clamp1(int((int64(h)*int64(max) + int64(w)/2) / int64(w)))
	}
	return clamp1(int((int64(w)*int64(max) + int64(h)/2) / int64(h))), max
}

func clamp1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// scale draws m, in stored orientation, onto a white RGBA whose longer side
// is at most max. A picture more than twice the thumbnail's size is first
// shrunk by an integer factor with a box filter (shrink), to between two and
// four times the thumbnail, and then scaled with CatmullRom: the box average
// keeps fine detail from aliasing as ApproxBiLinear's point samples do, and
// costs a fraction of CatmullRom over all the source pixels
// (BenchmarkScale).
func scale(m image.Image, max int) *image.RGBA {
	b := m.Bounds()
	w, h := fit(b.Dx(), b.Dy(), max)
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	op := draw.Src
	if !opaque(m) {
		draw.Draw(dst, dst.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
		op = draw.Over
	}
	if f := min(b.Dx()/(2*w), b.Dy()/(2*h)); f >= 2 {
		m = shrink(m, f)
		b = m.Bounds()
	}
	draw.CatmullRom.Scale(dst, dst.Bounds(), m, b, op, nil)
	return dst
}

// opaque reports whether m cannot hold transparent pixels, without scanning
// it.
func opaque(m image.Image) bool {
	switch m.(type) {
	case *image.YCbCr, *image.Gray, *image.CMYK:
		return true
	}
	return false
}

// shrink returns m reduced by the factor f, each pixel the average of an
// f×f block (fewer at the right and bottom edges), premultiplied.
func shrink(m image.Image, f int) *image.RGBA {
	b := m.Bounds()
	w, h := (b.Dx()+f-1)/f, (b.Dy()+f-1)/f
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	if y, ok := m.(*image.YCbCr); ok {
		shrinkYCbCr(dst, y, f)
		return dst
	}
	src, ok := m.(image.RGBA64Image)
	if !ok {
		src = rgba64{m}
	}
	sums := make([]uint64, 4*w)
	for by := 0; by < h; by++ {
		clear(sums)
		y0, y1 := b.Min.Y+by*f, min(b.Min.Y+(by+1)*f, b.Max.Y)
		for y := y0; y < y1; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := src.RGBA64At(x, y)
				s := sums[4*((x-b.Min.X)/f):]
				s[0] += uint64(c.R)
				s[1] += uint64(c.G)
				s[2] += uint64(c.B)
				s[3] += uint64(c.A)
			}
		}
		row := dst.Pix[by*dst.Stride:]
		for bx := 0; bx < w; bx++ {
			n := uint64(min(f, b.Dx()-bx*f)*(y1-y0)) << 8
			for k := 0; k < 4; k++ {
				row[4*bx+k] = uint8(sums[4*bx+k] / n)
			}
		}
	}
	return dst
}

// shrinkYCbCr is shrink for a decoded JPEG: it averages the Y, Cb and Cr
// samples of each block and converts the average once.
func shrinkYCbCr(dst *image.RGBA, m *image.YCbCr, f int) {
	b := m.Bounds()
	w, h := dst.Rect.Dx(), dst.Rect.Dy()
	sums := make([]uint64, 3*w)
	for by := 0; by < h; by++ {
		clear(sums)
		y0, y1 := b.Min.Y+by*f, min(b.Min.Y+(by+1)*f, b.Max.Y)
		for y := y0; y < y1; y++ {
			yrow := m.Y[m.YOffset(b.Min.X, y):]
			for x := b.Min.X; x < b.Max.X; x++ {
				ci := m.COffset(x, y)
				s := sums[3*((x-b.Min.X)/f):]
				s[0] += uint64(yrow[x-b.Min.X])
				s[1] += uint64(m.Cb[ci])
				s[2] += uint64(m.Cr[ci])
			}
		}
		row := dst.Pix[by*dst.Stride:]
		for bx := 0; bx < w; bx++ {
			n := uint64(min(f, b.Dx()-bx*f) * (y1 - y0))
			r, g, bl := color.YCbCrToRGB(uint8(sums[3*bx]/n), uint8(sums[3*bx+1]/n), uint8(sums[3*bx+2]/n))
			row[4*bx], row[4*bx+1], row[4*bx+2], row[4*bx+3] = r, g, bl, 255
		}
	}
}

// rgba64 adapts an image without RGBA64At.
type rgba64 struct{ image.Image }

func (m rgba64) RGBA64At(x, y int) color.RGBA64 {
	r, g, b, a := m.At(x, y).RGBA()
	return color.RGBA64{R: uint16(r), G: uint16(g), B: uint16(b), A: uint16(a)}
}
