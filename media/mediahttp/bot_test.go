package mediahttp

import (
	"bytes"
	"errors"
	"fmt"
	"mime/multipart"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/media"
)

func errUnknownFile() error { return broker.ErrUnknownFile }

func TestBotMultipart(t *testing.T) {
	f := newFixture(t, media.Options{})
	pic := pngBytes(t, 64, 32)
	url, tok, err := f.srv.NewBotUpload(5, "image")
	if err != nil {
		t.Fatal(err)
	}
	if url != f.ts.URL+"/media/bot/"+tok {
		t.Fatalf("url %s token %s", url, tok)
	}
	if _, err := f.srv.Resolve(5, tok); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Resolve before the upload: %v", err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("other", "x")
	fw, _ := mw.CreateFormFile("data", "0e9c-uuid")
	fw.Write(pic)
	mw.Close()
	code, resp := f.req(0, "POST", url, &body, map[string]string{"Content-Type": mw.FormDataContentType()})
	ans := decode[map[string]any](t)(code, resp)
	if ans["token"] != tok || fmt.Sprint(ans["photos"]) != fmt.Sprintf("map[%s:map[token:%s]]", tok, tok) {
		t.Fatalf("answer %s", resp)
	}
	att, err := f.srv.Resolve(5, tok)
	if err != nil {
		t.Fatal(err)
	}
	if att.Type != wire.AttachmentType_ATTACHMENT_TYPE_PHOTO || att.Sha256 != shaOf(pic) || att.Size != int64(len(pic)) ||
		att.Width != 64 || att.Height != 32 || att.ThumbSha256 == "" || att.Mime != "image/png" || att.Name != "0e9c-uuid" {
		t.Fatalf("resolved %v", att)
	}
	if _, err := f.srv.Resolve(6, tok); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("another user's token: %v", err)
	}
	if _, err := f.srv.Resolve(5, tok[:len(tok)-2]+"AA"); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("tampered token: %v", err)
	}
	code, _, resp = f.do(0, "POST", url[:len(url)-2]+"AA", strings.NewReader("x"), nil)
	wantErr(t, code, resp, 404, CodeUnknownUpload)
	var empty bytes.Buffer
	mw = multipart.NewWriter(&empty)
	mw.WriteField("other", "x")
	mw.Close()
	code, _, resp = f.do(0, "POST", url, &empty, map[string]string{"Content-Type": mw.FormDataContentType()})
	wantErr(t, code, resp, 400, CodeBadRequest)
	if _, _, err := f.srv.NewBotUpload(5, "sticker"); err == nil {
		t.Fatal("unknown type accepted")
	}
}

// botChunk posts data[lo:hi] to url as the MAX SDK does.
func (f *fixture) botChunk(url string, data []byte, lo, hi int) (int, []byte) {
	code, _, body := f.do(0, "POST", url, bytes.NewReader(data[lo:hi]), map[string]string{
		"Content-Range":    fmt.Sprintf("bytes %d-%d/%d", lo, hi-1, len(data)),
		"Content-Type":     "application/x-binary; charset=x-user-defined",
		"X-File-Name":      "clip.mp4",
		"X-Uploading-Mode": "parallel",
	})
	return code, body
}

func TestBotChunkedAndRestart(t *testing.T) {
	f := newFixture(t, media.Options{GCGrace: time.Hour})
	data := randBytes(8, 300_000)
	url, tok, err := f.srv.NewBotUpload(5, "video")
	if err != nil {
		t.Fatal(err)
	}
	const n = 64 << 10
	// The first two chunks in parallel (both may create the upload), then
	// the rest one after another, one of them twice (a retry).
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, body := f.botChunk(url, data, i*n, (i+1)*n); code != 200 {
				t.Errorf("chunk %d: %d %s", i, code, body)
			}
		}()
	}
	wg.Wait()
	if code, body := f.botChunk(url, data, 0, n); code != 200 {
		t.Fatalf("retried chunk: %d %s", code, body)
	}
	code, body := f.botChunk(url, data, 2*n, 3*n)
	if ans := decode[map[string]any](t)(code, body); ans["token"] != tok || ans["photos"] != nil {
		t.Fatalf("answer %s", body)
	}
	if _, err := f.srv.Resolve(5, tok); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Resolve mid-upload: %v", err)
	}
	// A restart mid-upload: the chunks go on where they were.
	f.open()
	code, body = f.botChunk(url, data, 3*n-10, 3*n+10)
	wantErr(t, code, body, 409, CodeOverlap)
	for lo := 3 * n; lo < len(data); lo += n {
		if code, body := f.botChunk(url, data, lo, min(lo+n, len(data))); code != 200 {
			t.Fatalf("chunk at %d after restart: %d %s", lo, code, body)
		}
	}
	code, body = f.botChunk(url, data[:1000], 0, 1000) // another total
	wantErr(t, code, body, 416, CodeBadRange)
	att, err := f.srv.Resolve(5, tok)
	if err != nil {
		t.Fatal(err)
	}
	if att.Type != wire.AttachmentType_ATTACHMENT_TYPE_VIDEO || att.Sha256 != shaOf(data) || att.Name != "clip.mp4" || att.Size != int64(len(data)) {
		t.Fatalf("resolved %v", att)
	}
	// The token still resolves after a restart, until GCGrace after its
	// completion.
	f.open()
	if att2, err := f.srv.Resolve(5, tok); err != nil || att2.Sha256 != att.Sha256 {
		t.Fatalf("Resolve after restart: %v %v", att2, err)
	}
	f.clock.Advance(time.Hour)
	f.srv.gcOnce()
	if _, err := f.srv.Resolve(5, tok); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("Resolve after the grace: %v", err)
	}
	f.open()
	if _, err := f.srv.Resolve(5, tok); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("expired token back after restart: %v", err)
	}
}

func TestBotWholeBody(t *testing.T) {
	f := newFixture(t, media.Options{})
	url, tok, err := f.srv.NewBotUpload(5, "file")
	if err != nil {
		t.Fatal(err)
	}
	code, body := f.req(0, "POST", url, strings.NewReader("whole file"), map[string]string{"X-File-Name": "w.txt"})
	if ans := decode[map[string]any](t)(code, body); ans["token"] != tok {
		t.Fatalf("answer %s", body)
	}
	att, err := f.srv.Resolve(5, tok)
	if err != nil || att.Name != "w.txt" || att.Size != 10 || att.Type != wire.AttachmentType_ATTACHMENT_TYPE_FILE {
		t.Fatalf("resolved %v %v", att, err)
	}
}
