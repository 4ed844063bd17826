package mediahttp

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/media"
)

// stalled starts a request as user whose body sends one byte of the
// declared n and then nothing. The returned channel is closed once the
// request ends; cancel ends its body.
func (f *fixture) stalled(user uint64, method, url string, n int64, hdr map[string]string) (done chan struct{}, cancel func()) {
	pr, pw := io.Pipe()
	req, err := http.NewRequest(method, url, pr)
	if err != nil {
		f.t.Fatal(err)
	}
	req.ContentLength = n
	req.Header.Set("Authorization", fmt.Sprintf("Bearer tok-%d", user))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	done = make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := f.hc.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	go pw.Write([]byte{1}) // one byte, then nothing
	return done, func() { pw.CloseWithError(io.ErrUnexpectedEOF) }
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("still waiting for %s after 10 s", what)
		}
	}
}

func (s *Server) inFlight() int {
	s.uploading.mu.Lock()
	defer s.uploading.mu.Unlock()
	return s.uploading.n
}

// TestStalledUploadEnds: a body that stops sending ends its request after
// IdleTimeout, over HTTP/1.1 and HTTP/2, freeing its buffer, goroutine and
// upload slot; a stalled chunk no longer blocks its range, so the upload
// completes when the chunk is sent again.
func TestStalledUploadEnds(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			f := newFixtureWith(t, media.Options{}, h2, func(o *Options) { o.IdleTimeout = time.Second })
			var dones []chan struct{}
			for i := range 4 {
				done, cancel := f.stalled(uint64(100+i), "POST", f.ts.URL+"/media/upload", 8<<20, nil)
				t.Cleanup(cancel)
				dones = append(dones, done)
			}
			up := decode[UploadStatus](t)(f.req(1, "POST", "/media/uploads", strings.NewReader(`{"size":1000}`), nil))
			done, cancel := f.stalled(1, "PUT", up.URL, 1000, map[string]string{"Content-Range": "bytes 0-999/1000"})
			t.Cleanup(cancel)
			dones = append(dones, done)
			for i, d := range dones {
				select {
				case <-d:
				case <-time.After(10 * time.Second):
					t.Fatalf("stalled request %d still running after 10 s", i)
				}
			}
			waitFor(t, "the upload slots back", func() bool { return f.srv.inFlight() == 0 })
			data := randBytes(5, 1000)
			st := f.putChunks(1, up.URL, data, 1000, []int{0})
			if !st[0].Complete || st[0].File.SHA256 != shaOf(data) {
				t.Fatalf("the chunk sent again: %+v", st[0])
			}
		})
	}
}

// TestStalledDownloadEnds: a reader that stops taking a download ends its
// request after IdleTimeout, which closes the blob.
func TestStalledDownloadEnds(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			f := newFixtureWith(t, media.Options{}, h2, func(o *Options) { o.IdleTimeout = time.Second })
			data := bytes.Repeat([]byte("0123456789abcdef"), 2<<20) // 32 MiB, past any socket buffer
			file := decode[File](t)(f.req(1, "POST", "/media/upload", bytes.NewReader(data), nil))
			f.post(1, 1, []uint64{1}, &wire.Attachment{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: file.SHA256})
			req, _ := http.NewRequest("GET", f.ts.URL+"/media/files/"+file.SHA256+"?chat=1&seq=1", nil)
			req.Header.Set("Authorization", "Bearer tok-1")
			resp, err := f.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			// Read nothing: the handler must still return.
			waitFor(t, "the download's handler to return", func() bool { return f.active.Load() == 0 })
		})
	}
}

// TestUploadsInFlightCapped: upload requests in flight are capped per
// user and per node, with 429 too_many_uploads and Retry-After.
func TestUploadsInFlightCapped(t *testing.T) {
	f := newFixtureWith(t, media.Options{}, false, func(o *Options) {
		o.MaxUploadsInFlightPerUser, o.MaxUploadsInFlight = 2, 3
	})
	var cancels []func()
	var dones []chan struct{}
	stall := func(user uint64) {
		done, cancel := f.stalled(user, "POST", f.ts.URL+"/media/upload", 1000, nil)
		cancels = append(cancels, cancel)
		dones = append(dones, done)
	}
	stall(1)
	stall(1)
	waitFor(t, "two uploads in flight", func() bool { return f.srv.inFlight() == 2 })
	code, hdr, body := f.do(1, "POST", "/media/upload", strings.NewReader("x"), nil)
	wantErr(t, code, body, 429, CodeTooManyUploads)
	if hdr.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", hdr.Get("Retry-After"))
	}
	stall(2)
	waitFor(t, "three uploads in flight", func() bool { return f.srv.inFlight() == 3 })
	code, _, body = f.do(3, "POST", "/media/upload", strings.NewReader("x"), nil)
	wantErr(t, code, body, 429, CodeTooManyUploads)
	for _, c := range cancels {
		c()
	}
	for _, d := range dones {
		<-d
	}
	waitFor(t, "the upload slots back", func() bool { return f.srv.inFlight() == 0 })
	if file := decode[File](t)(f.req(1, "POST", "/media/upload", strings.NewReader("x"), nil)); file.Size != 1 {
		t.Fatalf("upload after the others ended: %+v", file)
	}
}

// TestReadDeadlineClearedAtEOF: once the whole body is read, the read
// deadline no longer runs, so it never cancels the request's context
// while the handler works on (waiting for a completion, making a
// thumbnail). Over HTTP/1.1 net/http clears it when it starts reading the
// connection in the background at the body's end; this guards that.
func TestReadDeadlineClearedAtEOF(t *testing.T) {
	s := &Server{opts: Options{IdleTimeout: 200 * time.Millisecond, Log: quietLog()}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.watchBody(w, r)
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		select {
		case <-r.Context().Done():
			http.Error(w, "canceled", 500)
		case <-time.After(time.Second):
			w.Write([]byte("ok"))
		}
	}))
	defer ts.Close()
	resp, err := ts.Client().Post(ts.URL, "text/plain", strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}
