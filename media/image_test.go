package media

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// TestSetImage: a picture's dimensions and thumbnail survive a reopen and
// come back from Stat, Open and a dedupe; Touch restarts a grace.
func TestSetImage(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	grace := time.Hour
	s := openStore(t, dir, c, Options{GCGrace: grace})
	ctx := t.Context()
	pic, err := s.Put(ctx, 1, bytes.NewReader(randBytes(1, 3000)), 3000, Meta{Name: "p.jpg", MIME: "image/jpeg"})
	if err != nil {
		t.Fatal(err)
	}
	thumb, err := s.Put(ctx, 1, bytes.NewReader(randBytes(2, 300)), 300, Meta{MIME: "image/jpeg"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetImage(pic.SHA256, 640, 480, "nothex"); err == nil {
		t.Fatal("SetImage took a bad thumbnail address")
	}
	if err := s.SetImage(sha([]byte("absent")), 1, 1, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetImage of a missing blob: %v", err)
	}
	if err := s.SetImage(pic.SHA256, 640, 480, thumb.SHA256); err != nil {
		t.Fatal(err)
	}
	check := func(i Info, what string) {
		t.Helper()
		if i.Width != 640 || i.Height != 480 || i.ThumbSHA256 != thumb.SHA256 {
			t.Errorf("%s: %dx%d thumb %q", what, i.Width, i.Height, i.ThumbSHA256)
		}
	}
	st, err := s.Stat(pic.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	check(st, "Stat")
	again, err := s.Put(ctx, 2, bytes.NewReader(randBytes(1, 3000)), 3000, Meta{Name: "q.jpg"})
	if err != nil {
		t.Fatal(err)
	}
	check(again, "dedupe")
	s.Close()
	s = openStore(t, dir, c, Options{GCGrace: grace})
	f, oi, err := s.Open(pic.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	check(oi, "Open after reopen")

	// Touch keeps the thumbnail past the grace it would have had.
	c.Advance(grace - time.Minute)
	if err := s.Touch(thumb.SHA256); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(pic.SHA256); err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Minute)
	if st, err := s.GC(c.Now()); err != nil || st.Blobs != 0 {
		t.Fatalf("GC after Touch: %+v %v", st, err)
	}
	if err := s.Touch(sha([]byte("absent"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Touch of a missing blob: %v", err)
	}
	if got := s.Options(); got.GCGrace != grace || got.MaxFile != 4<<30 || got.Dir != dir {
		t.Errorf("Options: %+v", got)
	}
}
