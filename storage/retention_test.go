package storage

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/storage/storagetest"
)

func TestRetentionByCount(t *testing.T) {
	opts := Options{SweepBatch: 7}
	opts.Retention[ChatGroup] = Retention{MaxCount: 10}
	s := openTest(t, t.TempDir(), opts)
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	keep := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Retention: &Retention{}}) // override: keep all
	for i := 1; i <= 35; i++ {
		mustAppend(t, s, text(c.ID, 1, uint64(i), "m"), text(keep.ID, 1, uint64(i), "k"))
	}
	mustAppend(t, s, Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: 99, Kind: MsgReaction, Target: 3, Body: []byte("x")})
	st, err := s.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 26 || st.Chats != 1 || st.Dedupe != 26 {
		t.Fatalf("sweep = %+v, want 26 messages of 1 chat", st)
	}
	recs := readAll(t, s, c.ID, 0, 100)
	if len(recs) != 10 || recs[0].Seq != 27 || recs[9].Seq != 36 {
		t.Fatalf("after sweep %d records from %d", len(recs), recs[0].Seq)
	}
	if ch, _ := s.Chat(c.ID); ch.Floor != 27 {
		t.Fatalf("floor %d, want 27", ch.Floor)
	}
	if n := len(readAll(t, s, keep.ID, 0, 100)); n != 35 {
		t.Fatalf("overridden chat kept %d, want 35", n)
	}
	// A resend of a swept message is a new message: its dedupe entry went
	// with it.
	if a := mustAppend(t, s, text(c.ID, 1, 1, "m")); a[0].Duplicate || a[0].Seq != 37 {
		t.Fatalf("resend of swept message = %+v", a[0])
	}
	// The 11th message pushes one more out; then nothing is due.
	if st, _ := s.Sweep(context.Background()); st.Messages != 1 {
		t.Fatalf("second sweep = %+v, want 1 message", st)
	}
	if st, _ := s.Sweep(context.Background()); st.Messages != 0 || st.Dedupe != 0 {
		t.Fatalf("third sweep = %+v, want nothing", st)
	}
}

func TestRetentionByAgeAndDedupeWindow(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts := Options{Now: clk.now, DedupeWindow: time.Hour}
	opts.Retention[ChatChannel] = Retention{MaxAge: 48 * time.Hour}
	s := openTest(t, t.TempDir(), opts)
	ch := mustChat(t, s, ChatSpec{Kind: ChatChannel, Creator: 1})
	g := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	for i := 1; i <= 5; i++ {
		mustAppend(t, s, text(ch.ID, 1, uint64(i), "old"), text(g.ID, 1, uint64(i), "old"))
	}
	clk.t = clk.t.Add(30 * time.Hour)
	mustAppend(t, s, text(ch.ID, 1, 6, "new"), text(g.ID, 1, 6, "new"))

	// 30h later: dedupe of 1..5 expired in both chats, nothing past 48h.
	st, err := s.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 0 || st.Dedupe != 10 {
		t.Fatalf("sweep at 30h = %+v, want 10 dedupe entries only", st)
	}
	if a := mustAppend(t, s, text(g.ID, 1, 2, "again")); a[0].Duplicate {
		t.Fatalf("expired client id still deduped: %+v", a[0])
	}
	if a := mustAppend(t, s, text(g.ID, 1, 6, "new")); !a[0].Duplicate {
		t.Fatalf("live client id not deduped: %+v", a[0])
	}

	clk.t = clk.t.Add(20 * time.Hour) // 50h: the first 5 channel posts are over 48h
	st, err = s.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 5 {
		t.Fatalf("sweep at 50h = %+v, want 5 messages", st)
	}
	recs := readAll(t, s, ch.ID, 1, 10)
	if len(recs) != 1 || recs[0].Seq != 6 {
		t.Fatalf("channel after sweep: %+v", recs)
	}
	if n := len(readAll(t, s, g.ID, 1, 10)); n != 7 {
		t.Fatalf("group has no retention but kept %d of 7", n)
	}
}

func TestSweeperRuns(t *testing.T) {
	opts := Options{SweepInterval: 10 * time.Millisecond}
	opts.Retention[ChatGroup] = Retention{MaxCount: 2}
	s := openTest(t, t.TempDir(), opts)
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	for i := 1; i <= 5; i++ {
		mustAppend(t, s, text(c.ID, 1, uint64(i), "m"))
	}
	storagetest.WaitFor(t, "the sweeper to move the floor to 4", func() bool {
		ch, _ := s.Chat(c.ID)
		return ch.Floor == 4
	})
}

