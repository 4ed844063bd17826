package broker_test

import (
	"context"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
	"github.com/gonets/gonets/storage/storagetest"
)

// A member who comes online while an append is in flight joins the chat's
// index entry and gets the message, and the chat's order holds after it.
func TestMemberOnlineDuringAppendGetsIt(t *testing.T) {
	g := storagetest.NewSyncGate(t)
	n := brokertest.Start(t, brokertest.Options{Storage: storage.Options{FS: g.FS}})
	alice := dial(t, n, n.Token(t, 1, 1))
	bob := dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(group, 2, 3)

	g.Hold.Store(true)
	done := make(chan *wire.Ack)
	go func() { done <- alice.mustAck(chat, 1, "m1") }() // in flight: seq 1 assigned, sync held
	<-g.Held
	g.Hold.Store(false)
	carol := dial(t, n, n.Token(t, 3, 1)) // reads the durable view: not yet m1
	if h := carol.do(&wire.Frame{Body: &wire.Frame_History{History: &wire.HistoryRequest{Chat: chat, FromSeq: 1}}}).GetHistoryResult(); h == nil || h.LastSeq != 0 {
		t.Fatalf("history %v", h)
	}
	g.Open()
	if a := <-done; a.Seq != 1 {
		t.Fatalf("ack %v", a)
	}
	for _, c := range []*wireClient{bob, carol} {
		if m := c.push().GetDeliver().GetMessage(); m.Seq != 1 {
			t.Fatalf("got %v", m)
		}
	}
	for i := range 5 {
		a := bob.mustAck(chat, uint64(i+1), "later")
		if m := carol.push().GetDeliver().GetMessage(); m.Seq != a.Seq {
			t.Fatalf("carol got %v, want seq %d", m, a.Seq)
		}
	}
}

// A direct chat has fixed members: the creator cannot remove the peer and
// neither can leave, so the pair can always write to each other.
func TestDirectChatMembersFixed(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	alice := dial(t, n, n.Token(t, 1, 1))
	bob := dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(direct, 2)
	if got := errCode(t, alice.do(&wire.Frame{Body: &wire.Frame_RemoveMember{RemoveMember: &wire.RemoveMember{Chat: chat, User: 2}}})); got != wire.ErrorCode_ERROR_CODE_FORBIDDEN {
		t.Fatalf("removing the peer: %v", got)
	}
	if got := errCode(t, bob.do(&wire.Frame{Body: &wire.Frame_Leave{Leave: &wire.Leave{Chat: chat}}})); got != wire.ErrorCode_ERROR_CODE_FORBIDDEN {
		t.Fatalf("leaving: %v", got)
	}
	bob.mustAck(chat, 1, "still here")
}

// A session whose token expired gets no more pushes, requests or not, and
// is closed.
func TestExpiredSessionGetsNothing(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	n := brokertest.Start(t, brokertest.Options{Now: clock})
	alice := dial(t, n, n.Token(t, 1, 1))
	bob := dial(t, n, n.TokenExpiring(t, 2, 1, clock().Add(time.Minute)))
	chat := alice.createChat(direct, 2)
	now.Add(int64(24 * time.Hour))       // bob's token is a day past its expiry
	alice = dial(t, n, n.Token(t, 1, 2)) // alice on a fresh token
	alice.mustAck(chat, 1, "secret")
	select {
	case f := <-bob.pushes:
		t.Fatalf("expired session still got %v", f)
	case <-bob.conn.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("expired session neither closed nor silent")
	}
}

