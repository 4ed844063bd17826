package httpapi

import (
	"errors"
	"io"
)

// ErrTooLarge is ReadAtMost's error for a body over its bound.
var ErrTooLarge = errors.New("answer over the size limit")

// ReadAtMost reads r to its end, at most n bytes. A longer body returns
// its first n bytes and ErrTooLarge; a read error returns what was read
// before it and the error.
func ReadAtMost(r io.Reader, n int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, n+1))
	if err != nil {
		return b, err
	}
	if int64(len(b)) > n {
		return b[:n], ErrTooLarge
	}
	return b, nil
}
