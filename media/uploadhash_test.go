package media

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// hashPos returns how far upload id's hash has advanced in memory.
func hashPos(t *testing.T, s *Store, id string) int64 {
	t.Helper()
	s.umu.Lock()
	u := s.uploads[id]
	s.umu.Unlock()
	if u == nil {
		t.Fatalf("upload %s not open", id)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hash.pos
}

// TestUploadHashesInOrder: chunks sent in order are hashed as they are
// read, so neither the chunks nor Complete read anything back.
func TestUploadHashesInOrder(t *testing.T) {
	s := openStore(t, t.TempDir(), newClock(), Options{})
	const size, chunk = 3<<20 + 12345, 1 << 20
	data := randBytes(20, size)
	up, err := s.CreateUpload(1, size, Meta{Name: "a.bin", MIME: "application/octet-stream"})
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < size; off += chunk {
		writeChunk(t, s, 1, up.ID, data, off, min(off+chunk, size))
		if got := hashPos(t, s, up.ID); got != min(off+chunk, size) {
			t.Fatalf("after chunk at %d: hashed %d bytes", off, got)
		}
	}
	info, err := s.Complete(t.Context(), 1, up.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != sha(data) {
		t.Fatalf("sha %s, want %s", info.SHA256, sha(data))
	}
	if n := s.hashReadBytes.Load(); n != 0 {
		t.Errorf("read back %d bytes to hash an upload sent in order", n)
	}
}

// TestUploadHashCatchesUp: chunks that arrived ahead of the hash are
// read back once the prefix reaches them, and only those.
func TestUploadHashCatchesUp(t *testing.T) {
	s := openStore(t, t.TempDir(), newClock(), Options{})
	const size, chunk = 4 << 20, 1 << 20
	data := randBytes(21, size)
	up, err := s.CreateUpload(1, size, Meta{MIME: "application/octet-stream"})
	if err != nil {
		t.Fatal(err)
	}
	writeChunk(t, s, 1, up.ID, data, 2*chunk, 3*chunk)
	writeChunk(t, s, 1, up.ID, data, chunk, 2*chunk)
	if got := hashPos(t, s, up.ID); got != 0 || s.hashReadBytes.Load() != 0 {
		t.Fatalf("hash at %d, read back %d, before the first chunk", got, s.hashReadBytes.Load())
	}
	writeChunk(t, s, 1, up.ID, data, 0, chunk) // hashed as read; the next two read back
	if got, n := hashPos(t, s, up.ID), s.hashReadBytes.Load(); got != 3*chunk || n != 2*chunk {
		t.Fatalf("hash at %d, read back %d; want %d, %d", got, n, 3*chunk, 2*chunk)
	}
	writeChunk(t, s, 1, up.ID, data, 3*chunk, size)
	info, err := s.Complete(t.Context(), 1, up.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != sha(data) {
		t.Fatalf("sha %s, want %s", info.SHA256, sha(data))
	}
	if n := s.hashReadBytes.Load(); n != 2*chunk {
		t.Errorf("read back %d bytes in all, want %d", n, 2*chunk)
	}
}

// TestUploadHashSurvivesReopen: the hash state is recorded with the
// ranges, so a restarted node resumes it; a state file whose hash is
// unusable makes Complete hash the whole file instead.
func TestUploadHashSurvivesReopen(t *testing.T) {
	f := func(corrupt bool) {
		t.Helper()
		dir, c := t.TempDir(), newClock()
		s := openStore(t, dir, c, Options{})
		const size, chunk = 2 << 20, 512 << 10
		data := randBytes(22, size)
		up, err := s.CreateUpload(1, size, Meta{MIME: "application/octet-stream"})
		if err != nil {
			t.Fatal(err)
		}
		writeChunk(t, s, 1, up.ID, data, 0, chunk)
		writeChunk(t, s, 1, up.ID, data, chunk, 2*chunk)
		s.Close()
		statePath := filepath.Join(dir, "uploads", up.ID+".state")
		var st uploadState
		if err := readJSON(statePath, &st); err != nil {
			t.Fatal(err)
		}
		if st.HashPos != 2*chunk || len(st.Hash) == 0 {
			t.Fatalf("state file: hash_pos %d, %d bytes of hash state", st.HashPos, len(st.Hash))
		}
		if corrupt {
			st.Hash = []byte("not a sha256 state")
			b, _ := json.Marshal(st)
			if err := os.WriteFile(statePath, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		s2 := openStore(t, dir, c, Options{})
		want := int64(2 * chunk)
		if corrupt {
			want = 0
		}
		if got := hashPos(t, s2, up.ID); got != want {
			t.Fatalf("corrupt=%v: reopened with the hash at %d, want %d", corrupt, got, want)
		}
		writeChunk(t, s2, 1, up.ID, data, 2*chunk, size)
		info, err := s2.Complete(t.Context(), 1, up.ID)
		if err != nil {
			t.Fatal(err)
		}
		if info.SHA256 != sha(data) {
			t.Fatalf("corrupt=%v: sha %s, want %s", corrupt, info.SHA256, sha(data))
		}
		wantRead := int64(0)
		if corrupt {
			wantRead = size // caught up on the next chunk: the whole file
		}
		if n := s2.hashReadBytes.Load(); n != wantRead {
			t.Errorf("corrupt=%v: read back %d bytes, want %d", corrupt, n, wantRead)
		}
	}
	f(false)
	f(true)
}

// TestCopyBufSizedToRequest: a small request holds a small buffer, a
// large one at most maxCopyBuf (maxPutBuf for a single-request upload).
func TestCopyBufSizedToRequest(t *testing.T) {
	f := func(n int64, limit, want int) {
		t.Helper()
		bp := getCopyBuf(n, limit)
		defer putCopyBuf(bp)
		if len(*bp) != want {
			t.Errorf("getCopyBuf(%d, %d): %d bytes, want %d", n, limit, len(*bp), want)
		}
	}
	f(0, maxPutBuf, 16<<10)
	f(1000, maxPutBuf, 16<<10)
	f(200<<10, maxPutBuf, maxPutBuf)
	f(-1, maxPutBuf, maxPutBuf)
	f(100<<10, maxCopyBuf, maxCopyBuf)
	f(8<<20, maxCopyBuf, maxCopyBuf)
	f(-1, maxCopyBuf, maxCopyBuf)
	for _, c := range []struct {
		size int64
		want int
	}{{200 << 10, 16 << 10}, {smallPut, 16 << 10}, {smallPut + 1, maxPutBuf}, {-1, maxPutBuf}} {
		bp := putBuf(c.size)
		if len(*bp) != c.want {
			t.Errorf("putBuf(%d): %d bytes, want %d", c.size, len(*bp), c.want)
		}
		putCopyBuf(bp)
	}
}