// A history page stops at what fits one frame instead of failing.
func TestHistoryPageFitsAFrame(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{SendRate: 100000}})
	alice := dial(t, n, n.Token(t, 1, 1))
	chat := alice.createChat(direct, 2)
	body := make([]byte, 60<<10)
	for i := range body {
		body[i] = byte(i*7919>>3) ^ byte(i>>11) // poorly compressible
	}
	const msgs = 40 // 2.4 MB: more than one 1 MiB frame
	for i := range msgs {
		alice.do(&wire.Frame{Body: &wire.Frame_Send{Send: &wire.Send{Chat: chat, ClientMsgId: uint64(i + 1), Body: body}}})
	}
	held := uint64(0)
	for pages := 0; held < msgs; pages++ {
		h := alice.do(&wire.Frame{Body: &wire.Frame_History{History: &wire.HistoryRequest{Chat: chat, FromSeq: held + 1}}}).GetHistoryResult()
		if h == nil || len(h.Messages) == 0 || len(h.Messages) > 17 {
			t.Fatalf("page %d: %v", pages, h)
		}
		for _, m := range h.Messages {
			if m.Seq != held+1 {
				t.Fatalf("seq %d after %d", m.Seq, held)
			}
			held = m.Seq
		}
	}
	latest := alice.do(&wire.Frame{Body: &wire.Frame_History{History: &wire.HistoryRequest{Chat: chat, Latest: true, Limit: 30}}}).GetHistoryResult()
	if n := len(latest.GetMessages()); n == 0 || latest.Messages[n-1].Seq != msgs {
		t.Fatalf("latest page: %d messages, ending at %v", n, latest.GetMessages())
	}
}

// A connection that announces a large first frame and sends nothing
// costs the node little.
func TestPreAuthConnectionsCostLittle(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const conns = 200
	for range conns {
		reqR, reqW := io.Pipe()
		_, respW := net.Pipe()
		_, pushW := net.Pipe()
		c := &pipeConn{reqR: reqR, respW: respW, pushW: pushW}
		go n.Broker().Serve(context.Background(), c)
		t.Cleanup(func() { c.Close(0, "") })
		reqW.Write([]byte{0, 0x10, 0, 0}) // "a 1 MiB frame follows", then nothing
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > conns*32<<10 {
		t.Fatalf("%d silent unauthenticated connections hold %d KiB", conns, grew>>10)
	}
}

// The send bucket survives a reconnect. The node's clock is frozen, so
// the count is exact: the bucket's burst, and one more token per second
// the clock moves.
func TestRateLimitSurvivesReconnect(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{SendRate: 1, SendBurst: 20}, Now: clock})
	alice := dial(t, n, n.Token(t, 1, 1))
	chat := alice.createChat(direct, 2)
	total, cmid := 0, uint64(0)
	sendAll := func(c *wireClient) {
		for {
			cmid++
			r := c.do(&wire.Frame{Body: &wire.Frame_Send{Send: &wire.Send{Chat: chat, ClientMsgId: cmid, Body: []byte("x")}}})
			if r.GetAck() == nil {
				if got := errCode(t, r); got != wire.ErrorCode_ERROR_CODE_RATE_LIMITED {
					t.Fatalf("send %d: %v", cmid, got)
				}
				return
			}
			total++
		}
	}
	for round := range 4 {
		c := alice
		if round > 0 {
			c = dial(t, n, n.Token(t, 1, 1))
		}
		sendAll(c)
		c.conn.CloseWithError(0, "")
		storagetest.WaitFor(t, "the session to end", func() bool { return n.Broker().Sessions() == 0 })
	}
	// The burst of 20, less the token the chat's creation spent.
	if total != 19 {
		t.Fatalf("%d messages acked across 4 connections with a burst of 20 and no time passing, want 19", total)
	}
	now.Add(int64(3 * time.Second))
	sendAll(dial(t, n, n.Token(t, 1, 1)))
	if total != 22 {
		t.Fatalf("%d messages acked after 3 s at 1/s, want 22", total)
	}
}

// Membership requests are bounded: at most 1,000 members at creation.
func TestCreateChatMemberCap(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	alice := dial(t, n, n.Token(t, 1, 1))
	ids := make([]uint64, 1001)
	for i := range ids {
		ids[i] = uint64(i + 10)
	}
	r := alice.do(&wire.Frame{Body: &wire.Frame_CreateChat{CreateChat: &wire.CreateChat{Kind: channel, Members: ids}}})
	if got := errCode(t, r); got != wire.ErrorCode_ERROR_CODE_BAD_REQUEST {
		t.Fatalf("1,001 members: %v", got)
	}
	alice.createChat(channel, ids[:1000]...)
}

