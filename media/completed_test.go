package media

import (
	"errors"
	"os"
	"testing"
	"time"
)

// TestCompletedUpload: a completed upload's blob is found by its id for
// GCGrace, across a restart, for its user only; then GC forgets it.
func TestCompletedUpload(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	s := openStore(t, dir, c, Options{GCGrace: time.Hour})
	data := randBytes(3, 10_000)
	up, err := s.CreateUpload(1, int64(len(data)), Meta{Name: "a.bin"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CompletedUpload(1, up.ID); !errors.Is(err, ErrUnknownUpload) {
		t.Fatalf("an open upload: %v", err)
	}
	writeChunk(t, s, 1, up.ID, data, 0, int64(len(data)))
	info, err := s.Complete(t.Context(), 1, up.ID)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, dir, c, Options{GCGrace: time.Hour}) // a crash after Complete
	got, err := s.CompletedUpload(1, up.ID)
	if err != nil || got.SHA256 != info.SHA256 || got.Size != int64(len(data)) {
		t.Fatalf("after a restart: %+v %v", got, err)
	}
	if _, err := s.CompletedUpload(2, up.ID); !errors.Is(err, ErrUnknownUpload) {
		t.Fatalf("another user's: %v", err)
	}
	if _, err := s.Upload(1, up.ID); !errors.Is(err, ErrUnknownUpload) {
		t.Fatalf("the upload itself: %v", err)
	}
	c.Advance(time.Hour)
	if _, err := s.CompletedUpload(1, up.ID); !errors.Is(err, ErrUnknownUpload) {
		t.Fatalf("past the grace: %v", err)
	}
	if _, err := s.GC(c.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.donePath(up.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("record left after GC: %v", err)
	}
}
