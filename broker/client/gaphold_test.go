package client

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
)

// A gap that nothing fills is fetched once GapHold has passed, with no
// other event to wake the client: the serve loop's timer does it. Alice
// sends seq 1 behind the SDK's back (so it is neither pushed to her nor
// delivered as her own), then Bob's seq 2 is pushed to her past the gap.
func TestGapHoldTimerFetches(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	opts := Options{Fingerprint: n.Fingerprint, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), GapHold: 20 * time.Millisecond}
	alice, err := Dial(ctx, n.Addr, n.Token(t, 1, 1), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	opts.SendOnly = true
	bob, err := Dial(ctx, n.Addr, n.Token(t, 2, 1), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	info, err := alice.CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{2}, "")
	if err != nil {
		t.Fatal(err)
	}
	unseen := &wire.Frame{Body: &wire.Frame_Send{Send: &wire.Send{Chat: info.Chat, ClientMsgId: alice.NextClientMsgID(), Kind: wire.MsgKind_MSG_KIND_TEXT, Body: []byte("m1")}}}
	if _, err := alice.call(ctx, unseen, true); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Send(ctx, info.Chat, []byte("m2")); err != nil {
		t.Fatal(err)
	}
	var got []Message
	for len(got) < 2 {
		select {
		case ev := <-alice.Events():
			if ev.Kind == EventMessage {
				got = append(got, ev.Message)
			}
		case <-ctx.Done():
			t.Fatalf("got %d of 2 messages: the parked gap was never fetched", len(got))
		}
	}
	if got[0].Seq != 1 || string(got[0].Body) != "m1" || got[1].Seq != 2 || string(got[1].Body) != "m2" {
		t.Fatalf("got %d %q, %d %q; want 1 m1, 2 m2", got[0].Seq, got[0].Body, got[1].Seq, got[1].Body)
	}
	if st := alice.Stats(); st.Gaps != 1 || st.Duplicates != 0 {
		t.Fatalf("stats %+v: want one gap fetched and no duplicate", st)
	}
}
