package media

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPutDedupeAndRefs(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	s := openStore(t, dir, c, Options{})
	data := randBytes(1, 3<<20+17)
	a, err := s.Put(t.Context(), 1, bytes.NewReader(data), int64(len(data)), Meta{Name: "a.bin"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Put(t.Context(), 2, bytes.NewReader(data), -1, Meta{Name: "b.bin", MIME: "video/mp4"})
	if err != nil {
		t.Fatal(err)
	}
	if a.SHA256 != sha(data) || b.SHA256 != a.SHA256 || a.Size != int64(len(data)) || b.Size != a.Size {
		t.Fatalf("infos %+v %+v, want sha %s", a, b, sha(data))
	}
	if a.Name != "a.bin" || a.MIME != "application/octet-stream" || b.Name != "b.bin" || b.MIME != "video/mp4" {
		t.Errorf("caller meta not returned: %+v %+v", a, b)
	}
	if n := blobFiles(t, dir); n != 1 {
		t.Fatalf("%d blob files, want 1", n)
	}
	if got := dirEntries(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp not empty: %v", got)
	}
	if !bytes.Equal(readBlob(t, s, a.SHA256), data) {
		t.Fatal("content differs")
	}
	_, oi, _ := s.Open(a.SHA256)
	if oi.Name != "a.bin" {
		t.Errorf("stored name %q, want the first uploader's", oi.Name)
	}

	refs := func(want int64) {
		t.Helper()
		if n, err := s.Refs(a.SHA256); err != nil || n != want {
			t.Fatalf("refs = %d, %v; want %d", n, err, want)
		}
	}
	refs(0)
	if err := s.Ref(a.SHA256, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Unref(a.SHA256, 1); err != nil {
		t.Fatal(err)
	}
	refs(1)
	if err := s.Unref(a.SHA256, 2); !errors.Is(err, ErrRefCount) {
		t.Fatalf("unref below zero: %v", err)
	}
	refs(1)
	if err := s.Ref(strings.Repeat("0", 64), 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("ref of unknown blob: %v", err)
	}
	if _, _, err := s.Open("../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("open of a path: %v", err)
	}
	// Durable: a reopened store has the count.
	s.Close()
	s = openStore(t, dir, c, Options{})
	refs(1)
}

func TestPutSizeChecks(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	s := openStore(t, dir, c, Options{MaxFile: 1000})
	ctx := t.Context()
	for _, tc := range []struct {
		body int
		size int64
		want error
	}{
		{10, 20, ErrSizeMismatch},
		{20, 10, ErrSizeMismatch},
		{1001, 1001, ErrTooLarge},
		{1001, -1, ErrTooLarge},
		{5, -2, ErrBadRange},
		{1000, 1000, nil},
		{1000, -1, nil},
		{0, 0, nil},
	} {
		info, err := s.Put(ctx, 1, bytes.NewReader(randBytes(2, tc.body)), tc.size, Meta{})
		if err == nil && (info.Size != int64(tc.body) || info.MIME == "") {
			t.Errorf("body %d: info %+v", tc.body, info)
		}
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("body %d size %d: err %v, want %v", tc.body, tc.size, err, tc.want)
		}
	}
	if _, err := s.Put(ctx, 1, strings.NewReader("x"), 1, Meta{Name: strings.Repeat("n", 256)}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("long name: %v", err)
	}
	if got := dirEntries(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp not empty after failures: %v", got)
	}
}

// errReader fails after its data.
type errReader struct{ r io.Reader }

func (e errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset")
	}
	return n, err
}

func TestPutReadErrorAndCancel(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	s := openStore(t, dir, c, Options{MaxPerUserDay: 10 << 20})
	if _, err := s.Put(t.Context(), 1, errReader{bytes.NewReader(randBytes(3, 100))}, 200, Meta{}); err == nil ||
		!strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("read error: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Put(ctx, 1, bytes.NewReader(randBytes(3, 100)), 100, Meta{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
	// Failed puts gave their unwritten reservation back: the whole quota
	// minus the 100 bytes read before the reset is left.
	if _, err := s.Put(t.Context(), 1, bytes.NewReader(randBytes(4, 10<<20-100)), 10<<20-100, Meta{}); err != nil {
		t.Fatalf("quota not given back: %v", err)
	}
	if got := dirEntries(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp not empty: %v", got)
	}
}

func TestPutSniffsMIME(t *testing.T) {
	s := openStore(t, t.TempDir(), newClock(), Options{})
	png := append([]byte("\x89PNG\r\n\x1a\n"), randBytes(5, 100)...)
	info, err := s.Put(t.Context(), 1, bytes.NewReader(png), -1, Meta{Name: "p.png"})
	if err != nil {
		t.Fatal(err)
	}
	if info.MIME != "image/png" {
		t.Errorf("MIME = %q", info.MIME)
	}
}

func TestQuotaPerDay(t *testing.T) {
	c := newClock()
	s := openStore(t, t.TempDir(), c, Options{MaxPerUserDay: 100})
	ctx := t.Context()
	put := func(user uint64, n int, size int64) error {
		_, err := s.Put(ctx, user, bytes.NewReader(randBytes(uint64(n), n)), size, Meta{})
		return err
	}
	if err := put(1, 60, 60); err != nil {
		t.Fatal(err)
	}
	if err := put(1, 50, 50); !errors.Is(err, ErrQuota) {
		t.Fatalf("over quota: %v", err)
	}
	if err := put(1, 50, -1); !errors.Is(err, ErrQuota) {
		t.Fatalf("over quota, unknown size: %v", err)
	}
	if _, err := s.CreateUpload(1, 50, Meta{}); !errors.Is(err, ErrQuota) {
		t.Fatalf("upload over quota: %v", err)
	}
	if err := put(2, 50, 50); err != nil {
		t.Fatalf("another user: %v", err)
	}
	up, err := s.CreateUpload(1, 40, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteChunk(ctx, 1, up.ID, 0, bytes.NewReader(make([]byte, 10)), 10); err != nil {
		t.Fatal(err)
	}
	// Abort gives back the 30 bytes not received: 100-60-10 = 30 left.
	if err := s.Abort(1, up.ID); err != nil {
		t.Fatal(err)
	}
	if err := put(1, 31, 31); !errors.Is(err, ErrQuota) {
		t.Fatalf("31 of 30 left: %v", err)
	}
	if err := put(1, 30, 30); err != nil {
		t.Fatalf("30 of 30 left: %v", err)
	}
	c.Advance(24 * time.Hour)
	if err := put(1, 100, 100); err != nil {
		t.Fatalf("next day: %v", err)
	}
}

func TestGC(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	grace := time.Hour
	s := openStore(t, dir, c, Options{GCGrace: grace})
	ctx := t.Context()
	put := func(seed uint64) Info {
		t.Helper()
		info, err := s.Put(ctx, 1, bytes.NewReader(randBytes(seed, 1000)), 1000, Meta{})
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	kept, dropped, reput, unref := put(1), put(2), put(3), put(4)
	if err := s.Ref(kept.SHA256, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Ref(unref.SHA256, 1); err != nil {
		t.Fatal(err)
	}
	c.Advance(grace / 2)
	put(3) // uploading again restarts the grace
	if err := s.Unref(unref.SHA256, 1); err != nil {
		t.Fatal(err)
	}
	c.Advance(grace/2 - time.Second)
	if st, err := s.GC(c.Now()); err != nil || st.Blobs != 0 {
		t.Fatalf("GC before grace: %+v, %v", st, err)
	}
	c.Advance(time.Second)
	st, err := s.GC(c.Now())
	if err != nil || st.Blobs != 1 || st.Bytes != 1000 {
		t.Fatalf("GC at grace: %+v, %v", st, err)
	}
	if _, _, err := s.Open(dropped.SHA256); !errors.Is(err, ErrNotFound) {
		t.Errorf("collected blob opens: %v", err)
	}
	if err := s.Ref(dropped.SHA256, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("collected blob refs: %v", err)
	}
	p := filepath.Join(dir, "blobs", dropped.SHA256[:2], dropped.SHA256)
	for _, f := range []string{p, p + ".meta"} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left: %v", f, err)
		}
	}
	c.Advance(grace / 2)
	if st, _ := s.GC(c.Now()); st.Blobs != 2 {
		t.Errorf("second GC removed %d, want reput and unref", st.Blobs)
	}
	for _, i := range []Info{reput, unref} {
		if _, _, err := s.Open(i.SHA256); !errors.Is(err, ErrNotFound) {
			t.Errorf("blob %s survived", i.SHA256)
		}
	}
	if got := readBlob(t, s, kept.SHA256); len(got) != 1000 {
		t.Error("referenced blob lost")
	}
	// Collected content can be stored again.
	again := put(2)
	if !bytes.Equal(readBlob(t, s, again.SHA256), randBytes(2, 1000)) {
		t.Error("re-stored blob differs")
	}
}

// TestRefRacingGC: every Ref that succeeds keeps its blob; every blob
// collected refuses Refs.
func TestRefRacingGC(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	s := openStore(t, dir, c, Options{GCGrace: time.Minute})
	const n = 40
	infos := make([]Info, n)
	for i := range infos {
		var err error
		infos[i], err = s.Put(t.Context(), 1, bytes.NewReader(randBytes(uint64(i), 100)), 100, Meta{})
		if err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(time.Hour)
	refOK := make([]bool, n)
	var wg sync.WaitGroup
	for i := range infos {
		wg.Go(func() {
			err := s.Ref(infos[i].SHA256, 1)
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Error(err)
			}
			refOK[i] = err == nil
		})
	}
	wg.Go(func() {
		if _, err := s.GC(c.Now()); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	for i, info := range infos {
		_, statErr := os.Stat(filepath.Join(dir, "blobs", info.SHA256[:2], info.SHA256))
		if refOK[i] && statErr != nil {
			t.Errorf("blob %d referenced but collected", i)
		}
		if !refOK[i] && statErr == nil {
			t.Errorf("blob %d refused a Ref but kept", i)
		}
	}
	// Nothing referenced is collected later either.
	if _, err := s.GC(c.Now()); err != nil {
		t.Fatal(err)
	}
	for i, info := range infos {
		if refOK[i] {
			readBlob(t, s, info.SHA256)
		}
	}
}

// heapReader yields size bytes of a repeated 64 KiB pseudo-random
// pattern, sampling the heap every 8 MiB.
type heapReader struct {
	left, sinceSample int64
	peak              uint64
	pattern           []byte
	pos               int
}

func newHeapReader(size int64, seed uint64) *heapReader {
	return &heapReader{left: size, pattern: randBytes(seed, 64<<10)}
}

func (r *heapReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.left)]
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.pattern[r.pos:])
		n += k
		r.pos = (r.pos + k) % len(r.pattern)
	}
	r.left -= int64(n)
	if r.sinceSample += int64(n); r.sinceSample >= 8<<20 {
		r.sinceSample = 0
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		r.peak = max(r.peak, ms.HeapAlloc)
	}
	return n, nil
}

// TestPutHeapBounded: a 200 MB Put streams; the heap grows by a copy
// buffer, not by the file.
func TestPutHeapBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200 MB")
	}
	s := openStore(t, t.TempDir(), newClock(), Options{})
	const size = 200 << 20
	r := newHeapReader(size, 1)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	info, err := s.Put(t.Context(), 1, r, size, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != size {
		t.Fatalf("size %d", info.Size)
	}
	growth := int64(r.peak) - int64(base)
	t.Logf("heap growth during a 200 MB Put: %d KiB", growth>>10)
	if growth > 8<<20 {
		t.Fatalf("heap grew by %d MiB during a streamed Put", growth>>20)
	}
}

func BenchmarkPut256MiB(b *testing.B) {
	if testing.Short() {
		b.Skip("writes 256 MiB per iteration")
	}
	s, err := Open(Options{Dir: b.TempDir(), Log: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const size = 256 << 20
	b.SetBytes(size)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Put(b.Context(), 1, newHeapReader(size, uint64(i)+1), size, Meta{}); err != nil {
			b.Fatal(err)
		}
	}
}
