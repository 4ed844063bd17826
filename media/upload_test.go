package media

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// failReader fails the test if read: a retry of received bytes must not
// read its body.
type failReader struct{ t *testing.T }

func (f failReader) Read([]byte) (int, error) {
	f.t.Error("retry body was read")
	return 0, errors.New("read")
}

// writeChunk writes data[start:end] as a chunk.
func writeChunk(t *testing.T, s *Store, user uint64, id string, data []byte, start, end int64) Upload {
	t.Helper()
	up, err := s.WriteChunk(t.Context(), user, id, start, bytes.NewReader(data[start:end]), end-start)
	if err != nil {
		t.Fatalf("chunk [%d, %d): %v", start, end, err)
	}
	return up
}

func TestUploadParallelOutOfOrder(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	s := openStore(t, dir, c, Options{})
	const size, chunk = 50_000_000, 4 << 20
	data := randBytes(7, size)
	up, err := s.CreateUpload(1, size, Meta{Name: "movie.bin"})
	if err != nil {
		t.Fatal(err)
	}
	if !validID(up.ID) || up.Size != size || len(up.Received) != 0 {
		t.Fatalf("created %+v", up)
	}
	var starts []int64
	for off := int64(0); off < size; off += chunk {
		starts = append(starts, off)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(starts), func(i, j int) { starts[i], starts[j] = starts[j], starts[i] })
	work := make(chan int64)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for off := range work {
				end := min(off+chunk, size)
				if _, err := s.WriteChunk(t.Context(), 1, up.ID, off, bytes.NewReader(data[off:end]), end-off); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for _, off := range starts {
		work <- off
	}
	close(work)
	wg.Wait()
	got, err := s.Upload(1, up.ID)
	if err != nil || !slices.Equal(got.Received, []Range{{0, size}}) {
		t.Fatalf("after all chunks: %+v, %v", got.Received, err)
	}
	info, err := s.Complete(t.Context(), 1, up.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != sha(data) || info.Size != size || info.Name != "movie.bin" {
		t.Fatalf("info %+v, want sha %s", info, sha(data))
	}
	if sha(readBlob(t, s, info.SHA256)) != info.SHA256 {
		t.Fatal("stored content differs")
	}
	if got := dirEntries(t, filepath.Join(dir, "uploads")); len(got) != 1 || got[0] != up.ID+".done" {
		t.Errorf("uploads left: %v, want only the completion record", got)
	}
	if _, err := s.Upload(1, up.ID); !errors.Is(err, ErrUnknownUpload) {
		t.Errorf("completed upload still there: %v", err)
	}
	if _, err := s.Complete(t.Context(), 1, up.ID); !errors.Is(err, ErrUnknownUpload) {
		t.Errorf("second Complete: %v", err)
	}
}

func TestUploadOverlapAndRetry(t *testing.T) {
	s := openStore(t, t.TempDir(), newClock(), Options{})
	data := randBytes(8, 100)
	up, err := s.CreateUpload(1, 100, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	writeChunk(t, s, 1, up.ID, data, 0, 10)
	writeChunk(t, s, 1, up.ID, data, 20, 30)
	for _, r := range []Range{{5, 15}, {15, 25}, {0, 30}, {9, 21}} {
		if _, err := s.WriteChunk(t.Context(), 1, up.ID, r.Start, bytes.NewReader(data[r.Start:r.End]), r.Len()); !errors.Is(err, ErrOverlap) {
			t.Errorf("chunk %v: %v, want ErrOverlap", r, err)
		}
	}
	// Retries of received bytes: accepted, body not read, nothing changes.
	for _, r := range []Range{{0, 10}, {20, 30}, {2, 8}} {
		got, err := s.WriteChunk(t.Context(), 1, up.ID, r.Start, failReader{t}, r.Len())
		if err != nil || !slices.Equal(got.Received, []Range{{0, 10}, {20, 30}}) {
			t.Errorf("retry %v: %+v, %v", r, got.Received, err)
		}
	}
	got := writeChunk(t, s, 1, up.ID, data, 10, 20)
	if !slices.Equal(got.Received, []Range{{0, 30}}) {
		t.Errorf("merged ranges %v", got.Received)
	}
	if _, err := s.Complete(t.Context(), 1, up.ID); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Complete at 30 of 100: %v", err)
	}
	writeChunk(t, s, 1, up.ID, data, 30, 100)
	info, err := s.Complete(t.Context(), 1, up.ID)
	if err != nil || info.SHA256 != sha(data) {
		t.Fatalf("complete: %+v, %v", info, err)
	}
}

func TestUploadBadChunks(t *testing.T) {
	s := openStore(t, t.TempDir(), newClock(), Options{MaxChunk: 50, MaxRanges: 3})
	data := randBytes(9, 100)
	up, err := s.CreateUpload(1, 100, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		start, n int64
		body     []byte
		want     error
	}{
		{0, 51, data[:51], ErrTooLarge},
		{-1, 10, data[:10], ErrBadRange},
		{95, 10, data[:10], ErrBadRange},
		{0, 0, nil, ErrBadRange},
		{0, 10, data[:5], ErrSizeMismatch},
		{0, 10, data[:11], ErrSizeMismatch},
	} {
		if _, err := s.WriteChunk(t.Context(), 1, up.ID, tc.start, bytes.NewReader(tc.body), tc.n); !errors.Is(err, tc.want) {
			t.Errorf("chunk %d+%d: %v, want %v", tc.start, tc.n, err, tc.want)
		}
	}
	// A failed chunk records nothing and can be sent again.
	writeChunk(t, s, 1, up.ID, data, 0, 10)
	writeChunk(t, s, 1, up.ID, data, 20, 30)
	writeChunk(t, s, 1, up.ID, data, 40, 50)
	if _, err := s.WriteChunk(t.Context(), 1, up.ID, 60, bytes.NewReader(data[60:70]), 10); !errors.Is(err, ErrBadRange) {
		t.Errorf("fourth disjoint range: %v, want ErrBadRange", err)
	}
	if got := writeChunk(t, s, 1, up.ID, data, 10, 20); !slices.Equal(got.Received, []Range{{0, 30}, {40, 50}}) {
		t.Errorf("ranges %v", got.Received)
	}
}

func TestUploadLimits(t *testing.T) {
	s := openStore(t, t.TempDir(), newClock(), Options{MaxFile: 1000, MaxUploadsPerUser: 2})
	if _, err := s.CreateUpload(1, 1001, Meta{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over MaxFile: %v", err)
	}
	if _, err := s.CreateUpload(1, -1, Meta{}); !errors.Is(err, ErrBadRange) {
		t.Errorf("negative size: %v", err)
	}
	a, err := s.CreateUpload(1, 1000, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUpload(1, 10, Meta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUpload(1, 10, Meta{}); !errors.Is(err, ErrTooManyUploads) {
		t.Fatalf("third upload: %v", err)
	}
	if _, err := s.CreateUpload(2, 10, Meta{}); err != nil {
		t.Fatalf("another user: %v", err)
	}
	if err := s.Abort(1, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Abort(1, a.ID); !errors.Is(err, ErrUnknownUpload) {
		t.Errorf("second Abort: %v", err)
	}
	if _, err := s.CreateUpload(1, 10, Meta{}); err != nil {
		t.Fatalf("after Abort: %v", err)
	}
}

func TestUploadOtherUser(t *testing.T) {
	s := openStore(t, t.TempDir(), newClock(), Options{})
	up, err := s.CreateUpload(1, 10, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{up.ID, "../../blobs/x", "", strings.Repeat("A", 22)} {
		user := uint64(2)
		if id != up.ID {
			user = 1
		}
		if _, err := s.Upload(user, id); !errors.Is(err, ErrUnknownUpload) {
			t.Errorf("Upload(%d, %q): %v", user, id, err)
		}
		if _, err := s.WriteChunk(t.Context(), user, id, 0, strings.NewReader("0123456789"), 10); !errors.Is(err, ErrUnknownUpload) {
			t.Errorf("WriteChunk(%d, %q): %v", user, id, err)
		}
		if _, err := s.Complete(t.Context(), user, id); !errors.Is(err, ErrUnknownUpload) {
			t.Errorf("Complete(%d, %q): %v", user, id, err)
		}
		if err := s.Abort(user, id); !errors.Is(err, ErrUnknownUpload) {
			t.Errorf("Abort(%d, %q): %v", user, id, err)
		}
	}
	if got, err := s.Upload(1, up.ID); err != nil || len(got.Received) != 0 {
		t.Errorf("owner's upload touched: %+v, %v", got, err)
	}
}

// TestUploadResumeAfterCrash: a store dropped without Close (all it
// acknowledged is on disk) is reopened; the upload resumes from the
// ranges it recorded, and a torn chunk beyond them is not trusted.
func TestUploadResumeAfterCrash(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	s := openStore(t, dir, c, Options{})
	const size, chunk = 1 << 20, 256 << 10
	data := randBytes(10, size)
	up, err := s.CreateUpload(1, size, Meta{Name: "f", MIME: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	writeChunk(t, s, 1, up.ID, data, 0, chunk)
	writeChunk(t, s, 1, up.ID, data, 2*chunk, 3*chunk)
	// A chunk torn by the crash: half its bytes (garbage) reached the part
	// file, its range never reached the state.
	part, err := os.OpenFile(filepath.Join(dir, "uploads", up.ID+".part"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	part.WriteAt(bytes.Repeat([]byte{0xEE}, chunk/2), chunk)
	part.Close()
	os.WriteFile(filepath.Join(dir, "uploads", up.ID+".state.tmp"), []byte("{torn"), 0o600)

	s2 := openStore(t, dir, c, Options{})
	got, err := s2.Upload(1, up.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []Range{{0, chunk}, {2 * chunk, 3 * chunk}}
	if !slices.Equal(got.Received, want) || got.Size != size || got.Meta.Name != "f" {
		t.Fatalf("after reopen: %+v, want received %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "uploads", up.ID+".state.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("torn state tmp left: %v", err)
	}
	writeChunk(t, s2, 1, up.ID, data, chunk, 2*chunk)
	writeChunk(t, s2, 1, up.ID, data, 3*chunk, size)
	info, err := s2.Complete(t.Context(), 1, up.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != sha(data) || info.MIME != "text/plain" {
		t.Fatalf("info %+v, want sha %s", info, sha(data))
	}
	// The open-upload count survives the restart too.
	if _, err := s2.Upload(1, up.ID); !errors.Is(err, ErrUnknownUpload) {
		t.Errorf("completed upload still listed: %v", err)
	}
}

func TestUploadExpires(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	s := openStore(t, dir, c, Options{UploadTTL: time.Hour, MaxUploadsPerUser: 1})
	up, err := s.CreateUpload(1, 100, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(50 * time.Minute)
	writeChunk(t, s, 1, up.ID, randBytes(11, 100), 0, 10) // activity postpones expiry
	c.Advance(50 * time.Minute)
	if st, _ := s.GC(c.Now()); st.Uploads != 0 {
		t.Fatal("active upload expired")
	}
	c.Advance(10 * time.Minute)
	if st, err := s.GC(c.Now()); err != nil || st.Uploads != 1 {
		t.Fatalf("GC: %+v, %v", st, err)
	}
	if _, err := s.Upload(1, up.ID); !errors.Is(err, ErrUnknownUpload) {
		t.Errorf("expired upload: %v", err)
	}
	if got := dirEntries(t, filepath.Join(dir, "uploads")); len(got) != 0 {
		t.Errorf("files left: %v", got)
	}
	if _, err := s.CreateUpload(1, 10, Meta{}); err != nil {
		t.Errorf("slot not freed: %v", err)
	}
}

func TestUploadDedupesWithPut(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	s := openStore(t, dir, c, Options{})
	data := randBytes(12, 5000)
	put, err := s.Put(t.Context(), 1, bytes.NewReader(data), 5000, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ref(put.SHA256, 1); err != nil {
		t.Fatal(err)
	}
	up, err := s.CreateUpload(2, 5000, Meta{Name: "again"})
	if err != nil {
		t.Fatal(err)
	}
	writeChunk(t, s, 2, up.ID, data, 0, 5000)
	info, err := s.Complete(t.Context(), 2, up.ID)
	if err != nil || info.SHA256 != put.SHA256 || info.Name != "again" {
		t.Fatalf("complete: %+v, %v", info, err)
	}
	if n := blobFiles(t, dir); n != 1 {
		t.Errorf("%d blobs, want 1", n)
	}
	if n, _ := s.Refs(put.SHA256); n != 1 {
		t.Errorf("refs %d, want 1", n)
	}
	if got := dirEntries(t, filepath.Join(dir, "uploads")); len(got) != 1 || got[0] != up.ID+".done" {
		t.Errorf("uploads left: %v, want only the completion record", got)
	}
}

func TestUploadEmpty(t *testing.T) {
	s := openStore(t, t.TempDir(), newClock(), Options{})
	up, err := s.CreateUpload(1, 0, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Complete(t.Context(), 1, up.ID)
	if err != nil || info.SHA256 != sha(nil) || info.Size != 0 || info.MIME == "" {
		t.Fatalf("empty upload: %+v, %v", info, err)
	}
}
