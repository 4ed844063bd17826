package mediahttp

import (
	"io"
	"mime/multipart"
	"net/http"
	"runtime"
	"testing"

	"github.com/gonets/gonets/media"
)

// patternReader yields size bytes of a repeated pattern, sampling the
// heap every 8 MiB.
type patternReader struct {
	left, since int64
	peak        uint64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.left)]
	for i := range p {
		p[i] = byte(i * 7)
	}
	r.left -= int64(len(p))
	if r.since += int64(len(p)); r.since >= 8<<20 {
		r.since = 0
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		r.peak = max(r.peak, ms.HeapAlloc)
	}
	return len(p), nil
}

// TestBotMultipartHeapBounded: a 96 MiB multipart bot upload streams
// through the server (client and server share this process's heap): the
// heap grows by buffers, not by the file.
func TestBotMultipartHeapBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 96 MiB")
	}
	f := newFixture(t, media.Options{})
	url, tok, err := f.srv.NewBotUpload(5, "file")
	if err != nil {
		t.Fatal(err)
	}
	const size = 96 << 20
	src := &patternReader{left: size}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fw, err := mw.CreateFormFile("data", "big.bin")
		if err == nil {
			_, err = io.Copy(fw, src)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	req, _ := http.NewRequest("POST", url, pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := f.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	att, err := f.srv.Resolve(5, tok)
	if err != nil || att.Size != size {
		t.Fatalf("resolved %v %v", att, err)
	}
	growth := int64(src.peak) - int64(base)
	t.Logf("heap growth during a 96 MiB upload: %d KiB", growth>>10)
	if growth > 32<<20 {
		t.Fatalf("heap grew by %d MiB during a streamed upload", growth>>20)
	}
}
