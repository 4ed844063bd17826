package storage

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Body codecs. The codec is recorded in every record, so the choice can
// change without rewriting old data.
const (
	codecNone byte = 0
	codecS2   byte = 1
	codecZstd byte = 2
)

const (
	// compressMin is the smallest body worth compressing.
	compressMin = 128
	// zstdMin is the size from which zstd's better ratio pays for its cost.
	zstdMin = 16 << 10
)

var errCorrupt = errors.New("storage: corrupt record")

// bodyCodec compresses and decompresses bodies. It is safe for concurrent
// use: s2 is stateless and the zstd coder's EncodeAll/DecodeAll are
// concurrency-safe.
type bodyCodec struct {
	zenc *zstd.Encoder
	zdec *zstd.Decoder
}

func newBodyCodec() (*bodyCodec, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("storage: zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(64<<20))
	if err != nil {
		return nil, fmt.Errorf("storage: zstd decoder: %w", err)
	}
	return &bodyCodec{zenc: enc, zdec: dec}, nil
}

func (c *bodyCodec) close() {
	c.zenc.Close()
	c.zdec.Close()
}

// appendEncoded appends body in the best codec to dst and returns the codec
// used. A compressed form is kept only when it saves at least 10%.
func (c *bodyCodec) appendEncoded(dst, body []byte) ([]byte, byte) {
	if len(body) < compressMin {
		return append(dst, body...), codecNone
	}
	start := len(dst)
	codec := codecS2
	if len(body) >= zstdMin {
		codec = codecZstd
		dst = c.zenc.EncodeAll(body, dst)
	} else {
		n := s2.MaxEncodedLen(len(body))
		dst = grow(dst, n)
		enc := s2.Encode(dst[start:start+n], body)
		dst = dst[:start+len(enc)]
	}
	if len(dst)-start > len(body)-len(body)/10 {
		return append(dst[:start], body...), codecNone
	}
	return dst, codec
}

// appendDecoded appends the decoded form of data in codec to dst.
func (c *bodyCodec) appendDecoded(dst, data []byte, codec byte) ([]byte, error) {
	switch codec {
	case codecNone:
		return append(dst, data...), nil
	case codecS2:
		n, err := s2.DecodedLen(data)
		if err != nil {
			return dst, errCorrupt
		}
		start := len(dst)
		dst = grow(dst, n)
		out, err := s2.Decode(dst[start:start+n], data)
		if err != nil {
			return dst[:start], errCorrupt
		}
		return dst[:start+len(out)], nil
	case codecZstd:
		out, err := c.zdec.DecodeAll(data, dst)
		if err != nil {
			return dst, errCorrupt
		}
		return out, nil
	}
	return dst, errCorrupt
}

// grow extends b by n bytes, reallocating if needed.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}
