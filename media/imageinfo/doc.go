// Package imageinfo reads what the node needs to know about an uploaded
// picture: its format and dimensions (Probe, from the header alone) and a
// small JPEG thumbnail (Thumbnail), for the attachment record of a photo.
//
// Four formats are accepted: JPEG, PNG and GIF from the standard library and
// WebP from golang.org/x/image. BMP and TIFF, which x/image also decodes,
// are deliberately refused: phones and browsers do not send them as photos,
// and TIFF's many compressions are attack surface with no user behind it.
// The check is on the format name that image.DecodeConfig reports, so a
// decoder that some other package registers does not widen the set.
//
// Uploads are hostile input, so every call is bounded before it spends
// memory (Limits): the bytes read from the reader are capped (MaxBytes), and
// the width×height that the header claims is checked against MaxPixels
// before any pixel buffer exists, so a 100000×100000 PNG of a few hundred
// bytes is refused with ErrTooLarge at the cost of reading its header. Bad,
// truncated or unknown input yields an error (ErrUnsupported for formats
// outside the four, ErrCorrupt for the rest), never a panic; FuzzProbe and
// FuzzThumbnail keep it so.
//
// The thumbnail is a baseline JPEG whose longer side is at most the
// requested size (320 by default), never enlarged, with the aspect ratio
// kept. A picture more than twice that size is first shrunk by an integer
// factor with a box filter (averaging Y, Cb and Cr directly for a JPEG) and
// the rest scaled with x/image/draw's CatmullRom. Measured on a 12 MP
// photo (BenchmarkScale): CatmullRom over all of it takes about 330 ms,
// BiLinear 220 ms, ApproxBiLinear 2 ms but point-samples and so aliases
// fine detail, box then CatmullRom 75 ms. A JPEG's EXIF orientation (tag
// 0x0112 in APP1) is read by a small bounded parser and applied, so a
// portrait photo from a phone stays portrait; Image reports the dimensions
// as displayed. Transparent PNG, GIF and WebP pixels are flattened onto
// white, since JPEG has no alpha.
//
// The package holds no state and starts no goroutines; all functions are
// safe for concurrent use.
package imageinfo
