package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
	"github.com/gonets/gonets/storage/storagetest"
)

// fastOptions notice a dead network within about a second and retry
// quickly, over via.
func fastOptions(via client.Transport) client.Options {
	return client.Options{
		Via:          via,
		IdleTimeout:  time.Second,
		KeepAlive:    200 * time.Millisecond,
		DialTimeout:  time.Second,
		ReconnectMin: 20 * time.Millisecond,
		ReconnectMax: 200 * time.Millisecond,
	}
}

func TestSendRepeatedAfterLostAck(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		n := brokertest.Start(t, brokertest.Options{})
		p := startProxy(t, n, via)
		alice := dial(t, n, p.addr(), 1, 1, fastOptions(via))
		bob := dial(t, n, "", 2, 1, client.Options{Via: via, SendOnly: true})
		chat := directChat(t, alice, bob)
		waitFor(t, alice, client.EventConnected)

		// The node gets the send and acks it, but the ack is lost.
		p.set(dropReplies)
		type result struct {
			ack client.Ack
			err error
		}
		res := make(chan result, 1)
		go func() {
			a, err := alice.Send(ctxT(t), chat, []byte("m1"))
			res <- result{a, err}
		}()
		storagetest.WaitFor(t, "the node stores the message", func() bool {
			h, err := bob.Latest(ctxT(t), chat, 1)
			return err == nil && h.LastSeq == 1
		})
		waitFor(t, alice, client.EventDisconnected)
		p.set(forwardAll)

		// The client sends it again with the same id: the original ack.
		r := <-res
		if r.err != nil || r.ack.Seq != 1 || !r.ack.Duplicate {
			t.Fatalf("send across the lost ack: %+v, %v; want seq 1, duplicate", r.ack, r.err)
		}
		h, err := bob.History(ctxT(t), chat, 1, 10)
		if err != nil || len(h.Messages) != 1 {
			t.Fatalf("history: %+v, %v; want the message once", h, err)
		}
		checkRun(t, messages(t, alice, 1), chat, 1)
		sendN(t, bob, chat, 2, 1)
		checkRun(t, messages(t, alice, 1), chat, 2) // m1 was delivered once
	})
}

func TestReconnectCatchesUp(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		n := brokertest.Start(t, brokertest.Options{})
		p := startProxy(t, n, via)
		alice := dial(t, n, p.addr(), 1, 1, fastOptions(via))
		bob := dial(t, n, "", 2, 1, client.Options{Via: via, SendOnly: true})
		chat := directChat(t, alice, bob)
		waitFor(t, alice, client.EventConnected)
		sendN(t, bob, chat, 1, 2)
		checkRun(t, messages(t, alice, 2), chat, 1)

		p.set(dropAll) // pushes 3..7 are lost on the way
		sendN(t, bob, chat, 3, 5)
		waitFor(t, alice, client.EventDisconnected)
		p.set(forwardAll)

		checkRun(t, messages(t, alice, 5), chat, 3)
		waitFor(t, alice, client.EventConnected)
		if s := alice.Stats(); s.Reconnects == 0 {
			t.Fatalf("stats %+v: no reconnection", s)
		}
		sendN(t, bob, chat, 8, 1)
		checkRun(t, messages(t, alice, 1), chat, 8)
	})
}

func TestNodeRestart(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		n := brokertest.Start(t, brokertest.Options{})
		alice := dial(t, n, "", 1, 1, client.Options{Via: via})
		bob := dial(t, n, "", 2, 1, client.Options{Via: via, SendOnly: true})
		chat := directChat(t, alice, bob)
		waitFor(t, alice, client.EventConnected)
		first, err := alice.SendMsg(ctxT(t), client.SendOptions{Chat: chat, ClientMsgID: 42, Body: []byte("m1")})
		if err != nil {
			t.Fatal(err)
		}
		checkRun(t, messages(t, alice, 1), chat, 1)

		n.Restart(t) // GoingAway: the clients come back after a second
		again, err := alice.SendMsg(ctxT(t), client.SendOptions{Chat: chat, ClientMsgID: 42, Body: []byte("m1")})
		if err != nil || again.Seq != first.Seq || !again.Duplicate || !again.Time.Equal(first.Time) {
			t.Fatalf("resend after restart: %+v, %v; want %+v duplicate", again, err, first)
		}
		waitFor(t, alice, client.EventDisconnected)
		waitFor(t, alice, client.EventConnected)
		sendN(t, bob, chat, 2, 1)
		checkRun(t, messages(t, alice, 1), chat, 2)
		if s := alice.Stats(); s.Reconnects != 1 {
			t.Fatalf("stats %+v: want one reconnection", s)
		}
	})
}

func TestSendDuringRestart(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		n := brokertest.Start(t, brokertest.Options{})
		alice := dial(t, n, "", 1, 1, client.Options{Via: via, SendOnly: true})
		bob := dial(t, n, "", 2, 1, client.Options{Via: via})
		chat := directChat(t, alice, bob)
		errs := make(chan error, 1)
		go func() {
			// Sends before, during and after the restart all succeed, once
			// each and in order.
			for seq := uint64(1); seq <= 30; seq++ {
				a, err := alice.Send(ctxT(t), chat, fmt.Appendf(nil, "m%d", seq))
				if err == nil && a.Seq != seq {
					err = fmt.Errorf("m%d got seq %d", seq, a.Seq)
				}
				if err != nil {
					errs <- err
					return
				}
				time.Sleep(5 * time.Millisecond) // spread the sends over the restart
			}
			errs <- nil
		}()
		n.Restart(t)
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		checkRun(t, messages(t, bob, 30), chat, 1)
	})
}

