package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// TestMain checks for leaked goroutines once the tests pass. A node's QUIC
// transport outlives its last connection by a moment (quic-go keeps closed
// connections to answer stray packets), so the check polls for a while
// rather than ignoring any QUIC goroutine, which would hide the client's.
func TestMain(m *testing.M) {
	code := m.Run()
	for deadline := time.Now().Add(10 * time.Second); code == 0; time.Sleep(50 * time.Millisecond) {
		err := goleak.Find()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// waitLimit bounds every wait on the network in these tests.
const waitLimit = 15 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// transports are what the end-to-end tests run over: each test body runs
// once with its clients forced to each (see eachTransport).
var transports = []client.Transport{client.TransportQUIC, client.TransportTCP}

// eachTransport runs f as a subtest per transport, named after it.
func eachTransport(t *testing.T, f func(t *testing.T, via client.Transport)) {
	for _, via := range transports {
		t.Run(via.String(), func(t *testing.T) { f(t, via) })
	}
}

// dial connects user's device to node (through addr, "" for the node's
// own) and closes the client when the test ends. A client forced to a
// transport (o.Via) must use it.
func dial(t *testing.T, n *brokertest.Node, addr string, user, device uint64, o client.Options) *client.Client {
	t.Helper()
	if addr == "" {
		addr = n.Addr
		if o.TCPAddr == "" {
			o.TCPAddr = n.TCPAddr
		}
	}
	if o.Fingerprint == "" && o.TLS == nil && !o.Insecure {
		o.Fingerprint = n.Fingerprint
	}
	if o.Logger == nil {
		o.Logger = quiet
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, err := client.Dial(ctx, addr, n.Token(t, user, device), o)
	if err != nil {
		t.Fatalf("dial user %d device %d: %v", user, device, err)
	}
	t.Cleanup(func() { c.Close() })
	if o.Via != client.TransportAuto && c.Transport() != o.Via {
		t.Fatalf("dial user %d device %d over %v: connected over %v", user, device, o.Via, c.Transport())
	}
	return c
}

// ctxT returns a context bounded by waitLimit.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// next returns c's next event.
func next(t *testing.T, c *client.Client) client.Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatalf("events closed: %v", c.Err())
		}
		return ev
	case <-time.After(waitLimit):
		t.Fatal("no event in time")
	}
	panic("unreachable")
}

// waitFor returns the next event of kind, failing on a message event
// before it.
func waitFor(t *testing.T, c *client.Client, kind client.EventKind) client.Event {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); ; {
		if time.Now().After(deadline) {
			t.Fatalf("no %v event in time", kind)
		}
		ev := next(t, c)
		if ev.Kind == kind {
			return ev
		}
		if ev.Kind == client.EventMessage {
			t.Fatalf("message %d/%d while waiting for %v", ev.Message.Chat, ev.Message.Seq, kind)
		}
	}
}

// messages returns c's next n messages, skipping other events.
func messages(t *testing.T, c *client.Client, n int) []client.Message {
	t.Helper()
	var out []client.Message
	for deadline := time.Now().Add(waitLimit); len(out) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages in time", len(out), n)
		}
		if ev := next(t, c); ev.Kind == client.EventMessage {
			out = append(out, ev.Message)
		}
	}
	return out
}

// checkRun fails unless ms are chat's seqs from, from+1, ... with bodies
// "m<seq>".
func checkRun(t *testing.T, ms []client.Message, chat, from uint64) {
	t.Helper()
	for i, m := range ms {
		want := from + uint64(i)
		if m.Chat != chat || m.Seq != want || string(m.Body) != fmt.Sprintf("m%d", want) {
			t.Fatalf("message %d: chat %d seq %d body %q; want chat %d seq %d body m%d", i, m.Chat, m.Seq, m.Body, chat, want, want)
		}
	}
}

// sendN sends bodies "m<from>".."m<from+n-1>" expecting those seqs.
func sendN(t *testing.T, c *client.Client, chat, from uint64, n int) {
	t.Helper()
	for seq := from; seq < from+uint64(n); seq++ {
		a, err := c.Send(ctxT(t), chat, fmt.Appendf(nil, "m%d", seq))
		if err != nil {
			t.Fatalf("send m%d: %v", seq, err)
		}
		if a.Seq != seq || a.Chat != chat || a.Duplicate {
			t.Fatalf("send m%d: ack %+v", seq, a)
		}
	}
}

// directChat creates a direct chat of a and the user of b.
func directChat(t *testing.T, a, b *client.Client) uint64 {
	t.Helper()
	ci, err := a.CreateChat(ctxT(t), wire.ChatKind_CHAT_KIND_DIRECT, []uint64{b.User()}, "")
	if err != nil {
		t.Fatal(err)
	}
	return ci.Chat
}