// TestRetentionRemovedMedia: once retention has removed a chat's records,
// Options.Removed hears of the MEDIA ones still standing, each with its
// latest edit's body (so that the node gives back the files they carry),
// and not of a deleted one, whose delete gave them back, nor of others.
func TestRetentionRemovedMedia(t *testing.T) {
	type call struct {
		chat ChatID
		recs []Record
	}
	var calls []call
	var s *Store
	opts := Options{SweepBatch: 4}
	opts.Retention[ChatGroup] = Retention{MaxCount: 3}
	opts.Removed = func(chat ChatID, recs []Record) {
		for _, r := range recs {
			// Durable by now: the record is gone from the store.
			if _, err := s.Get(chat, r.Seq); !errors.Is(err, ErrNoTarget) {
				t.Errorf("Removed called for seq %d while it is still readable (%v)", r.Seq, err)
			}
		}
		calls = append(calls, call{chat, recs})
	}
	s = openTest(t, t.TempDir(), opts)
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	big := strings.Repeat("a compressible body ", 200) // stored compressed
	media := func(cmid uint64, body string) Message {
		return Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: cmid, Kind: MsgMedia, Body: []byte(body)}
	}
	edit := func(cmid, target uint64, body string) Message {
		return Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: cmid, Kind: MsgEdit, Target: target, Body: []byte(body)}
	}
	// 1 big, 2 edited (at 5), 3 edited (6) then deleted (7), 4 as sent.
	mustAppend(t, s, media(1, big), media(2, "b"), media(3, "c"), media(4, "d"))
	mustAppend(t, s, edit(5, 2, "b2"))
	mustAppend(t, s, edit(6, 3, "c2"))
	mustAppend(t, s, Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: 7, Kind: MsgDelete, Target: 3})
	mustAppend(t, s, text(c.ID, 1, 8, "t"), media(9, "kept"), text(c.ID, 1, 10, "t"))

	st, err := s.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 7 {
		t.Fatalf("sweep = %+v, want 7 messages", st)
	}
	var got []string
	for _, cl := range calls {
		if cl.chat != c.ID {
			t.Fatalf("Removed for chat %d, want %d", cl.chat, c.ID)
		}
		for _, r := range cl.recs {
			if r.Kind != MsgMedia || r.Chat != c.ID {
				t.Fatalf("Removed record %+v", r)
			}
			got = append(got, fmt.Sprintf("%d:%.10s:%t", r.Seq, r.Body, r.Edited != 0))
		}
	}
	if want := []string{"1:" + big[:10] + ":false", "2:b2:true", "4:d:false"}; !slices.Equal(got, want) {
		t.Fatalf("Removed heard %q, want %q", got, want)
	}
	// Nothing more is due, and nothing is heard twice.
	calls = nil
	if st, err := s.Sweep(context.Background()); err != nil || st.Messages != 0 || len(calls) != 0 {
		t.Fatalf("second sweep = %+v, %v, %d calls", st, err, len(calls))
	}
}

// TestRetentionRemovedMediaBudget: a sweep whose media records hold more
// than maxSweepMediaBytes of bodies is cut into several ops, all in the
// same Sweep, and every record is heard once.
func TestRetentionRemovedMediaBudget(t *testing.T) {
	heard := map[uint64]int{}
	calls := 0
	opts := Options{}
	opts.Retention[ChatGroup] = Retention{MaxCount: 1}
	opts.Removed = func(_ ChatID, recs []Record) {
		calls++
		for _, r := range recs {
			heard[r.Seq]++
		}
	}
	s := openTest(t, t.TempDir(), opts)
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	const n = 200 // of 60 KiB each: 12 MB
	body := make([]byte, 60<<10)
	for i := 1; i <= n+1; i++ {
		rand.Read(body) // incompressible: stored as is
		mustAppend(t, s, Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: uint64(i), Kind: MsgMedia, Body: body})
	}
	st, err := s.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != n || len(heard) != n || calls < 2 {
		t.Fatalf("sweep = %+v, %d records heard in %d calls; want %d in at least 2", st, len(heard), calls, n)
	}
	for seq, k := range heard {
		if k != 1 || seq < 1 || seq > n {
			t.Fatalf("seq %d heard %d times", seq, k)
		}
	}
}
