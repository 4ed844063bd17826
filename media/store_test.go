package media

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openStore opens a store in dir with o's limits, the clock c and a quiet
// log.
func openStore(t *testing.T, dir string, c *clock, o Options) *Store {
	t.Helper()
	o.Dir, o.Now, o.Log = dir, c.Now, quietLog()
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// readBlob returns the content of blob sum, via Store.Open.
func readBlob(t *testing.T, s *Store, sum string) []byte {
	t.Helper()
	f, _, err := s.Open(sum)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// blobFiles counts the blob files (not metas) under dir.
func blobFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && validSHA(d.Name()) {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestOpenRecovers(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	s := openStore(t, dir, c, Options{})
	data := []byte("%PDF-1.4 recovered")
	info, err := s.Put(t.Context(), 1, bytes.NewReader(data), int64(len(data)), Meta{Name: "a.pdf"})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "blobs", info.SHA256[:2], info.SHA256)
	// What crashes leave: a blob whose meta was never written, a meta whose
	// blob was collected, temporary files.
	if err := os.Remove(p + ".meta"); err != nil {
		t.Fatal(err)
	}
	orphan := strings.Repeat("ab", 32)
	os.MkdirAll(filepath.Join(dir, "blobs", "ab"), 0o700)
	os.WriteFile(filepath.Join(dir, "blobs", "ab", orphan+".meta"), []byte(`{"size":1}`), 0o600)
	os.WriteFile(filepath.Join(dir, "blobs", "ab", orphan+".meta.tmp"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, "tmp", "x.tmp"), []byte("half"), 0o600)
	os.WriteFile(filepath.Join(dir, "uploads", "zzz.state.tmp"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, "uploads", "AAAAAAAAAAAAAAAAAAAAAA.part"), nil, 0o600)
	s.Close()

	s = openStore(t, dir, c, Options{})
	if got := readBlob(t, s, info.SHA256); !bytes.Equal(got, data) {
		t.Fatalf("recovered blob = %q", got)
	}
	_, gi, _ := s.Open(info.SHA256)
	if gi.MIME != "application/pdf" || gi.Size != int64(len(data)) {
		t.Errorf("recovered info = %+v", gi)
	}
	if n, err := s.Refs(info.SHA256); err != nil || n != 0 {
		t.Errorf("recovered refs = %d, %v", n, err)
	}
	if _, err := os.Stat(p + ".meta"); err != nil {
		t.Errorf("meta not rewritten: %v", err)
	}
	if got := dirEntries(t, filepath.Join(dir, "blobs", "ab")); len(got) != 0 {
		t.Errorf("orphans left: %v", got)
	}
	if got := dirEntries(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp left: %v", got)
	}
	if got := dirEntries(t, filepath.Join(dir, "uploads")); len(got) != 0 {
		t.Errorf("uploads left: %v", got)
	}
}

func TestClosed(t *testing.T) {
	s := openStore(t, t.TempDir(), newClock(), Options{})
	s.Close()
	if _, err := s.Put(t.Context(), 1, strings.NewReader("x"), 1, Meta{}); err != ErrClosed {
		t.Errorf("Put after Close: %v", err)
	}
	if _, err := s.CreateUpload(1, 1, Meta{}); err != ErrClosed {
		t.Errorf("CreateUpload after Close: %v", err)
	}
}

func TestOptionsRequireDir(t *testing.T) {
	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open without Dir succeeded")
	}
}
