package identity

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// FileSenderOptions configures a FileSender.
type FileSenderOptions struct {
	// Path is the outbox file, created with mode 0600 if missing and
	// appended to. Required; the node uses <data>/sms-outbox.jsonl.
	Path string
	// Sync fsyncs the file after every line. Default: false. The file
	// adapter is for development and the bench: a reader (the bench, a
	// developer's tail -f) sees a line as soon as its write returns, and an
	// fsync per code under the sender's lock would cap logins at the disk's
	// flush rate. Turn it on when the outbox must survive power loss.
	Sync bool
	// MaxLine caps one JSON line in bytes, newline included; a message
	// whose line would be longer is refused with ErrSMSInvalid.
	// Default: 4 KiB.
	MaxLine int
	// Now returns the time written as "at". Default: time.Now.
	Now func() time.Time
}

// FileSender is the development SMS adapter: each message is appended to a
// file as one JSON line {"to","text","at"}, "at" in RFC 3339 with
// nanoseconds. Lines are written whole, each with a single write(2) on a file
// opened with O_APPEND, under one mutex, so concurrent senders (and other
// processes appending) never interleave. Safe for concurrent use.
type FileSender struct {
	opts   FileSenderOptions
	sent   atomic.Uint64
	failed atomic.Uint64
	mu     sync.Mutex // guards the following
	f      *os.File
	buf    []byte
	closed bool
}

// OutboxLine is one line of a FileSender's outbox.
type OutboxLine struct {
	To   string    `json:"to"`
	Text string    `json:"text"`
	At   time.Time `json:"at"`
}

// ErrOutboxCorrupt: ReadOutbox found a line that is not a valid outbox line.
var ErrOutboxCorrupt = errors.New("identity: sms outbox line is corrupt")

// ErrSenderClosed: Send was called after Close. Send wraps it in
// ErrSMSUnavailable, as Sender's contract asks.
var ErrSenderClosed = errors.New("identity: sms sender is closed")

const defaultMaxOutboxLine = 4 << 10

// maxOutboxReadLine bounds the lines ReadOutbox accepts, well above any
// MaxLine a sender would be given.
const maxOutboxReadLine = 1 << 20

// NewFileSender opens (creating if needed) the outbox at opts.Path.
func NewFileSender(opts FileSenderOptions) (*FileSender, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("%w: file sender needs a path", ErrSMSConfig)
	}
	if opts.MaxLine == 0 {
		opts.MaxLine = defaultMaxOutboxLine
	}
	if opts.MaxLine < 0 || opts.MaxLine > maxOutboxReadLine {
		return nil, fmt.Errorf("%w: file sender MaxLine %d out of range (0, %d]", ErrSMSConfig, opts.MaxLine, maxOutboxReadLine)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f, err := os.OpenFile(opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("identity: open sms outbox %q: %w", opts.Path, err)
	}
	return &FileSender{opts: opts, f: f}, nil
}

// Send appends m to the outbox. A malformed or oversized message returns
// ErrSMSInvalid and writes nothing; a failed write returns ErrSMSUnavailable.
func (s *FileSender) Send(ctx context.Context, m SMS) error {
	err := s.send(ctx, m)
	if err != nil {
		s.failed.Add(1)
		return err
	}
	s.sent.Add(1)
	return nil
}

func (s *FileSender) send(ctx context.Context, m SMS) error {
	if err := m.validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrSMSUnavailable, err)
	}
	line, err := json.Marshal(OutboxLine{To: m.To, Text: m.Text, At: s.opts.Now().UTC()})
	if err != nil {
		// Unreachable for strings and a time in range; kept as an error, not a panic.
		return fmt.Errorf("%w: encode outbox line: %w", ErrSMSInvalid, err)
	}
	if len(line)+1 > s.opts.MaxLine {
		return fmt.Errorf("%w: outbox line is %d bytes, the limit is %d", ErrSMSInvalid, len(line)+1, s.opts.MaxLine)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: %w", ErrSMSUnavailable, ErrSenderClosed)
	}
	s.buf = append(append(s.buf[:0], line...), '\n')
	if _, err := s.f.Write(s.buf); err != nil {
		return fmt.Errorf("%w: write outbox %q: %w", ErrSMSUnavailable, s.opts.Path, err)
	}
	if s.opts.Sync {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("%w: sync outbox %q: %w", ErrSMSUnavailable, s.opts.Path, err)
		}
	}
	return nil
}

// Stats returns the sender's counters.
func (s *FileSender) Stats() SenderStats {
	return SenderStats{Sent: s.sent.Load(), Failed: s.failed.Load()}
}

// Close closes the outbox; later Sends return ErrSenderClosed. Closing twice
// returns nil.
func (s *FileSender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("identity: close sms outbox %q: %w", s.opts.Path, err)
	}
	return nil
}

// ReadOutbox reads every complete line of the outbox at path, oldest first.
// A missing file reads as no lines. A trailing line without its newline (a
// write cut by a crash) is skipped; any other line that is not a valid outbox
// line returns ErrOutboxCorrupt with its line number.
func ReadOutbox(path string) ([]OutboxLine, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("identity: read sms outbox %q: %w", path, err)
	}
	var out []OutboxLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxOutboxReadLine)
	complete := len(data) == 0 || data[len(data)-1] == '\n'
	for n := 1; sc.Scan(); n++ {
		b := sc.Bytes()
		if len(b) == 0 {
			continue
		}
		var l OutboxLine
		if err := json.Unmarshal(b, &l); err != nil || l.To == "" || l.At.IsZero() {
			if !complete && n == bytes.Count(data, []byte{'\n'})+1 {
				break // the torn last line
			}
			return out, fmt.Errorf("%w: %s line %d", ErrOutboxCorrupt, path, n)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("%w: %s: %w", ErrOutboxCorrupt, path, err)
	}
	return out, nil
}
