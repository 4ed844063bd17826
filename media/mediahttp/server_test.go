package mediahttp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/media"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

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

type msgKey struct{ chat, seq uint64 }

type message struct {
	kind    wire.MsgKind
	body    []byte
	members []uint64
}

// fixture is a Server on a real store behind an httptest TLS server on
// 127.0.0.1. Session tokens are "tok-<user>".
type fixture struct {
	t     *testing.T
	dir   string
	clock *clock
	mo    media.Options
	store *media.Store
	srv   *Server
	ts    *httptest.Server
	hc    *http.Client
	// active counts the requests in the server's handler.
	active atomic.Int64

	opt func(*Options)

	mu   sync.Mutex // guards msgs
	msgs map[msgKey]message
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newFixture(t *testing.T, mo media.Options) *fixture {
	t.Helper()
	return newFixtureWith(t, mo, false, nil)
}

// newFixtureWith is newFixture over HTTP/2 when h2 is set, with o
// changing the server's options.
func newFixtureWith(t *testing.T, mo media.Options, h2 bool, o func(*Options)) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), clock: &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, mo: mo, msgs: make(map[msgKey]message), opt: o}
	f.ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.active.Add(1)
		defer f.active.Add(-1)
		f.server().ServeHTTP(w, r)
	}))
	f.ts.EnableHTTP2 = h2
	f.ts.StartTLS()
	t.Cleanup(f.ts.Close)
	f.hc = f.ts.Client()
	f.open()
	return f
}

func (f *fixture) server() *Server {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.srv
}

// open opens (or reopens, as after a restart) the store and the server.
func (f *fixture) open() {
	f.t.Helper()
	if f.store != nil {
		f.store.Close()
	}
	mo := f.mo
	mo.Dir, mo.Now, mo.Log = f.dir, f.clock.Now, quietLog()
	st, err := media.Open(mo)
	if err != nil {
		f.t.Fatal(err)
	}
	so := Options{
		Store: st,
		Authenticate: func(tok string) (uint64, error) {
			var u uint64
			if _, err := fmt.Sscanf(tok, "tok-%d", &u); err != nil {
				return 0, errors.New("bad token")
			}
			return u, nil
		},
		Access:    f.access,
		PublicURL: f.ts.URL + "/",
		Key:       bytes.Repeat([]byte{7}, 32),
		Now:       f.clock.Now,
		Log:       quietLog(),
	}
	if f.opt != nil {
		f.opt(&so)
	}
	srv, err := New(so)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.store, f.srv = st, srv
	f.mu.Unlock()
	f.t.Cleanup(func() { st.Close() })
}

func (f *fixture) access(ctx context.Context, user, chat, seq uint64) ([]byte, wire.MsgKind, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.msgs[msgKey{chat, seq}]
	if !ok {
		return nil, 0, errors.New("no such message")
	}
	for _, u := range m.members {
		if u == user {
			return m.body, m.kind, nil
		}
	}
	return nil, 0, errors.New("not a member")
}

// post stores a MEDIA message carrying atts in chat with members.
func (f *fixture) post(chat, seq uint64, members []uint64, atts ...*wire.Attachment) {
	b, err := proto.Marshal(&wire.Content{Text: "hi", Attachments: atts})
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.msgs[msgKey{chat, seq}] = message{kind: wire.MsgKind_MSG_KIND_MEDIA, body: b, members: members}
	f.mu.Unlock()
}

