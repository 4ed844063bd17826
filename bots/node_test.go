package bots_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/bots"
	"github.com/gonets/gonets/bots/botapi"
	"github.com/gonets/gonets/bots/miniapp"
	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/storage"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type world struct {
	node  *brokertest.Node
	bots  *bots.Node
	bot   int64
	token string
}

func newWorld(t *testing.T) *world { return newWorldTB(t) }

func newWorldTB(t testing.TB) *world {
	t.Helper()
	w := &world{}
	key := make([]byte, 32)
	w.node = brokertest.Start(t, brokertest.Options{Accounts: true,
		Bots: func(accts *identity.Accounts) (broker.Bots, func(*broker.Broker)) {
			n, err := bots.New(bots.Options{Accounts: accts, Key: key, PollInterval: 10 * time.Millisecond, Log: quiet})
			if err != nil {
				t.Fatal(err)
			}
			w.bots = n
			return n, n.Start
		}})
	b, tok, err := w.node.Accounts().CreateBot("Echo", "echo_bot")
	if err != nil {
		t.Fatal(err)
	}
	w.bot, w.token = int64(b.User), tok
	return w
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (w *world) dial(t *testing.T, user uint64) *client.Client {
	t.Helper()
	o := client.Options{TCPAddr: w.node.TCPAddr, Fingerprint: w.node.Fingerprint, Logger: quiet, DialTimeout: 5 * time.Second}
	c, err := client.Dial(ctxT(t), w.node.Addr, w.node.Token(t, user, 1), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// poll asks for updates until want of them came (acknowledging each
// batch with the next request), and returns them.
func (w *world) poll(t *testing.T, marker *int64, want int) []botapi.Update {
	t.Helper()
	var got []botapi.Update
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		l, err := w.bots.Updates(ctxT(t), w.bot, *marker, 100, nil, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if l.Marker == 0 {
			t.Fatal("marker 0")
		}
		*marker = l.Marker
		got = append(got, l.Updates...)
	}
	if len(got) < want {
		t.Fatalf("got %d updates, want %d: %+v", len(got), want, got)
	}
	return got
}

func types(ups []botapi.Update) []string {
	var out []string
	for _, u := range ups {
		out = append(out, u.UpdateType)
	}
	return out
}

func nextEvent(t *testing.T, c *client.Client, kind client.EventKind) client.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatal("events closed")
			}
			if ev.Kind == kind && (kind != client.EventMessage || ev.Message.Kind == wire.MsgKind_MSG_KIND_MEDIA) {
				return ev
			}
		case <-ctx.Done():
			t.Fatalf("no %v event", kind)
		}
	}
}

