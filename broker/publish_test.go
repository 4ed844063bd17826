package broker

import (
	"io"
	"math"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// discardConn is a connection whose streams swallow everything.
type discardConn struct{ written atomic.Int64 }

func (c *discardConn) Read([]byte) (int, error) { return 0, io.EOF }
func (c *discardConn) Write(p []byte) (int, error) {
	c.written.Add(int64(len(p)))
	return len(p), nil
}
func (c *discardConn) SetWriteDeadline(time.Time) error   { return nil }
func (c *discardConn) OpenPush() (Stream, error)          { return c, nil }
func (c *discardConn) Close(wire.ErrorCode, string) error { return nil }

// publishRig is a broker with n online sessions, all members of one
// group, writing into discardConns.
type publishRig struct {
	b        *Broker
	e        *chatEntry
	sessions []*Session
	conns    []*discardConn
	inline   bool // writers run on the publisher's goroutine
}

// newPublishRig returns the rig with writers woken as goroutines, as on a
// node.
func newPublishRig(tb testing.TB, n int) *publishRig { return newRig(tb, n, false) }

// newInlineRig returns the rig with its writers run one after another on
// the publisher's goroutine, so that nothing else runs while allocations
// are counted: under load the scheduler may allocate a goroutine record
// for a woken writer, which is not the fan-out's doing.
func newInlineRig(tb testing.TB, n int) *publishRig { return newRig(tb, n, true) }

func newRig(tb testing.TB, n int, inline bool) *publishRig {
	tb.Helper()
	st, err := storage.Open(tb.TempDir(), storage.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	b, err := New(st, &token.Verifier{}, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	r := &publishRig{b: b, inline: inline}
	noWake := func() {}
	for u := 1; u <= n; u++ {
		c := &discardConn{}
		s := &Session{b: b, conn: c, user: storage.UserID(u), device: 1}
		s.writeFn = s.writeLoop
		s.expires.Store(math.MaxInt64)
		wake := s.wake
		if inline {
			wake = noWake
		}
		s.out = NewOutbox(OutboxOptions{Wake: wake, Drops: b.m.drops})
		b.reg.add(s, 16, b.newLimiter)
		r.e = b.chats.join(1, s.user, storage.RoleMember, storage.ChatGroup)
		r.sessions = append(r.sessions, s)
		r.conns = append(r.conns, c)
	}
	return r
}

// publish fans one message out and waits until every writer is done.
func (r *publishRig) publish(seq uint64, frame []byte) {
	p := NewPayload()
	p.B = append(p.B, frame...)
	r.b.publish(r.e, seq, p, nil)
	p.Release()
	for _, s := range r.sessions {
		if r.inline {
			s.writing.Store(true)
			r.b.writers.Add(1)
			s.writeLoop()
			continue
		}
		for s.writing.Load() {
			runtime.Gosched()
		}
	}
}

func TestPublishAllocatesNothingPerRecipient(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates per goroutine")
	}
	const n = 1000
	r := newInlineRig(t, n)
	frame := make([]byte, 300)
	seq := uint64(0)
	round := func() {
		seq++
		r.publish(seq, frame)
	}
	round() // warm the pools
	allocs := testing.AllocsPerRun(50, round)
	// Every session's outbox takes the payload and its writer writes it
	// out, and none of that may allocate.
	if allocs != 0 {
		t.Fatalf("publishing to %d sessions allocates %.1f times", n, allocs)
	}
	for i, c := range r.conns {
		if got := c.written.Load(); got != int64(len(frame))*int64(seq) {
			t.Fatalf("session %d got %d bytes, want %d", i, got, len(frame)*int(seq))
		}
	}
}

// BenchmarkPublish1000 publishes one message to 1,000 online sessions and
// waits for their writers: the whole fan-out, per recipient.
func BenchmarkPublish1000(b *testing.B) {
	const n = 1000
	r := newPublishRig(b, n)
	frame := make([]byte, 300)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r.publish(uint64(i+1), frame)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/recipient")
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
}