// do sends a request as user (0: without Authorization) and returns the
// status and body.
func (f *fixture) do(user uint64, method, path string, body io.Reader, hdr map[string]string) (int, http.Header, []byte) {
	f.t.Helper()
	url := path
	if !strings.HasPrefix(path, "http") {
		url = f.ts.URL + path
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if user != 0 {
		req.Header.Set("Authorization", fmt.Sprintf("Bearer tok-%d", user))
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// wantErr checks an error answer's status and code.
func wantErr(t *testing.T, status int, body []byte, wantStatus int, code string) {
	t.Helper()
	var e Error
	json.Unmarshal(body, &e)
	if status != wantStatus || e.Code != code {
		t.Fatalf("got %d %s, want %d %s", status, body, wantStatus, code)
	}
}

// decode returns a function that decodes a successful answer as T.
func decode[T any](t *testing.T) func(status int, body []byte) T {
	return func(status int, body []byte) T {
		t.Helper()
		var v T
		if status/100 != 2 {
			t.Fatalf("status %d: %s", status, body)
		}
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return v
	}
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func pngBytes(t *testing.T, w, h int) []byte {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.Set(x, y, color.NRGBA{uint8(x), uint8(y), 90, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSingleUpload(t *testing.T) {
	f := newFixture(t, media.Options{})
	data := randBytes(1, 100_000)
	st, body := f.req(1, "POST", "/media/upload?name=a.bin", bytes.NewReader(data), map[string]string{"Content-Type": "application/octet-stream"})
	file := decode[File](t)(st, body)
	if file.SHA256 != shaOf(data) || file.Size != int64(len(data)) || file.Name != "a.bin" || file.MIME != "application/octet-stream" {
		t.Fatalf("file %+v", file)
	}
	st, body = f.req(1, "POST", "/media/upload", strings.NewReader("hello, text"), map[string]string{"X-File-Name": "dir/n.txt", "Content-Type": "text/plain; charset=utf-8"})
	if file := decode[File](t)(st, body); file.Name != "n.txt" || file.MIME != "text/plain; charset=utf-8" {
		t.Fatalf("named file %+v", file)
	}
	st, _, body = f.do(0, "POST", "/media/upload", bytes.NewReader(data), nil)
	wantErr(t, st, body, 401, CodeUnauthorized)
	st, _, body = f.do(1, "POST", "/media/upload", io.NopCloser(bytes.NewReader(data)), nil) // chunked encoding
	wantErr(t, st, body, 411, CodeLengthRequired)
	st, _, body = f.do(1, "GET", "/media/nothing", nil, nil)
	wantErr(t, st, body, 404, CodeNotFound)
}

func TestTooLarge(t *testing.T) {
	f := newFixture(t, media.Options{MaxFile: 10_000, MaxChunk: 1000})
	st, _, body := f.do(1, "POST", "/media/upload", bytes.NewReader(randBytes(1, 10_001)), nil)
	wantErr(t, st, body, 413, CodeTooLarge)
	st, _, body = f.do(1, "POST", "/media/uploads", strings.NewReader(`{"size":10001}`), nil)
	wantErr(t, st, body, 413, CodeTooLarge)
	up := decode[UploadStatus](t)(f.req(1, "POST", "/media/uploads", strings.NewReader(`{"size":5000,"name":"x"}`), nil))
	st, _, body = f.do(1, "PUT", up.URL, bytes.NewReader(randBytes(2, 1001)), map[string]string{"Content-Range": "bytes 0-1000/5000"})
	wantErr(t, st, body, 413, CodeTooLarge)
	st, _, body = f.do(1, "POST", "/media/uploads", strings.NewReader(`{"size":5, "bogus":1}`), nil)
	wantErr(t, st, body, 400, CodeBadRequest)
}

// putChunks sends data's chunks of size n to up, in the order of idx, in
// parallel, and returns the answers.
func (f *fixture) putChunks(user uint64, url string, data []byte, n int, idx []int) []UploadStatus {
	var wg sync.WaitGroup
	out := make([]UploadStatus, len(idx))
	errs := make([]error, len(idx))
	sem := make(chan struct{}, 8) // Options.MaxUploadsInFlightPerUser's default
	for k, i := range idx {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			lo, hi := i*n, min((i+1)*n, len(data))
			req, _ := http.NewRequest("PUT", url, bytes.NewReader(data[lo:hi]))
			req.Header.Set("Authorization", fmt.Sprintf("Bearer tok-%d", user))
			req.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", lo, hi-1, len(data)))
			resp, err := f.hc.Do(req)
			if err != nil {
				errs[k] = err
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				errs[k] = fmt.Errorf("chunk %d: %d %s", i, resp.StatusCode, b)
				return
			}
			errs[k] = json.Unmarshal(b, &out[k])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.t.Fatal(err)
	}
	return out
}

func TestChunkedParallelOutOfOrder(t *testing.T) {
	f := newFixture(t, media.Options{})
	data := randBytes(3, 1_000_000)
	up := decode[UploadStatus](t)(f.req(1, "POST", "/media/uploads", strings.NewReader(`{"size":1000000,"name":"big.bin","mime":"application/x-test"}`), nil))
	if !strings.HasPrefix(up.URL, f.ts.URL+"/media/uploads/") || up.Size != 1_000_000 || len(up.Received) != 0 || up.Complete {
		t.Fatalf("created %+v", up)
	}
	const n = 64 << 10
	chunks := (len(data) + n - 1) / n
	idx := rand.Perm(chunks)
	answers := f.putChunks(1, up.URL, data, n, idx)
	var file *File
	for _, a := range answers {
		if a.Complete {
			if file != nil && *file != *a.File {
				t.Fatalf("two completions differ: %+v %+v", file, a.File)
			}
			file = a.File
		}
	}
	if file == nil || file.SHA256 != shaOf(data) || file.Name != "big.bin" || file.MIME != "application/x-test" {
		t.Fatalf("no or a wrong completion: %+v", file)
	}
	// The status after completion still says so (a client whose last
	// answer was lost), and a retried chunk is answered the same.
	st := decode[UploadStatus](t)(f.req(1, "GET", up.URL, nil, nil))
	if !st.Complete || st.File.SHA256 != file.SHA256 {
		t.Fatalf("status after completion: %+v", st)
	}
	if st := f.putChunks(1, up.URL, data, n, []int{0}); !st[0].Complete {
		t.Fatalf("retried chunk after completion: %+v", st[0])
	}
	// Another user learns nothing of it.
	code, _, body := f.do(2, "GET", up.URL, nil, nil)
	wantErr(t, code, body, 404, CodeUnknownUpload)
}

// failingReader yields n bytes, then an error: a connection dropped
// mid-chunk.
type failingReader struct {
	r io.Reader
	n int
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("dropped")
	}
	k, err := r.r.Read(p[:min(len(p), r.n)])
	r.n -= k
	return k, err
}

func TestResumeAfterDroppedChunk(t *testing.T) {
	f := newFixture(t, media.Options{})
	data := randBytes(4, 300_000)
	up := decode[UploadStatus](t)(f.req(1, "POST", "/media/uploads", strings.NewReader(`{"size":300000}`), nil))
	if code, body := f.req(1, "PUT", up.URL, bytes.NewReader(data[:100_000]), map[string]string{"Content-Range": "bytes 0-99999/300000"}); code != 200 {
		t.Fatalf("first chunk: %d %s", code, body)
	}
	req, _ := http.NewRequest("PUT", up.URL, &failingReader{r: bytes.NewReader(data[100_000:200_000]), n: 50_000})
	req.ContentLength = 100_000
	req.Header.Set("Authorization", "Bearer tok-1")
	req.Header.Set("Content-Range", "bytes 100000-199999/300000")
	if resp, err := f.hc.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("dropped chunk was answered")
	}
	// The store learns of the drop when the server reads the short body;
	// wait until the half-written chunk is no longer in flight.
	var st UploadStatus
	for deadline := time.Now().Add(5 * time.Second); ; {
		st = decode[UploadStatus](t)(f.req(1, "GET", up.URL, nil, nil))
		code, _, _ := f.do(1, "PUT", up.URL, bytes.NewReader(data[100_000:100_001]), map[string]string{"Content-Range": "bytes 100000-100000/300000"})
		if code == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(st.Received) != 1 || st.Received[0] != [2]int64{0, 100_000} {
		t.Fatalf("status after the drop: %+v", st.Received)
	}
	// Resume: send what the node lacks.
	rest := data[100_001:]
	req, _ = http.NewRequest("PUT", up.URL, bytes.NewReader(rest))
	req.Header.Set("Authorization", "Bearer tok-1")
	req.Header.Set("Content-Range", fmt.Sprintf("bytes 100001-%d/300000", len(data)-1))
	resp, err := f.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if done := decode[UploadStatus](t)(resp.StatusCode, b); !done.Complete || done.File.SHA256 != shaOf(data) {
		t.Fatalf("resumed upload: %+v", done)
	}
}

func TestChunkErrors(t *testing.T) {
	f := newFixture(t, media.Options{})
	data := randBytes(5, 1000)
	up := decode[UploadStatus](t)(f.req(1, "POST", "/media/uploads", strings.NewReader(`{"size":1000}`), nil))
	put := func(lo, hi int, cr string) (int, []byte) {
		t.Helper()
		if cr == "" {
			cr = fmt.Sprintf("bytes %d-%d/1000", lo, hi-1)
		}
		code, _, body := f.do(1, "PUT", up.URL, bytes.NewReader(data[lo:hi]), map[string]string{"Content-Range": cr})
		return code, body
	}
	if code, body := put(0, 100, ""); code != 200 {
		t.Fatalf("first chunk: %d %s", code, body)
	}
	code, body := put(50, 150, "")
	wantErr(t, code, body, 409, CodeOverlap)
	if code, body := put(0, 100, ""); code != 200 { // a retry
		t.Fatalf("retried chunk: %d %s", code, body)
	}
	code, body = put(200, 300, "bytes 299-200/1000")
	wantErr(t, code, body, 416, CodeBadRange)
	code, body = put(200, 300, "bytes 200-299/2000")
	wantErr(t, code, body, 416, CodeBadRange)
	code, body = put(200, 300, "bytes=200-299/1000")
	wantErr(t, code, body, 416, CodeBadRange)
	code, body = put(200, 300, "bytes 200-298/1000")
	wantErr(t, code, body, 400, CodeSizeMismatch)
	code, _, body = f.do(1, "PUT", "/media/uploads/nosuchupload0000000000", bytes.NewReader(data[:10]), map[string]string{"Content-Range": "bytes 0-9/1000"})
	wantErr(t, code, body, 404, CodeUnknownUpload)
	code, _, _ = f.do(1, "DELETE", up.URL, nil, nil)
	if code != 204 {
		t.Fatalf("abort: %d", code)
	}
	code, body = put(100, 200, "")
	wantErr(t, code, body, 404, CodeUnknownUpload)
}

func TestDownload(t *testing.T) {
	f := newFixture(t, media.Options{})
	data := randBytes(6, 50_000)
	file := decode[File](t)(f.req(1, "POST", "/media/upload", bytes.NewReader(data), map[string]string{"X-File-Name": "report.pdf", "Content-Type": "application/pdf"}))
	other := decode[File](t)(f.req(1, "POST", "/media/upload", strings.NewReader("other"), nil))
	f.post(10, 1, []uint64{1, 2}, &wire.Attachment{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: file.SHA256, Name: "report.pdf", Mime: "application/pdf"})
	f.post(10, 2, []uint64{1, 2}, &wire.Attachment{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: other.SHA256})
	path := "/media/files/" + file.SHA256 + "?chat=10&seq=1"

	code, h, body := f.do(2, "GET", path, nil, nil)
	if code != 200 || !bytes.Equal(body, data) || h.Get("ETag") != `"`+file.SHA256+`"` || h.Get("Content-Type") != "application/pdf" ||
		h.Get("Content-Disposition") != `attachment; filename=report.pdf` {
		t.Fatalf("download: %d %v, %d bytes", code, h, len(body))
	}
	code, h, body = f.do(2, "GET", path, nil, map[string]string{"Range": "bytes=1000-1999"})
	if code != 206 || !bytes.Equal(body, data[1000:2000]) || h.Get("Content-Range") != "bytes 1000-1999/50000" {
		t.Fatalf("range: %d %v", code, h)
	}
	if code, _, _ := f.do(2, "GET", path, nil, map[string]string{"If-None-Match": `"` + file.SHA256 + `"`}); code != 304 {
		t.Fatalf("If-None-Match: %d", code)
	}
	if code, h, body := f.do(2, "HEAD", path, nil, nil); code != 200 || len(body) != 0 || h.Get("Content-Length") != "50000" {
		t.Fatalf("HEAD: %d %v", code, h)
	}
	// Refusals all read 404: a non-member, a message that does not carry
	// the file, a missing message, an unknown file.
	for _, c := range []struct {
		user uint64
		path string
	}{
		{3, path},
		{1, "/media/files/" + file.SHA256 + "?chat=10&seq=2"},
		{1, "/media/files/" + file.SHA256 + "?chat=10&seq=9"},
		{1, "/media/files/" + shaOf([]byte("nope")) + "?chat=10&seq=1"},
	} {
		code, _, body := f.do(c.user, "GET", c.path, nil, nil)
		wantErr(t, code, body, 404, CodeNotFound)
	}
	code, _, body = f.do(1, "GET", "/media/files/"+file.SHA256, nil, nil)
	wantErr(t, code, body, 400, CodeBadRequest)
	code, _, body = f.do(0, "GET", path, nil, nil)
	wantErr(t, code, body, 401, CodeUnauthorized)
}

func TestSignedURL(t *testing.T) {
	f := newFixture(t, media.Options{})
	data := randBytes(7, 5000)
	file := decode[File](t)(f.req(1, "POST", "/media/upload", bytes.NewReader(data), nil))
	u := f.srv.SignedURL(10, 1, file.SHA256, time.Minute)
	if !strings.HasPrefix(u, f.ts.URL+"/media/f/"+file.SHA256+"?") {
		t.Fatalf("signed URL %s", u)
	}
	if code, _, body := f.do(0, "GET", u, nil, nil); code != 200 || !bytes.Equal(body, data) {
		t.Fatalf("signed download: %d", code)
	}
	if code, _, body := f.do(0, "GET", u, nil, map[string]string{"Range": "bytes=0-9"}); code != 206 || !bytes.Equal(body, data[:10]) {
		t.Fatalf("signed range: %d", code)
	}
	for _, bad := range []string{
		strings.Replace(u, "seq=1", "seq=2", 1),
		strings.Replace(u, "chat=10", "chat=11", 1),
		strings.Replace(u, file.SHA256, shaOf([]byte("x")), 1),
		u[:len(u)-2] + "AA",
	} {
		code, _, body := f.do(0, "GET", bad, nil, nil)
		wantErr(t, code, body, 403, CodeBadSignature)
	}
	f.clock.Advance(time.Minute + 2*time.Second)
	code, _, body := f.do(0, "GET", u, nil, nil)
	wantErr(t, code, body, 403, CodeExpired)
}

func TestPicture(t *testing.T) {
	f := newFixture(t, media.Options{})
	pic := pngBytes(t, 800, 400)
	file := decode[File](t)(f.req(1, "POST", "/media/upload", bytes.NewReader(pic), map[string]string{"X-File-Name": "p.png"}))
	if file.MIME != "image/png" || file.Width != 800 || file.Height != 400 || file.ThumbSHA256 == "" {
		t.Fatalf("picture: %+v", file)
	}
	f.post(10, 1, []uint64{1}, &wire.Attachment{Type: wire.AttachmentType_ATTACHMENT_TYPE_PHOTO, Sha256: file.SHA256, ThumbSha256: file.ThumbSHA256})
	code, h, body := f.do(1, "GET", "/media/files/"+file.ThumbSHA256+"?chat=10&seq=1", nil, nil)
	if code != 200 || h.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("thumbnail: %d %v", code, h)
	}
	thumb, _, err := image.DecodeConfig(bytes.NewReader(body))
	if err != nil || thumb.Width != 320 || thumb.Height != 160 {
		t.Fatalf("thumbnail %+v %v", thumb, err)
	}
	// The same picture again reuses what was recorded.
	again := decode[File](t)(f.req(2, "POST", "/media/upload", bytes.NewReader(pic), nil))
	if again.ThumbSHA256 != file.ThumbSHA256 || again.Width != 800 {
		t.Fatalf("again: %+v", again)
	}
	// A file that claims to be a picture and is not stays a plain file.
	bad := decode[File](t)(f.req(1, "POST", "/media/upload", strings.NewReader("not a png"), map[string]string{"Content-Type": "image/png"}))
	if bad.Width != 0 || bad.ThumbSHA256 != "" || bad.MIME != "image/png" {
		t.Fatalf("bad picture: %+v", bad)
	}
}

func TestAttachRelease(t *testing.T) {
	f := newFixture(t, media.Options{})
	pic := pngBytes(t, 100, 50)
	pf := decode[File](t)(f.req(1, "POST", "/media/upload", bytes.NewReader(pic), nil))
	ff := decode[File](t)(f.req(1, "POST", "/media/upload", strings.NewReader("some document"), map[string]string{"X-File-Name": "d.txt"}))
	refs := func(sha string) int64 {
		t.Helper()
		n, err := f.store.Refs(sha)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	atts := []*wire.Attachment{
		{Type: wire.AttachmentType_ATTACHMENT_TYPE_PHOTO, Sha256: pf.SHA256, Size: 1, Width: 9, ThumbSha256: "forged"},
		{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: ff.SHA256, ThumbSha256: pf.SHA256},
	}
	if err := f.srv.Attach(t.Context(), 1, atts); err != nil {
		t.Fatal(err)
	}
	a, b := atts[0], atts[1]
	if a.Size != int64(len(pic)) || a.Width != 100 || a.Height != 50 || a.ThumbSha256 != pf.ThumbSHA256 || a.Mime != "image/png" {
		t.Fatalf("photo filled: %v", a)
	}
	if b.Size != 13 || b.ThumbSha256 != "" || b.Name != "d.txt" {
		t.Fatalf("file filled: %v", b)
	}
	if refs(pf.SHA256) != 1 || refs(pf.ThumbSHA256) != 1 || refs(ff.SHA256) != 1 {
		t.Fatal("Attach took the wrong references")
	}
	// A missing file: an error wrapping ErrUnknownFile, no reference kept.
	missing := []*wire.Attachment{
		{Type: wire.AttachmentType_ATTACHMENT_TYPE_PHOTO, Sha256: pf.SHA256},
		{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: shaOf([]byte("absent"))},
	}
	err := f.srv.Attach(t.Context(), 1, missing)
	if !errors.Is(err, errUnknownFile()) {
		t.Fatalf("missing file: %v", err)
	}
	if err := f.srv.Attach(t.Context(), 1, []*wire.Attachment{{Sha256: "../../etc/passwd"}}); !errors.Is(err, errUnknownFile()) {
		t.Fatalf("bad address: %v", err)
	}
	if refs(pf.SHA256) != 1 || refs(pf.ThumbSHA256) != 1 {
		t.Fatal("a failed Attach kept references")
	}
	f.srv.Release(atts)
	if refs(pf.SHA256) != 0 || refs(pf.ThumbSHA256) != 0 || refs(ff.SHA256) != 0 {
		t.Fatal("Release left references")
	}
}

// req is do without the headers of the answer.
func (f *fixture) req(user uint64, method, path string, body io.Reader, hdr map[string]string) (int, []byte) {
	f.t.Helper()
	code, _, b := f.do(user, method, path, body, hdr)
	return code, b
}

// TestResumeAfterRestart: the node restarts mid-upload; the client asks
// what it has and sends the rest.
func TestResumeAfterRestart(t *testing.T) {
	f := newFixture(t, media.Options{})
	data := randBytes(9, 200_000)
	up := decode[UploadStatus](t)(f.req(1, "POST", "/media/uploads", strings.NewReader(`{"size":200000,"name":"r.bin"}`), nil))
	f.putChunks(1, up.URL, data, 50_000, []int{2, 0})
	f.open()
	st := decode[UploadStatus](t)(f.req(1, "GET", up.URL, nil, nil))
	if len(st.Received) != 2 || st.Received[0] != [2]int64{0, 50_000} || st.Received[1] != [2]int64{100_000, 150_000} {
		t.Fatalf("after restart: %+v", st.Received)
	}
	var file *File
	for _, a := range f.putChunks(1, up.URL, data, 50_000, []int{1, 3}) {
		if a.Complete {
			file = a.File
		}
	}
	if file == nil || file.SHA256 != shaOf(data) || file.Name != "r.bin" {
		t.Fatalf("resumed: %+v", file)
	}
	// A client whose last answer was lost to a restart learns the upload
	// completed, from its status or a retried chunk.
	f.open()
	st = decode[UploadStatus](t)(f.req(1, "GET", up.URL, nil, nil))
	if !st.Complete || st.File == nil || st.File.SHA256 != file.SHA256 {
		t.Fatalf("status after completion and a restart: %+v", st)
	}
	if a := f.putChunks(1, up.URL, data, 50_000, []int{3}); !a[0].Complete {
		t.Fatalf("retried chunk after completion and a restart: %+v", a[0])
	}
	if err := f.attach(1, file.SHA256); err != nil {
		t.Fatal(err)
	}
	code, _, body := f.do(2, "GET", up.URL, nil, nil)
	wantErr(t, code, body, 404, CodeUnknownUpload)
}

// TestRunGC: the GC loop collects an unreferenced file after its grace
// and returns when its context ends.
func TestRunGC(t *testing.T) {
	f := newFixture(t, media.Options{GCGrace: time.Minute})
	file := decode[File](t)(f.req(1, "POST", "/media/upload", strings.NewReader("short-lived"), nil))
	f.clock.Advance(time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.srv.RunGC(ctx, time.Millisecond)
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := f.store.Stat(file.SHA256); errors.Is(err, media.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("GC did not collect the file")
		}
	}
	cancel()
	<-done
}

func TestQuotaAndEmpty(t *testing.T) {
	f := newFixture(t, media.Options{MaxPerUserDay: 1000, MaxUploadsPerUser: 1})
	code, body := f.req(1, "POST", "/media/upload", bytes.NewReader(randBytes(1, 1001)), nil)
	wantErr(t, code, body, 429, CodeQuota)
	// An empty file is complete as soon as it is created.
	up := decode[UploadStatus](t)(f.req(1, "POST", "/media/uploads", strings.NewReader(`{"size":0,"name":"empty"}`), nil))
	if !up.Complete || up.File == nil || up.File.Size != 0 || up.File.SHA256 != shaOf(nil) {
		t.Fatalf("empty upload: %+v", up)
	}
	if file := decode[File](t)(f.req(1, "POST", "/media/upload", bytes.NewReader(nil), nil)); file.SHA256 != shaOf(nil) {
		t.Fatalf("empty single upload: %+v", file)
	}
	decode[UploadStatus](t)(f.req(1, "POST", "/media/uploads", strings.NewReader(`{"size":10}`), nil))
	code, body = f.req(1, "POST", "/media/uploads", strings.NewReader(`{"size":10}`), nil)
	wantErr(t, code, body, 429, CodeTooManyUploads)
}
