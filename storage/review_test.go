package storage

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestClosedStore(t *testing.T) {
	s, err := Open(t.TempDir(), Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, f := range map[string]func() error{
		"ReadRange": func() error { _, err := s.ReadRange(c.ID, 1, 1, func(*Record) error { return nil }); return err },
		"Members":   func() error { _, err := s.Members(c.ID, 0, 1); return err },
		"Member":    func() error { _, err := s.Member(c.ID, 1); return err },
		"uncached":  func() error { _, err := s.Members(c.ID+1, 0, 1); return err },
		"UserChats": func() error { _, err := s.UserChats(1, 0, 1); return err },
		"Dialogs":   func() error { _, err := s.Dialogs(1, 0, DialogCursor{}, 1); return err },
		"Chat":      func() error { _, err := s.Chat(c.ID); return err },
		"Append":    func() error { _, err := s.Append(ctx, []Message{text(c.ID, 1, 1, "x")}); return err },
		"Sweep":     func() error { _, err := s.Sweep(ctx); return err },
		"Close":     s.Close,
	} {
		if err := f(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

// TestDedupeReuseSurvivesSweep: a client id reused after its window gets a
// new record; sweeping the old record must not drop the new one's entry.
func TestDedupeReuseSurvivesSweep(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := openTest(t, t.TempDir(), Options{Now: clk.now, DedupeWindow: time.Hour})
	g := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	mustAppend(t, s, text(g.ID, 1, 5, "m"))
	clk.t = clk.t.Add(time.Hour + time.Second)
	second := mustAppend(t, s, text(g.ID, 1, 5, "m"))[0] // window passed: a new record
	if second.Duplicate || second.Seq != 2 {
		t.Fatalf("reuse after the window = %+v", second)
	}
	if _, err := s.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(time.Second)
	if a := mustAppend(t, s, text(g.ID, 1, 5, "m"))[0]; !a.Duplicate || a.Seq != 2 {
		t.Fatalf("resend within the new window = %+v, want a duplicate of seq 2", a)
	}
}

// TestReadFloorConsistent sweeps while reading: a read from below the
// floor must start exactly at the floor it returns.
func TestReadFloorConsistent(t *testing.T) {
	opts := Options{}
	opts.Retention[ChatGroup] = Retention{MaxCount: 5}
	s := openTest(t, t.TempDir(), opts)
	g := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := uint64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Append(context.Background(), []Message{text(g.ID, 1, i, "m")}); err != nil {
				t.Error(err)
				return
			}
			if _, err := s.Sweep(context.Background()); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	for range 2000 {
		var seqs []uint64
		c, err := s.ReadRange(g.ID, 1, 100, func(r *Record) error { seqs = append(seqs, r.Seq); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if len(seqs) == 0 {
			continue
		}
		if seqs[0] != c.Floor || seqs[len(seqs)-1] != c.LastSeq || uint64(len(seqs)) != c.LastSeq-c.Floor+1 {
			t.Fatalf("read %v, chat floor %d last %d", seqs, c.Floor, c.LastSeq)
		}
	}
}