func TestBotConversation(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	const alice = 5001
	a := w.dial(t, alice)
	info, err := a.CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{uint64(w.bot)}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, info.Chat, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	var marker int64
	ups := w.poll(t, &marker, 2)
	if got := types(ups); !slices.Equal(got, []string{"bot_started", "message_created"}) {
		t.Fatalf("updates %v", got)
	}
	m := ups[1].Message
	if m.Body.Text != "hello" || m.Recipient.ChatID != int64(info.Chat) || m.Sender.UserID != alice || m.Body.Mid == "" {
		t.Fatalf("message %+v", m)
	}
	// Nothing is delivered twice once acknowledged.
	if l, err := w.bots.Updates(ctx, w.bot, marker, 100, nil, 50*time.Millisecond); err != nil || len(l.Updates) != 0 {
		t.Fatalf("after the ack: %v %+v", err, l)
	}

	// The bot answers with a callback button; Alice presses it.
	text := "echo: hello"
	sent, err := w.bots.Send(ctx, w.bot, m.Recipient.ChatID, 0, botapi.NewMessageBody{Text: &text, Attachments: []botapi.AttachmentRequest{{
		Type: "inline_keyboard", Payload: botapi.AttachmentRequestPayload{Buttons: [][]botapi.Button{{{Type: "callback", Text: "Yes", Payload: "yes"}}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, a, client.EventMessage)
	var c wire.Content
	if ev.Message.Kind != wire.MsgKind_MSG_KIND_MEDIA || proto.Unmarshal(ev.Message.Body, &c) != nil || c.Text != text || len(c.Keyboard.GetRows()) != 1 {
		t.Fatalf("alice got %+v", ev.Message)
	}
	if err := a.PressButton(ctx, info.Chat, ev.Message.Seq, "no"); !errors.Is(err, client.ErrNoButton) {
		t.Fatalf("a missing button: %v", err)
	}
	if err := a.PressButton(ctx, info.Chat, ev.Message.Seq, "yes"); err != nil {
		t.Fatal(err)
	}
	ups = w.poll(t, &marker, 1)
	cb := ups[0]
	if cb.UpdateType != "message_callback" || cb.Callback.Payload != "yes" || cb.Callback.User.UserID != alice || cb.Message == nil || cb.Message.Body.Mid != sent.Body.Mid {
		t.Fatalf("callback %+v", cb)
	}
	if err := w.bots.Answer(ctx, w.bot, cb.Callback.CallbackID+"x", nil, "no"); !errors.Is(err, botapi.ErrNotFound) {
		t.Fatalf("a forged callback id: %v", err)
	}
	if err := w.bots.Answer(ctx, w.bot, cb.Callback.CallbackID, nil, "done"); err != nil {
		t.Fatal(err)
	}
	if ans := nextEvent(t, a, client.EventCallbackAnswer); ans.CallbackAnswer.Notification != "done" || ans.CallbackAnswer.Seq != ev.Message.Seq {
		t.Fatalf("answer %+v", ans.CallbackAnswer)
	}

	// A text-only edit (attachments null) keeps the keyboard.
	newText := "echo: edited"
	if err := w.bots.Edit(ctx, w.bot, sent.Body.Mid, botapi.NewMessageBody{Text: &newText}); err != nil {
		t.Fatal(err)
	}
	if m, err := w.bots.Message(ctx, w.bot, sent.Body.Mid); err != nil || m.Body.Text != newText || len(m.Body.Attachments) != 1 || m.Body.Attachments[0].Type != "inline_keyboard" {
		t.Fatalf("after a text edit: %+v %v", m.Body, err)
	}
	// A bot writes to people only.
	if _, err := w.bots.Send(ctx, w.bot, 0, int64(storage.ServiceUser), botapi.NewMessageBody{Text: &text}); !errors.Is(err, botapi.ErrForbidden) {
		t.Fatalf("to the service user: %v", err)
	}

	// Edits and deletes reach the bot too.
	if _, err := a.Edit(ctx, info.Chat, 2, []byte("hello!")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Delete(ctx, info.Chat, 2); err != nil {
		t.Fatal(err)
	}
	ups = w.poll(t, &marker, 2)
	if got := types(ups); !slices.Equal(got, []string{"message_edited", "message_removed"}) || ups[0].Message.Body.Text != "hello!" {
		t.Fatalf("updates %v %+v", got, ups)
	}
}

func TestBotGroupEvents(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	const alice, bob = 5001, 5002
	a := w.dial(t, alice)
	g, err := a.CreateChat(ctx, wire.ChatKind_CHAT_KIND_GROUP, []uint64{uint64(w.bot)}, "Team")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.AddMembers(ctx, g.Chat, []uint64{bob}); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveMember(ctx, g.Chat, bob); err != nil {
		t.Fatal(err)
	}
	if err := a.SetTitle(ctx, g.Chat, "Team 2"); err != nil {
		t.Fatal(err)
	}
	var marker int64
	ups := w.poll(t, &marker, 4)
	// In order per chat: the membership changes (in the bot's service
	// chat) in theirs, the title (in the group) in its own.
	var members []botapi.Update
	var title *botapi.Update
	for i, u := range ups {
		if u.UpdateType == "chat_title_changed" {
			title = &ups[i]
		} else {
			members = append(members, u)
		}
	}
	if got := types(members); !slices.Equal(got, []string{"bot_added", "user_added", "user_removed"}) || title == nil || title.Title != "Team 2" || title.User.UserID != alice {
		t.Fatalf("updates %v", types(ups))
	}
	if members[1].User.UserID != bob || *members[1].InviterID != alice || members[0].ChatID != int64(g.Chat) {
		t.Fatalf("user_added %+v", members[1])
	}
	if err := a.RemoveMember(ctx, g.Chat, uint64(w.bot)); err != nil {
		t.Fatal(err)
	}
	// The group's records the bot had not acknowledged (the title: the
	// poll above was not acknowledged yet) come again before bot_removed.
	ups = w.poll(t, &marker, 2)
	if got := types(ups); !slices.Equal(got, []string{"chat_title_changed", "bot_removed"}) || ups[1].ChatID != int64(g.Chat) {
		t.Fatalf("updates %v", got)
	}
	if _, err := w.bots.Send(ctx, w.bot, int64(g.Chat), 0, botapi.NewMessageBody{Text: new(string)}); err == nil {
		t.Fatal("a removed bot sent")
	}
}

// Updates not acknowledged come again, after a restart too.
func TestBotUpdatesAtLeastOnce(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	a := w.dial(t, 5001)
	info, err := a.CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{uint64(w.bot)}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"one", "two"} {
		if _, err := a.Send(ctx, info.Chat, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	var marker int64
	first := w.poll(t, &marker, 3)
	marker = 0 // lost: ask again without it
	again := w.poll(t, &marker, 3)
	if !slices.Equal(types(first), types(again)) {
		t.Fatalf("first %v, again %v", types(first), types(again))
	}
	// Acknowledge, restart: nothing comes again.
	if _, err := w.bots.Updates(ctx, w.bot, marker, 100, nil, 0); err != nil {
		t.Fatal(err)
	}
	w.node.Restart(t)
	l, err := w.bots.Updates(ctx, w.bot, 0, 100, nil, 100*time.Millisecond)
	if err != nil || len(l.Updates) != 0 {
		t.Fatalf("after restart: %v %v", err, types(l.Updates))
	}
	// Limit and types.
	b := w.dial(t, 5001)
	for _, s := range []string{"three", "four", "five"} {
		if _, err := b.Send(ctx, info.Chat, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	l, err = w.bots.Updates(ctx, w.bot, 0, 2, []string{"message_created"}, time.Second)
	if err != nil || len(l.Updates) != 2 || l.Updates[0].Message.Body.Text != "three" {
		t.Fatalf("limit 2: %v %+v", err, l)
	}
}

func TestBotMiniApp(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	a := w.dial(t, 5001)
	if _, _, err := a.OpenMiniApp(ctx, uint64(w.bot), 0, ""); !errors.Is(err, client.ErrNoMiniApp) {
		t.Fatalf("no app: %v", err)
	}
	if _, _, err := a.OpenMiniApp(ctx, 5002, 0, ""); !errors.Is(err, client.ErrNoMiniApp) {
		t.Fatalf("not a bot: %v", err)
	}
	if err := w.node.Accounts().SetBotApp(storage.UserID(w.bot), "https://shop.example/app"); err != nil {
		t.Fatal(err)
	}
	u, data, err := a.OpenMiniApp(ctx, uint64(w.bot), 0, "promo")
	if err != nil || u != "https://shop.example/app" {
		t.Fatalf("open: %q %v", u, err)
	}
	d, err := miniapp.Validate(data, w.token, time.Minute, time.Now())
	if err != nil || d.User.ID != 5001 || d.StartParam != "promo" {
		t.Fatalf("validate: %+v %v", d, err)
	}
	if _, err := miniapp.Validate(data+"x", w.token, time.Minute, time.Now()); err == nil {
		t.Fatal("tampered launch data validated")
	}
}