// A membership change completes whatever its client does: an admin who
// disconnects while the change waits for its commit still makes it, and
// the index follows: a removed member can neither post nor read, an added
// one can.
func TestMembershipChangeOutlivesItsClient(t *testing.T) {
	// changed starts a node with alice, bob (a member of alice's group)
	// and carol (not one), sends change from alice's second device while
	// the WAL sync is held, disconnects that device, releases the sync,
	// and returns once the store holds member's membership as want.
	changed := func(t *testing.T, change func(chat uint64) *wire.Frame, member uint64, want bool) (alice, bob, carol *wireClient, chat uint64) {
		g := storagetest.NewSyncGate(t)
		n := brokertest.Start(t, brokertest.Options{Storage: storage.Options{FS: g.FS}})
		alice = dial(t, n, n.Token(t, 1, 1))
		bob = dial(t, n, n.Token(t, 2, 1))
		carol = dial(t, n, n.Token(t, 3, 1))
		chat = alice.createChat(group, 2)
		bob.mustAck(chat, 1, "before")
		admin := dial(t, n, n.Token(t, 1, 2))
		g.Hold.Store(true)
		admin.send(change(chat))
		<-g.Held
		admin.conn.CloseWithError(0, "gone") // the client leaves mid-commit
		g.Open()
		storagetest.WaitFor(t, "the change to commit", func() bool {
			_, err := n.Store().Member(storage.ChatID(chat), storage.UserID(member))
			return (err == nil) == want
		})
		return alice, bob, carol, chat
	}
	t.Run("remove", func(t *testing.T) {
		alice, bob, _, chat := changed(t, func(chat uint64) *wire.Frame {
			return &wire.Frame{Body: &wire.Frame_RemoveMember{RemoveMember: &wire.RemoveMember{Chat: chat, User: 2}}}
		}, 2, false)
		// History reads are checked by the index alone: it must follow the
		// commit its client left (a refused send would heal it, so this
		// comes first).
		storagetest.WaitFor(t, "the removed member's history read refused", func() bool {
			r := bob.do(&wire.Frame{Body: &wire.Frame_History{History: &wire.HistoryRequest{Chat: chat, FromSeq: 1}}})
			return r.GetError().GetCode() == wire.ErrorCode_ERROR_CODE_NOT_MEMBER
		})
		storagetest.WaitFor(t, "the removed member's send refused", func() bool {
			r := bob.do(&wire.Frame{Body: &wire.Frame_Send{Send: &wire.Send{Chat: chat, ClientMsgId: 2, Body: []byte("after")}}})
			return r.GetError().GetCode() == wire.ErrorCode_ERROR_CODE_NOT_MEMBER
		})
		r := alice.do(&wire.Frame{Body: &wire.Frame_RemoveMember{RemoveMember: &wire.RemoveMember{Chat: chat, User: 2}}})
		if got := errCode(t, r); got != wire.ErrorCode_ERROR_CODE_NOT_MEMBER {
			t.Fatalf("repeated removal: %v", got)
		}
	})
	t.Run("add", func(t *testing.T) {
		_, bob, carol, chat := changed(t, func(chat uint64) *wire.Frame {
			return &wire.Frame{Body: &wire.Frame_AddMembers{AddMembers: &wire.AddMembers{Chat: chat, Users: []uint64{3}}}}
		}, 3, true)
		storagetest.WaitFor(t, "the added member's send acked", func() bool {
			r := carol.do(&wire.Frame{Body: &wire.Frame_Send{Send: &wire.Send{Chat: chat, ClientMsgId: 1, Body: []byte("joined")}}})
			return r.GetAck() != nil
		})
		if m := bob.push().GetDeliver().GetMessage(); m.GetSender() != 3 {
			t.Fatalf("bob got %v", m)
		}
	})
}