func TestExchange(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		n := brokertest.Start(t, brokertest.Options{})
		alice := dial(t, n, "", 1, 1, client.Options{Via: via})
		bob := dial(t, n, "", 2, 1, client.Options{Via: via})
		waitFor(t, alice, client.EventConnected)
		waitFor(t, bob, client.EventConnected)
		if alice.User() != 1 || alice.Device() != 1 || alice.Limits().MaxBodyBytes == 0 {
			t.Fatalf("alice: user %d device %d limits %+v", alice.User(), alice.Device(), alice.Limits())
		}
		chat := directChat(t, alice, bob)

		a1, err := alice.Send(ctxT(t), chat, []byte("m1"))
		if err != nil || a1.Seq != 1 || a1.Time.IsZero() {
			t.Fatalf("send: %+v, %v", a1, err)
		}
		got := messages(t, bob, 1)
		checkRun(t, got, chat, 1)
		if m := got[0]; m.Sender != 1 || m.Device != 1 || m.Kind != wire.MsgKind_MSG_KIND_TEXT || !m.Time.Equal(a1.Time) {
			t.Fatalf("bob got %+v", m)
		}
		sendN(t, bob, chat, 2, 2)
		// Alice's events hold her own send too, in seq order with Bob's.
		mine := messages(t, alice, 3)
		checkRun(t, mine, chat, 1)
		if mine[0].Device != alice.Device() || mine[0].Sender != 1 || mine[1].Sender != 2 {
			t.Fatalf("alice got %+v", mine)
		}
		checkRun(t, messages(t, bob, 2), chat, 2) // Bob's own, delivered by his client
		if s := alice.Stats(); s.Delivered != 3 {
			t.Fatalf("alice stats %+v", s)
		}
	})
}

func TestRejectedToken(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		n := brokertest.Start(t, brokertest.Options{})
		f := func(tok string, want error) {
			t.Helper()
			c, err := client.Dial(ctxT(t), n.Addr, tok, client.Options{Via: via, TCPAddr: n.TCPAddr, Fingerprint: n.Fingerprint, Logger: quiet})
			if err == nil {
				c.Close()
				t.Fatalf("dial with a bad token: no error")
			}
			var e *client.Error
			if !errors.Is(err, want) || !errors.As(err, &e) || e.Message == "" {
				t.Fatalf("dial: %v (%T), want %v with a message", err, err, want)
			}
		}
		f(n.ForgedToken(t, 1, 1), client.ErrUnauthenticated)
		f("not a token", client.ErrUnauthenticated)
		f(n.TokenExpiring(t, 1, 1, time.Now().Add(-time.Hour)), client.ErrTokenExpired)
	})
}

func TestWrongFingerprint(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	_, err := client.Dial(ctxT(t), n.Addr, n.Token(t, 1, 1), client.Options{Fingerprint: fmt.Sprintf("%064x", 0), Logger: quiet})
	if err == nil {
		t.Fatal("dial with the wrong fingerprint: no error")
	}
}

