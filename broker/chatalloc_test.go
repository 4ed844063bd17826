package broker

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// countConn is a session's connection for allocation counts: requests
// from a pipe, responses and pushes counted and dropped.
type countConn struct {
	r      *io.PipeReader
	writes atomic.Int64 // response writes
	pushes atomic.Int64 // push writes
	push   countPush
}

type countPush struct{ n *atomic.Int64 }

func (p countPush) Write(b []byte) (int, error)      { p.n.Add(1); return len(b), nil }
func (p countPush) SetWriteDeadline(time.Time) error { return nil }

func (c *countConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *countConn) Write(p []byte) (int, error)      { c.writes.Add(1); return len(p), nil }
func (c *countConn) SetWriteDeadline(time.Time) error { return nil }
func (c *countConn) OpenPush() (Stream, error)        { return c.push, nil }
func (c *countConn) Close(wire.ErrorCode, string) error {
	c.r.Close()
	return nil
}

// chatRig is a node with pairs of sessions over pipes, each pair in a
// direct chat: senders[i] writes to receivers[i].
type chatRig struct {
	b         *Broker
	senders   []*countConn
	sendW     []*io.PipeWriter
	receivers []*countConn
	chats     []uint64
	next      []chan []byte // per pair, the frames its feeder writes
}

func newChatRig(tb testing.TB, pairs int) *chatRig {
	tb.Helper()
	st, err := storage.Open(tb.TempDir(), storage.Options{SweepInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	v, err := token.NewVerifier(token.Options{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}})
	if err != nil {
		tb.Fatal(err)
	}
	b, err := New(st, v, Options{SendRate: 1e9, SendBurst: 1 << 30})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Shutdown(context.Background()) })
	r := &chatRig{b: b}
	open := func(user uint64) (*countConn, *io.PipeWriter) {
		pr, pw := io.Pipe()
		c := &countConn{r: pr}
		c.push = countPush{&c.pushes}
		go b.Serve(context.Background(), c)
		tok, _ := token.NewSigner(key).Sign(token.Claims{User: user, Device: 1, Expires: time.Now().Add(time.Hour)})
		write(tb, pw, &wire.Frame{Id: 1, Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: tok}}})
		waitCount(&c.writes, 1)
		tb.Cleanup(func() { pw.Close() })
		return c, pw
	}
	for i := range pairs {
		from, to := uint64(2*i+1), uint64(2*i+2)
		s, w := open(from)
		rc, _ := open(to)
		c, err := st.CreateChat(context.Background(), storage.ChatSpec{Kind: storage.ChatDirect, Creator: storage.UserID(from), Members: []storage.UserID{storage.UserID(to)}})
		if err != nil {
			tb.Fatal(err)
		}
		b.memberJoined(c.ID, storage.UserID(from), storage.RoleOwner, storage.ChatDirect)
		b.memberJoined(c.ID, storage.UserID(to), storage.RoleMember, storage.ChatDirect)
		r.senders, r.sendW, r.receivers, r.chats = append(r.senders, s), append(r.sendW, w), append(r.receivers, rc), append(r.chats, uint64(c.ID))
		// A feeder per pair writes its frames, so that the senders send
		// at once without a goroutine (an allocation) per message.
		next := make(chan []byte)
		r.next = append(r.next, next)
		go func() {
			for f := range next {
				w.Write(f)
			}
		}()
	}
	tb.Cleanup(func() {
		for _, c := range r.next {
			close(c)
		}
	})
	return r
}

func write(tb testing.TB, w io.Writer, f *wire.Frame) {
	b, err := wire.AppendFrame(nil, f, 0)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		tb.Fatal(err)
	}
}

// sends encodes, for every pair, n Send frames with client ids from 10.
func (r *chatRig) sends(tb testing.TB, n int) [][][]byte {
	out := make([][][]byte, len(r.chats))
	body := make([]byte, 200)
	for p, chat := range r.chats {
		out[p] = make([][]byte, n)
		for i := range n {
			f := &wire.Frame{Id: 10 + uint64(i), Body: &wire.Frame_Send{Send: &wire.Send{Chat: chat, ClientMsgId: 10 + uint64(i), Body: body}}}
			b, err := wire.AppendFrame(nil, f, 0)
			if err != nil {
				tb.Fatal(err)
			}
			out[p][i] = b
		}
	}
	return out
}

// round1 has pair 0 send its i-th message and waits until it is acked
// and pushed to its receiver.
func (r *chatRig) round1(frames [][][]byte, i int) {
	r.next[0] <- frames[0][i]
	waitCount(&r.senders[0].writes, int64(i)+2) // the Welcome, then an ack per message
	waitCount(&r.receivers[0].pushes, int64(i)+1)
}

// waitCount spins until n reaches want.
func waitCount(n *atomic.Int64, want int64) {
	for n.Load() < want {
		runtime.Gosched()
	}
}

// TestChatMessageAllocations checks that the broker's part of a chat
// message allocates nothing: the request read in place, the access check,
// the ack encoded into a pooled buffer, the message encoded once into a
// pooled payload, pushed to the other member's session and written there.
// What a message costs beyond the store's append (whose allocations are
// per group commit, shared by its messages under load:
// storage.TestAppendAllocationsUnderLoad) must be nothing.
func TestChatMessageAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	const warm, runs = 50, 300
	r := newChatRig(t, 2) // pair 0 through the broker, pair 1's chat straight to the store
	frames := r.sends(t, warm+runs+1)
	i := 0
	viaBroker := func() { r.round1(frames, i); i++ }
	cmid := uint64(1 << 40)
	direct := func() {
		cmid++
		m := storage.Message{Chat: storage.ChatID(r.chats[1]), Sender: 3, Device: 1, ClientMsgID: cmid, Kind: storage.MsgText, Body: frames[1][0][len(frames[1][0])-200:]}
		if _, err := r.b.st.AppendOne(work, m); err != nil {
			t.Fatal(err)
		}
	}
	for range warm {
		viaBroker()
		direct()
	}
	store := testing.AllocsPerRun(runs, direct)
	total := testing.AllocsPerRun(runs, viaBroker)
	t.Logf("a chat message: %.1f allocations, of which the store's append (one message per commit) %.1f", total, store)
	if total-store > 0.5 {
		t.Fatalf("the broker's part of a chat message allocates %.1f times, want 0", total-store)
	}
}

// BenchmarkChatMessage is one chat message at a time through the node
// (one sender: every message its own commit).
func BenchmarkChatMessage(b *testing.B) {
	r := newChatRig(b, 1)
	frames := r.sends(b, b.N+1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r.round1(frames, i)
	}
}
