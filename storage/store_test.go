package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/cockroachdb/pebble/v2/internal/ascii.init.0.func1"))
}

// clock is an injectable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func openTest(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if opts.SweepInterval == 0 {
		opts.SweepInterval = -1
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustChat(t testing.TB, s *Store, spec ChatSpec) Chat {
	t.Helper()
	c, err := s.CreateChat(context.Background(), spec)
	if err != nil {
		t.Fatalf("CreateChat(%+v): %v", spec, err)
	}
	return c
}

func text(chat ChatID, user UserID, cmid uint64, body string) Message {
	return Message{Chat: chat, Sender: user, Device: 1, ClientMsgID: cmid, Kind: MsgText, Body: []byte(body)}
}

func mustAppend(t testing.TB, s *Store, msgs ...Message) []Ack {
	t.Helper()
	acks, err := s.Append(context.Background(), msgs)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	for i, a := range acks {
		if a.Err != nil {
			t.Fatalf("Append msg %d: %v", i, a.Err)
		}
	}
	return acks
}

// readAll returns copies of chat's records [from, from+limit).
func readAll(t testing.TB, s *Store, chat ChatID, from uint64, limit int) []Record {
	t.Helper()
	var out []Record
	_, err := s.ReadRange(chat, from, limit, func(r *Record) error {
		c := *r
		c.Body = append([]byte(nil), r.Body...)
		c.Reactions = append([]Reaction(nil), r.Reactions...)
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatalf("ReadRange(%d, %d, %d): %v", chat, from, limit, err)
	}
	return out
}

func TestAppendAndRead(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2, 3}, Title: "g"})
	if c.Members != 3 || c.LastSeq != 0 || c.Floor != 1 {
		t.Fatalf("new chat = %+v", c)
	}
	var msgs []Message
	for i := 1; i <= 10; i++ {
		msgs = append(msgs, text(c.ID, 1, uint64(i), fmt.Sprintf("hello %d %s", i, string(make([]byte, i*100)))))
	}
	acks := mustAppend(t, s, msgs...)
	for i, a := range acks {
		if a.Seq != uint64(i+1) || a.Duplicate {
			t.Fatalf("ack %d = %+v, want seq %d", i, a, i+1)
		}
	}
	recs := readAll(t, s, c.ID, 1, 100)
	if len(recs) != 10 {
		t.Fatalf("read %d records, want 10", len(recs))
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || string(r.Body) != string(msgs[i].Body) || r.Sender != 1 || r.ClientMsgID != uint64(i+1) {
			t.Fatalf("record %d = seq %d body %q", i, r.Seq, r.Body[:10])
		}
	}
	// Duplicate.
	again := mustAppend(t, s, msgs[3])
	if !again[0].Duplicate || again[0].Seq != 4 || again[0].Time != acks[3].Time {
		t.Fatalf("resend = %+v, want duplicate of %+v", again[0], acks[3])
	}
	if got := readAll(t, s, c.ID, 1, 100); len(got) != 10 {
		t.Fatalf("resend wrote: %d records", len(got))
	}
}

func TestBadInput(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{MaxBodyBytes: 100})
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	f := func(m Message, want error) {
		t.Helper()
		_, err := s.Append(context.Background(), []Message{m})
		if !errors.Is(err, want) {
			t.Fatalf("Append(%+v) = %v, want %v", m, err, want)
		}
	}
	f(Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: 1, Kind: MsgText}, ErrEmptyBody)
	f(Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: 1, Kind: MsgText, Body: make([]byte, 101)}, ErrTooLarge)
	f(Message{Chat: 0, Sender: 1, Device: 1, ClientMsgID: 1, Kind: MsgText, Body: []byte("x")}, ErrBadID)
	f(Message{Chat: c.ID, Sender: 0, Device: 1, ClientMsgID: 1, Kind: MsgText, Body: []byte("x")}, ErrBadID)
	f(Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: 0, Kind: MsgText, Body: []byte("x")}, ErrBadID)
	f(Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: 1, Kind: 9, Body: []byte("x")}, ErrBadKind)
	acks, err := s.Append(context.Background(), []Message{text(c.ID+1, 1, 1, "x"), text(c.ID, 1, 2, "ok")})
	if err != nil || !errors.Is(acks[0].Err, ErrUnknownChat) || acks[1].Err != nil || acks[1].Seq != 1 {
		t.Fatalf("unknown chat: %+v, %v", acks, err)
	}
	if c2, _ := s.Chat(c.ID); c2.LastSeq != 1 {
		t.Fatalf("bad input wrote: last seq %d", c2.LastSeq)
	}
}

// TestDedupeOutOfOrder covers client ids that do not rise: a lower id than
// the device's highest is looked up exactly, and still new when unseen.
func TestDedupeOutOfOrder(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	want := func(s *Store, cmid uint64, dev DeviceID, seq uint64, dup bool) {
		t.Helper()
		m := text(c.ID, 1, cmid, "m")
		m.Device = dev
		a := mustAppend(t, s, m)[0]
		if a.Seq != seq || a.Duplicate != dup {
			t.Fatalf("cmid %d dev %d: ack %+v, want seq %d duplicate %v", cmid, dev, a, seq, dup)
		}
	}
	want(s, 10, 1, 1, false)
	want(s, 5, 1, 2, false) // lower, unseen: new
	want(s, 5, 1, 2, true)
	want(s, 10, 1, 1, true)
	want(s, 5, 2, 3, false) // another device's id space
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, Options{})
	want(s, 10, 1, 1, true)
	want(s, 5, 2, 3, true)
	want(s, 7, 1, 4, false)
	want(s, 11, 1, 5, false)
}
