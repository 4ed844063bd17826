package status

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gonets/gonets/identity"
)

func TestCursorRoundTrip(t *testing.T) {
	c := newCursor()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 5 {
		s := Status{Code: "c", Title: "t", At: base.Add(time.Duration(i) * time.Minute)}
		c.add(digestOf(s), s.At.UnixNano())
	}
	got, err := parseCursor(c.marshal())
	if err != nil {
		t.Fatal(err)
	}
	if got.floor != math.MinInt64 || len(got.seen) != 5 || got.seen[3] != c.seen[3] {
		t.Fatalf("round trip: got %+v, want %+v", got, c)
	}
	for _, b := range [][]byte{nil, {2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, c.marshal()[:20], append(c.marshal(), 0)} {
		if _, err := parseCursor(b); !errors.Is(err, ErrCorruptCursor) {
			t.Errorf("parseCursor(% x): err %v, want ErrCorruptCursor", b, err)
		}
	}
}

// TestCursorFloor: past MaxSeen the earliest status is forgotten and the
// floor keeps it posted; a later unknown status is still new.
func TestCursorFloor(t *testing.T) {
	c := newCursor()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var first Status
	for i := range MaxSeen + 1 {
		s := Status{Code: "c", Title: "t", At: base.Add(time.Duration(MaxSeen-i) * time.Second)}
		if i == MaxSeen {
			first = s // the earliest, added last
		}
		c.add(digestOf(s), s.At.UnixNano())
	}
	if len(c.seen) != MaxSeen || c.floor != first.At.UnixNano() {
		t.Fatalf("seen %d floor %d, want %d and %d", len(c.seen), c.floor, MaxSeen, first.At.UnixNano())
	}
	if !c.posted(digestOf(first), first.At.UnixNano()) {
		t.Error("the forgotten earliest status is not posted")
	}
	late := Status{Code: "new", At: base.Add(time.Hour)}
	if c.posted(digestOf(late), late.At.UnixNano()) {
		t.Error("a new status after the floor counts as posted")
	}
	if _, err := parseCursor(c.marshal()); err != nil {
		t.Fatal(err)
	}
}

func TestDigestAndMsgID(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	s := Status{Code: "c", Title: "t", At: at}
	moscow := Status{Code: "c", Title: "t", At: at.In(time.FixedZone("MSK", 3*3600)), Final: true}
	if digestOf(s) != digestOf(moscow) {
		t.Error("the same instant in another zone has another digest")
	}
	for _, o := range []Status{{Code: "c2", Title: "t", At: at}, {Code: "c", Title: "t2", At: at}, {Code: "c", Title: "t", At: at.Add(1)}, {Code: "ct", At: at}} {
		if digestOf(o) == digestOf(s) {
			t.Errorf("%+v has the digest of %+v", o, s)
		}
	}
	d := digestOf(s)
	if msgID(1, "o", d) != msgID(1, "o", d) || msgID(1, "o", d) == msgID(2, "o", d) || msgID(1, "o", d) == msgID(1, "o2", d) || msgID(1, "o", d) == 0 {
		t.Error("msgID is not stable or not distinct")
	}
	if !bytes.HasPrefix(cursorKey(7, "order"), userPrefix(7)) || bytes.HasPrefix(cursorKey(7, "order"), userPrefix(8)) ||
		bytes.Contains(cursorKey(7, "order-123"), []byte("order")) {
		t.Error("cursor keys are not under the user's prefix or hold the order id")
	}
}

func TestCorruptCursorFailsPoll(t *testing.T) {
	kv := identity.NewMemKV()
	src := sourceFunc(func(context.Context, Person) ([]Application, error) {
		return []Application{{OrderID: "o1", Statuses: []Status{{Code: "c", At: time.Unix(1, 0)}}}}, nil
	})
	posts := 0
	p, err := NewPoller(PollerOptions{Source: src, KV: kv, Post: func(context.Context, Event) error { posts++; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	kv.Set(cursorKey(1, "o1"), []byte("garbage"))
	if _, err := p.PollNow(t.Context(), 1, Person{OID: "1"}); !errors.Is(err, ErrCorruptCursor) || posts != 0 {
		t.Fatalf("err %v posts %d, want ErrCorruptCursor and none", err, posts)
	}
	if p.locks.held() != 0 {
		t.Errorf("%d user locks left", p.locks.held())
	}
}

func TestUserLocks(t *testing.T) {
	var l userLocks
	unlock, err := l.lock(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if _, err := l.lock(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock of a held user: %v", err)
	}
	u2, err := l.lock(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	u2()
	unlock()
	if l.held() != 0 {
		t.Fatalf("%d locks left", l.held())
	}
}

type sourceFunc func(context.Context, Person) ([]Application, error)

func (f sourceFunc) History(ctx context.Context, p Person) ([]Application, error) { return f(ctx, p) }

func FuzzParseCursor(f *testing.F) {
	c := newCursor()
	c.add(digest{1}, 5)
	f.Add(c.marshal())
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseCursor(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.marshal(), b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func TestValidate(t *testing.T) {
	at := time.Unix(1, 0)
	ok := func() []Application {
		return []Application{{OrderID: "o1", Service: "svc", Statuses: []Status{{Code: "c", Title: "line\nline", At: at}}}}
	}
	if err := Validate(ok()); err != nil {
		t.Fatal(err)
	}
	many := make([]Status, MaxStatuses+1)
	for i := range many {
		many[i] = Status{Code: "c", At: at}
	}
	for name, mod := range map[string]func([]Application) []Application{
		"no order":       func(a []Application) []Application { a[0].OrderID = ""; return a },
		"long order":     func(a []Application) []Application { a[0].OrderID = strings.Repeat("o", MaxOrderID+1); return a },
		"control order":  func(a []Application) []Application { a[0].OrderID = "o\n"; return a },
		"repeated order": func(a []Application) []Application { return append(a, a[0]) },
		"long service":   func(a []Application) []Application { a[0].Service = strings.Repeat("s", MaxService+1); return a },
		"no code":        func(a []Application) []Application { a[0].Statuses[0].Code = ""; return a },
		"long title": func(a []Application) []Application {
			a[0].Statuses[0].Title = strings.Repeat("t", MaxTitle+1)
			return a
		},
		"bad utf8 title": func(a []Application) []Application { a[0].Statuses[0].Title = "\xff"; return a },
		"no time":        func(a []Application) []Application { a[0].Statuses[0].At = time.Time{}; return a },
		"many statuses":  func(a []Application) []Application { a[0].Statuses = many; return a },
		"many apps": func(a []Application) []Application {
			for i := range MaxApplications {
				a = append(a, Application{OrderID: "x" + strings.Repeat("y", i%100) + string(rune('a'+i/100))})
			}
			return a
		},
	} {
		if err := Validate(mod(ok())); !errors.Is(err, ErrInvalidResponse) {
			t.Errorf("%s: err %v, want ErrInvalidResponse", name, err)
		}
	}
}

// The marks Forget leaves for polls in flight go when those polls end.
func TestForgetMarksDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		src := sourceFunc(func(ctx context.Context, _ Person) ([]Application, error) {
			<-gate
			return nil, nil
		})
		p, err := NewPoller(PollerOptions{Source: src, KV: identity.NewMemKV(), Post: func(context.Context, Event) error { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		sizes := func() (int, int) {
			p.mu.Lock()
			defer p.mu.Unlock()
			return len(p.begun), len(p.forgotAt)
		}
		if err := p.Forget(t.Context(), 9); err != nil {
			t.Fatal(err)
		}
		if b, f := sizes(); b != 0 || f != 0 {
			t.Fatalf("no poll: %d polls, %d marks; want none", b, f)
		}
		done := make(chan error, 2)
		go func() { _, err := p.PollNow(t.Context(), 7, Person{OID: "1"}); done <- err }()
		synctest.Wait()
		if err := p.Forget(t.Context(), 8); err != nil {
			t.Fatal(err)
		}
		go func() { done <- p.Forget(t.Context(), 7) }()
		synctest.Wait()
		if b, f := sizes(); b != 1 || f != 2 {
			t.Fatalf("while a poll runs: %d polls, %d marks; want 1, 2", b, f)
		}
		close(gate)
		for range 2 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		if b, f := sizes(); b != 0 || f != 0 {
			t.Fatalf("after the poll: %d polls, %d marks; want none", b, f)
		}
	})
}
