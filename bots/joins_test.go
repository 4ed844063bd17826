package bots_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gonets/gonets/bots"
	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/storage"
)

// drain polls (acknowledging each batch) for d and returns the updates,
// a message's as "type:text".
func (w *world) drain(t *testing.T, marker *int64, d time.Duration) []string {
	t.Helper()
	var got []string
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		l, err := w.bots.Updates(ctxT(t), w.bot, *marker, 100, nil, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		*marker = l.Marker
		for _, u := range l.Updates {
			s := u.UpdateType
			if u.Message != nil {
				s += ":" + u.Message.Body.Text
			}
			got = append(got, s)
		}
	}
	return got
}

// A bot added to a group with history gets what comes after it joined,
// not the history as new messages; removed before it polled, it gets
// nothing from before it joined either.
func TestBotJoinStartsAtJoin(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	a := w.dial(t, 5001)
	g, err := a.CreateChat(ctx, wire.ChatKind_CHAT_KIND_GROUP, []uint64{5002}, "Old")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"old 1", "old 2"} {
		if _, err := a.Send(ctx, g.Chat, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.AddMembers(ctx, g.Chat, []uint64{uint64(w.bot)}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, g.Chat, []byte("new")); err != nil {
		t.Fatal(err)
	}
	var marker int64
	got := w.drain(t, &marker, 300*time.Millisecond)
	slices.Sort(got) // in order per chat: bot_added is in the bot's service chat
	if !slices.Equal(got, []string{"bot_added", "message_created:new"}) {
		t.Fatalf("after joining: %v", got)
	}
	// Added and removed again before it polls: only what came while it
	// was in, then bot_removed.
	if err := a.RemoveMember(ctx, g.Chat, uint64(w.bot)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, g.Chat, []byte("while out")); err != nil {
		t.Fatal(err)
	}
	if err := a.AddMembers(ctx, g.Chat, []uint64{uint64(w.bot)}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, g.Chat, []byte("in again")); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveMember(ctx, g.Chat, uint64(w.bot)); err != nil {
		t.Fatal(err)
	}
	got = w.drain(t, &marker, 300*time.Millisecond)
	if slices.Contains(got, "message_created:while out") || slices.Contains(got, "message_created:old 1") || !slices.Contains(got, "message_created:in again") {
		t.Fatalf("in and out: %v", got)
	}
}

// botWorld starts a node whose store has sopts, with its bots exempt
// from the chats-per-user cap as the node makes them.
func botWorld(t *testing.T, sopts storage.Options) *world {
	t.Helper()
	w := &world{}
	var accts atomic.Pointer[identity.Accounts]
	sopts.Uncapped = func(u storage.UserID) bool { a := accts.Load(); return a != nil && a.IsBot(u) }
	w.node = brokertest.Start(t, brokertest.Options{Accounts: true, Storage: sopts,
		Bots: func(a *identity.Accounts) (broker.Bots, func(*broker.Broker)) {
			accts.Store(a)
			n, err := bots.New(bots.Options{Accounts: a, Key: make([]byte, 32), PollInterval: 10 * time.Millisecond, Log: quiet})
			if err != nil {
				t.Fatal(err)
			}
			w.bots = n
			return n, n.Start
		}})
	b, tok, err := w.node.Accounts().CreateBot("Busy", "busy_bot")
	if err != nil {
		t.Fatal(err)
	}
	w.bot, w.token = int64(b.User), tok
	return w
}

// A bot in more changed chats than one look at its queue reads still
// gets a message in any of them.
func TestBotManyChats(t *testing.T) {
	w := botWorld(t, storage.Options{})
	st := w.node.Store()
	const alice, chats = 5001, 4_400 // past 20 pages of 200
	var first atomic.Uint64
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= chats {
				c, err := st.CreateChat(context.Background(), storage.ChatSpec{Kind: storage.ChatGroup, Creator: alice, Members: []storage.UserID{storage.UserID(w.bot)}, Title: "g"})
				if err != nil {
					t.Error(err)
					return
				}
				first.CompareAndSwap(0, uint64(c.ID))
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ctx := ctxT(t)
	a := w.dial(t, alice)
	if _, err := a.Send(ctx, first.Load(), []byte("hello busy bot")); err != nil {
		t.Fatal(err)
	}
	var marker int64
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if slices.Contains(w.drain(t, &marker, 200*time.Millisecond), "message_created:hello busy bot") {
			return
		}
	}
	t.Fatalf("a bot in %d chats never got the message", chats)
}

// Bots are not bound by the chats-per-user cap.
func TestBotChatCap(t *testing.T) {
	w := botWorld(t, storage.Options{MaxChatsPerUser: 3})
	ctx := ctxT(t)
	for u := uint64(5001); u <= 5005; u++ {
		c := w.dial(t, u)
		if _, err := c.CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{uint64(w.bot)}, ""); err != nil {
			t.Errorf("user %d cannot open the bot: %v", u, err)
		}
	}
}
