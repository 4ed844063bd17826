package bots_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/gonets/gonets/bots/botapi"
	"github.com/gonets/gonets/storage"
)

// idleBot returns a world whose bot is in chats groups, each with a
// message the bot has fetched and acknowledged, and the marker to poll on.
func idleBot(b *testing.B, chats int) (*world, int64) {
	w := newWorldTB(b)
	ctx := context.Background()
	for i := range chats {
		c, err := w.node.Store().CreateChat(ctx, storage.ChatSpec{Kind: storage.ChatGroup, Creator: 1,
			Members: []storage.UserID{storage.UserID(w.bot)}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.node.Store().AppendOne(ctx, storage.Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: uint64(i + 1), Kind: storage.MsgText, Body: []byte("hi")}); err != nil {
			b.Fatal(err)
		}
	}
	var marker int64
	for range 3 { // fetch, then acknowledge
		l, err := w.bots.Updates(ctx, w.bot, marker, 1000, nil, 0)
		if err != nil {
			b.Fatal(err)
		}
		marker = l.Marker
	}
	return w, marker
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleLongPoll is a long poll of 200 ms (the test world polls
// the store every 10 ms) by a bot in 1,000 chats with nothing pending, on a
// node with no other traffic: cpu-µs/poll is the process's CPU time for
// it (the node's background work included).
func BenchmarkIdleLongPoll(b *testing.B) {
	w, marker := idleBot(b, 1000)
	ctx := context.Background()
	b.ResetTimer()
	start := cpuTime(b)
	for range b.N {
		l, err := w.bots.Updates(ctx, w.bot, marker, 100, nil, 200*time.Millisecond)
		if err != nil || len(l.Updates) != 0 {
			b.Fatalf("%d updates, %v", len(l.Updates), err)
		}
		marker = l.Marker
	}
	b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(b.N), "cpu-µs/poll")
}

// BenchmarkIdleLook is one look at the queue of a bot with nothing
// pending (what a long poll repeats every Options.PollInterval, 100 ms by
// default), for a bot in chats groups each with a message it has read.
func BenchmarkIdleLook(b *testing.B) {
	for _, chats := range []int{1, 100} {
		b.Run(fmt.Sprintf("chats=%d", chats), func(b *testing.B) {
			w, marker := idleBot(b, chats)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				l, err := w.bots.Updates(ctx, w.bot, marker, 100, nil, 0)
				if err != nil || len(l.Updates) != 0 {
					b.Fatalf("%d updates, %v", len(l.Updates), err)
				}
				marker = l.Marker
			}
		})
	}
}

// TestLongPollWakes: a long poll that found nothing and waits returns a
// message committed while it waits (the idle poll skips its looks only
// while the store has committed nothing).
func TestLongPollWakes(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	c, err := w.node.Store().CreateChat(ctx, storage.ChatSpec{Kind: storage.ChatGroup, Creator: 1,
		Members: []storage.UserID{storage.UserID(w.bot)}})
	if err != nil {
		t.Fatal(err)
	}
	var marker int64
	for range 2 { // drain whatever the setup left, and acknowledge it
		l, err := w.bots.Updates(ctx, w.bot, marker, 100, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		marker = l.Marker
	}
	type result struct {
		l   botapi.UpdateList
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := w.bots.Updates(ctx, w.bot, marker, 100, nil, 10*time.Second)
		done <- result{l, err}
	}()
	time.Sleep(300 * time.Millisecond) // several idle ticks of 10 ms
	sentAt := time.Now()
	if _, err := w.node.Store().AppendOne(ctx, storage.Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: 1, Kind: storage.MsgText, Body: []byte("wake")}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || len(r.l.Updates) != 1 || r.l.Updates[0].UpdateType != "message_created" {
		t.Fatalf("poll = %+v, %v", r.l, r.err)
	}
	if took := time.Since(sentAt); took > 5*time.Second {
		t.Fatalf("the poll returned %v after the message", took)
	}
}