func TestRequestErrors(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		n := brokertest.Start(t, brokertest.Options{})
		alice := dial(t, n, "", 1, 1, client.Options{Via: via, SendOnly: true})
		bob := dial(t, n, "", 2, 1, client.Options{Via: via, SendOnly: true})
		carol := dial(t, n, "", 3, 1, client.Options{Via: via, SendOnly: true})
		chat := directChat(t, alice, bob)
		_, err := carol.Send(ctxT(t), chat, []byte("hi"))
		if !errors.Is(err, client.ErrNotMember) {
			t.Fatalf("send by a non-member: %v, want NOT_MEMBER", err)
		}
		if _, err := alice.Send(ctxT(t), 999, []byte("hi")); !errors.Is(err, client.ErrUnknownChat) && !errors.Is(err, client.ErrNotMember) {
			t.Fatalf("send to no chat: %v", err)
		}
		big := bytes.Repeat([]byte("x"), alice.Limits().MaxBodyBytes+1)
		if _, err := alice.Send(ctxT(t), chat, big); !errors.Is(err, client.ErrTooLarge) {
			t.Fatalf("send over the body limit: %v, want TOO_LARGE", err)
		}
		if _, err := alice.Edit(ctxT(t), chat, 77, []byte("x")); !errors.Is(err, client.ErrNoTarget) {
			t.Fatalf("edit of nothing: %v, want NO_TARGET", err)
		}
		// The session survives refused requests.
		if _, err := alice.Ping(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRequests(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		n := brokertest.Start(t, brokertest.Options{})
		alice := dial(t, n, "", 1, 1, client.Options{Via: via})
		bob := dial(t, n, "", 2, 1, client.Options{Via: via})
		ctx := ctxT(t)
		g, err := alice.CreateChat(ctx, wire.ChatKind_CHAT_KIND_GROUP, []uint64{2}, "team")
		if err != nil || g.Title != "team" || g.Members != 2 || g.Kind != wire.ChatKind_CHAT_KIND_GROUP {
			t.Fatalf("create group: %+v, %v", g, err)
		}
		d1 := directChat(t, alice, bob)
		d2, err := bob.CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{1}, "")
		if err != nil || d2.Chat != d1 || !d2.Existed {
			t.Fatalf("direct chat again: %+v, %v; want chat %d existing", d2, err, d1)
		}
		if err := alice.AddMembers(ctx, g.Chat, []uint64{3}); err != nil {
			t.Fatal(err)
		}
		if err := alice.RemoveMember(ctx, g.Chat, 3); err != nil {
			t.Fatal(err)
		}

		sendN(t, alice, g.Chat, 1, 3)
		if _, err := alice.Edit(ctx, g.Chat, 1, []byte("m1 edited")); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.React(ctx, g.Chat, 2, "👍"); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Delete(ctx, g.Chat, 3); err != nil {
			t.Fatal(err)
		}
		h, err := bob.History(ctx, g.Chat, 1, 3)
		if err != nil || len(h.Messages) != 3 || h.LastSeq != 6 || h.Floor != 1 {
			t.Fatalf("history: %+v, %v", h, err)
		}
		if m := h.Messages[0]; string(m.Body) != "m1 edited" || m.Edited.IsZero() {
			t.Fatalf("edited message: %+v", m)
		}
		if m := h.Messages[1]; len(m.Reactions) != 1 || m.Reactions[0] != (client.Reaction{Emoji: "👍", Count: 1}) {
			t.Fatalf("reacted message: %+v", m)
		}
		if m := h.Messages[2]; !m.Deleted {
			t.Fatalf("deleted message: %+v", m)
		}
		l, err := bob.Latest(ctx, g.Chat, 2)
		if err != nil || len(l.Messages) != 2 || l.Messages[1].Seq != 6 || l.Messages[1].Kind != wire.MsgKind_MSG_KIND_DELETE {
			t.Fatalf("latest: %+v, %v", l, err)
		}
		// Both clients deliver all six records, edits and reactions included.
		for _, c := range []*client.Client{alice, bob} {
			ms := messages(t, c, 6)
			for i, m := range ms {
				if m.Chat != g.Chat || m.Seq != uint64(i+1) {
					t.Fatalf("user %d got %d/%d at %d", c.User(), m.Chat, m.Seq, i)
				}
			}
			if ms[3].Kind != wire.MsgKind_MSG_KIND_EDIT || ms[3].Target != 1 || ms[4].Kind != wire.MsgKind_MSG_KIND_REACTION || string(ms[4].Body) != "👍" {
				t.Fatalf("user %d: records %+v", c.User(), ms[3:])
			}
		}

		if err := bob.MarkRead(ctx, g.Chat, 6); err != nil {
			t.Fatal(err)
		}
		if ev := waitFor(t, alice, client.EventReceipt); ev.Receipt != (client.Receipt{Chat: g.Chat, User: 2, Delivered: 6, Read: 6}) {
			t.Fatalf("receipt push: %+v", ev.Receipt)
		}
		if err := bob.Typing(ctx, g.Chat); err != nil {
			t.Fatal(err)
		}
		if ev := waitFor(t, alice, client.EventTyping); ev.Typing != (client.Typing{Chat: g.Chat, User: 2}) {
			t.Fatalf("typing push: %+v", ev.Typing)
		}
		p, err := alice.Sync(ctx, 0, nil, 0)
		if err != nil || len(p.Dialogs) != 2 || p.More || p.Version == 0 {
			t.Fatalf("sync: %+v, %v", p, err)
		}
		if err := alice.Auth(ctx, n.Token(t, 1, 1)); err != nil {
			t.Fatal(err)
		}
		if err := bob.Leave(ctx, g.Chat); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.Send(ctx, g.Chat, []byte("x")); !errors.Is(err, client.ErrNotMember) {
			t.Fatalf("send after leaving: %v", err)
		}
		if rtt, err := alice.Ping(ctx); err != nil || rtt <= 0 {
			t.Fatalf("ping: %v, %v", rtt, err)
		}
	})
}

func TestSharedTransport(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var clients []*client.Client
	for u := uint64(1); u <= 3; u++ {
		c, err := client.Dial(ctx, n.Addr, n.Token(t, u, 1), client.Options{TLS: n.ClientTLS(), Transport: tr, SendOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	info, err := clients[0].CreateChat(ctx, wire.ChatKind_CHAT_KIND_GROUP, []uint64{2, 3}, "shared")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		if _, err := c.Send(ctx, info.Chat, []byte("one socket")); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}
