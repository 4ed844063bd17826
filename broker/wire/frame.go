package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"
)

// DefaultMaxFrameBytes is the frame size limit when none is given.
const DefaultMaxFrameBytes = 1 << 20

// growStep is the first allocation for a frame's payload; larger frames
// double it as their bytes arrive.
const growStep = 16 << 10

// headerBytes is the size of a frame's length prefix.
const headerBytes = 4

// Errors from the framing layer. A session that gets one closes the stream
// after sending Error BAD_FRAME or TOO_LARGE.
var (
	// ErrFrameTooLarge is returned for a frame over the limit.
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrBadFrame is returned for a frame that does not decode, or decodes
	// to a Frame without a body.
	ErrBadFrame = errors.New("wire: bad frame")
	// ErrTruncated is returned when a stream ends inside a frame.
	ErrTruncated = errors.New("wire: truncated frame")
)

var marshal = proto.MarshalOptions{}

// AppendFrame appends f, length-prefixed, to dst. It fails for a frame
// without a body or one over max bytes (0 means DefaultMaxFrameBytes), and
// then leaves dst as it was.
func AppendFrame(dst []byte, f *Frame, max int) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxFrameBytes
	}
	if f.GetBody() == nil {
		return dst, fmt.Errorf("%w: no body", ErrBadFrame)
	}
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst, err := marshal.MarshalAppend(dst, f)
	if err != nil {
		return dst[:start], fmt.Errorf("wire: encode: %w", err)
	}
	n := len(dst) - start - headerBytes
	if n > max {
		return dst[:start], fmt.Errorf("%w: %d bytes over %d", ErrFrameTooLarge, n, max)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	return dst, nil
}

// Decode decodes one frame's payload (without its length prefix) into f.
func Decode(payload []byte, f *Frame) error {
	if err := proto.Unmarshal(payload, f); err != nil {
		return fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if f.GetBody() == nil {
		return fmt.Errorf("%w: no body", ErrBadFrame)
	}
	return nil
}

// Reader reads frames from a stream. It adds no buffering of its own
// (QUIC streams buffer), so an idle Reader holds only its last frame's
// buffer, and none after Release. It is not safe for concurrent use.
type Reader struct {
	r   io.Reader
	max int
	buf *[]byte // from bufPool while a frame is held; nil after Release
	hdr [headerBytes]byte
}

// Frame buffers are recycled between Readers, so that releasing a
// Reader's buffer after every frame (an idle stream holds none) costs no
// allocation for the next. There are two sizes, so that a frame's buffer
// still grows only as its bytes arrive: every frame starts in a small
// buffer, of the first step, and one that outgrows it within
// maxPooledBuf moves to a large one. Larger buffers go to the garbage
// collector, so that one large frame does not pin its buffer.
var (
	smallBufs = sync.Pool{New: func() any { b := make([]byte, 0, growStep); return &b }}
	largeBufs = sync.Pool{New: func() any { b := make([]byte, 0, maxPooledBuf); return &b }}
)

// maxPooledBuf is the size of the large pooled buffers.
const maxPooledBuf = 64 << 10

// NewReader returns a Reader of frames up to max bytes (0 means
// DefaultMaxFrameBytes) from r.
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = DefaultMaxFrameBytes
	}
	return &Reader{r: r, max: max}
}

// Next returns the next frame's payload, valid until the next call. At a
// clean end of stream it returns io.EOF; inside a frame, ErrTruncated.
func (r *Reader) Next() ([]byte, error) {
	hdr := r.hdr[:]
	if _, err := io.ReadFull(r.r, hdr); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrTruncated
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr)
	switch {
	case n == 0:
		return nil, fmt.Errorf("%w: empty", ErrBadFrame)
	case n > uint32(r.max):
		return nil, fmt.Errorf("%w: %d bytes over %d", ErrFrameTooLarge, n, r.max)
	}
	// The buffer grows as bytes arrive, not as the header claims, so a
	// peer that announces a large frame and sends nothing costs little.
	if r.buf == nil {
		r.buf = smallBufs.Get().(*[]byte)
	}
	buf := (*r.buf)[:0]
	for len(buf) < int(n) {
		if len(buf) == cap(buf) {
			if cap(buf) == growStep && int(n) <= maxPooledBuf {
				large := largeBufs.Get().(*[]byte)
				buf = append((*large)[:0], buf...)
				*r.buf = (*r.buf)[:0]
				smallBufs.Put(r.buf)
				r.buf = large
			} else {
				buf = slices.Grow(buf, min(int(n)-len(buf), max(cap(buf), growStep)))
			}
		}
		want := min(int(n), cap(buf))
		m, err := io.ReadFull(r.r, buf[len(buf):want])
		buf = buf[:len(buf)+m]
		if err != nil {
			*r.buf = buf
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, ErrTruncated
			}
			return nil, err
		}
	}
	*r.buf = buf
	return buf, nil
}

// Read reads and decodes the next frame into f.
func (r *Reader) Read(f *Frame) error {
	p, err := r.Next()
	if err != nil {
		return err
	}
	return Decode(p, f)
}

// Release gives the Reader's frame buffer back, for an idle stream. The
// last frame's payload is invalid from then on.
func (r *Reader) Release() {
	if r.buf == nil {
		return
	}
	*r.buf = (*r.buf)[:0]
	switch cap(*r.buf) {
	case growStep:
		smallBufs.Put(r.buf)
	case maxPooledBuf:
		largeBufs.Put(r.buf)
	}
	r.buf = nil
}
