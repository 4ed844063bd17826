package imageinfo

import "errors"

// ErrUnsupported is returned for input that is not a JPEG, PNG, GIF or
// WebP image.
var ErrUnsupported = errors.New("imageinfo: unsupported image format")

// ErrTooLarge is returned when an image claims more pixels than
// Limits.MaxPixels or its file is longer than Limits.MaxBytes.
var ErrTooLarge = errors.New("imageinfo: image too large")

// ErrCorrupt is returned for an image of a supported format whose data
// cannot be decoded: truncated, malformed or with zero dimensions.
var ErrCorrupt = errors.New("imageinfo: corrupt image")