func TestSlowReaderResyncs(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		// A small frame limit and outbox, and bodies large enough that the
		// client's stream window fills: the node stalls the session and tells
		// it to resync. Over TCP the client reads on, into a push buffer
		// as small, and resyncs by itself when that fills.
		const frame = 64 << 10
		n := brokertest.Start(t, brokertest.Options{
			Broker: broker.Options{
				MaxFrameBytes: frame,
				Outbox:        broker.OutboxOptions{MaxFrames: 2, MaxBytes: frame},
				SendRate:      10000,
			},
			Storage: storage.Options{MaxBodyBytes: 32 << 10},
		})
		alice := dial(t, n, "", 1, 1, client.Options{Via: via, EventBuffer: -1, PushBuffer: frame})
		bob := dial(t, n, "", 2, 1, client.Options{Via: via, SendOnly: true})
		chat := directChat(t, alice, bob)
		waitFor(t, alice, client.EventConnected)

		const count = 60
		body := make([]byte, 30<<10)
		for i := range count {
			copy(body, fmt.Sprintf("m%d ", i+1))
			if _, err := bob.Send(ctxT(t), chat, body); err != nil {
				t.Fatal(err)
			}
		}
		// Alice reads only now: every message once, in order, and a resync.
		resynced := false
		for seq := uint64(1); seq <= count; {
			ev := next(t, alice)
			switch ev.Kind {
			case client.EventMessage:
				if ev.Message.Seq != seq || !bytesHasPrefix(ev.Message.Body, fmt.Sprintf("m%d ", seq)) {
					t.Fatalf("got seq %d, want %d", ev.Message.Seq, seq)
				}
				seq++
			case client.EventResynced:
				resynced = true
			}
		}
		if !resynced {
			waitFor(t, alice, client.EventResynced)
		}
		if s := alice.Stats(); s.Resyncs == 0 || s.Delivered != count || (via == client.TransportTCP) != (s.DroppedPushes > 0) {
			t.Fatalf("stats %+v", s)
		}
	})
}

func bytesHasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

func TestResumeFromState(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		n := brokertest.Start(t, brokertest.Options{})
		bob := dial(t, n, "", 2, 1, client.Options{Via: via, SendOnly: true})
		ci, err := bob.CreateChat(ctxT(t), wire.ChatKind_CHAT_KIND_DIRECT, []uint64{1}, "")
		if err != nil {
			t.Fatal(err)
		}
		chat := ci.Chat
		sendN(t, bob, chat, 1, 3)

		// A fresh client delivers the whole history.
		alice := dial(t, n, "", 1, 1, client.Options{Via: via})
		checkRun(t, messages(t, alice, 3), chat, 1)
		waitFor(t, alice, client.EventConnected)
		saved := alice.SyncState()
		if saved.Held[chat] != 3 || saved.Since == 0 {
			t.Fatalf("state %+v", saved)
		}
		alice.Close()
		if _, ok := <-alice.Events(); ok {
			t.Fatal("events still open after Close")
		}
		if _, err := alice.Send(ctxT(t), chat, []byte("x")); !errors.Is(err, client.ErrClosed) {
			t.Fatalf("send after Close: %v", err)
		}

		// Restarted from the saved state it delivers only what is new.
		sendN(t, bob, chat, 4, 2)
		alice = dial(t, n, "", 1, 1, client.Options{Via: via, State: saved})
		checkRun(t, messages(t, alice, 2), chat, 4)
		waitFor(t, alice, client.EventConnected)

		// FromNow skips the history altogether.
		carol := dial(t, n, "", 1, 2, client.Options{Via: via, FromNow: true})
		waitFor(t, carol, client.EventConnected)
		sendN(t, bob, chat, 6, 1)
		checkRun(t, messages(t, carol, 1), chat, 6)
	})
}

func TestNoReconnect(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		n := brokertest.Start(t, brokertest.Options{})
		alice := dial(t, n, "", 1, 1, client.Options{Via: via, NoReconnect: true})
		waitFor(t, alice, client.EventConnected)
		n.Stop()
		ev := waitFor(t, alice, client.EventDisconnected)
		if ev.Err == nil {
			t.Fatal("disconnected without a reason")
		}
		for range alice.Events() {
		}
		if alice.Err() == nil {
			t.Fatal("Err is nil after the client stopped")
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if _, err := alice.Ping(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ping after the client stopped: %v", err)
		}
	})
}

func TestExpiredTokenStops(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		var skew atomic.Int64 // the node's clock runs ahead by this much
		n := brokertest.Start(t, brokertest.Options{Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
		alice := dial(t, n, "", 1, 1, client.Options{Via: via}) // a token valid for an hour
		waitFor(t, alice, client.EventConnected)
		skew.Store(int64(3 * time.Hour))
		n.Restart(t)
		// Reconnecting with the expired token fails for good.
		waitFor(t, alice, client.EventDisconnected)
		ev := waitFor(t, alice, client.EventDisconnected)
		if !errors.Is(ev.Err, client.ErrTokenExpired) {
			t.Fatalf("stopped with %v, want TOKEN_EXPIRED", ev.Err)
		}
		if _, ok := <-alice.Events(); ok {
			t.Fatal("events still open")
		}
		if !errors.Is(alice.Err(), client.ErrTokenExpired) {
			t.Fatalf("Err() = %v, want TOKEN_EXPIRED", alice.Err())
		}
	})
}
