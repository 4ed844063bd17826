package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
)

// ErrNoPublicURL is returned by UploadFile and Download when the node
// announced no public HTTPS listener (Welcome.public_url), so it stores
// no files.
var ErrNoPublicURL = errors.New("client: the node has no public URL for files")

// HTTPError is an answer of the node's media API other than success
// (docs/media.md): its HTTP status and stable code, such as too_large,
// quota, overlap, bad_range or not_found. Branch on Code.
type HTTPError struct {
	Status  int
	Code    string
	Message string
	// ID names an internal failure in the node's log.
	ID string
	// RetryAfter is the node's Retry-After (whole seconds) on a refusal
	// such as 429 too_many_uploads; 0 when it sent none.
	RetryAfter time.Duration
}

// Error returns "gonets: media: CODE (STATUS): message".
func (e *HTTPError) Error() string {
	return fmt.Sprintf("gonets: media: %s (%d): %s", e.Code, e.Status, e.Message)
}

// PublicURL returns the base URL of the node's public HTTPS listener, as
// of the latest connection, or "" when it has none.
func (c *Client) PublicURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimRight(c.welcome.GetPublicUrl(), "/")
}

// UploadOptions shape UploadFile. The zero value of every field means its
// default.
type UploadOptions struct {
	// Name is the file's name in the message. Default: the path's base
	// name.
	Name string
	// MIME is the file's type. Default: from the name's extension, else
	// sniffed by the node from its first bytes.
	MIME string
	// ChunkSize is the size of the chunks of a resumable upload; a file
	// smaller than it goes in one request. Default: 8 MiB.
	ChunkSize int64
	// Parallel is the chunks sent at once. Default: 4.
	Parallel int
	// RequestTimeout bounds each HTTP request (one chunk, or the whole of
	// a small file). Default: 2 minutes.
	RequestTimeout time.Duration
	// Attempts is how many times a request is sent before the upload
	// fails: a dropped or failed request (a network error, a 5xx answer)
	// is sent again after the client asked the node what it has. Default:
	// 5.
	Attempts int
	// BusyAttempts is how many times a request the node refuses as busy
	// (429, such as too_many_uploads: its cap on uploads in flight) is
	// sent before the upload fails, each after the node's Retry-After
	// (1 s when it gives none) with ±50% jitter. These do not count
	// against Attempts. Default: 20.
	BusyAttempts int
}

func (o *UploadOptions) fill(path string) {
	if o.Name == "" {
		o.Name = filepath.Base(path)
	}
	if o.MIME == "" {
		o.MIME = mime.TypeByExtension(strings.ToLower(filepath.Ext(o.Name)))
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = 8 << 20
	}
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 2 * time.Minute
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.BusyAttempts <= 0 {
		o.BusyAttempts = 20
	}
}

// AttachmentTypeOf is the attachment type of a MIME type: image/* is a
// photo, video/* a video, audio/* audio, anything else a file.
func AttachmentTypeOf(mimeType string) wire.AttachmentType {
	switch {
	case strings.HasPrefix(mimeType, "image/"):
		return wire.AttachmentType_ATTACHMENT_TYPE_PHOTO
	case strings.HasPrefix(mimeType, "video/"):
		return wire.AttachmentType_ATTACHMENT_TYPE_VIDEO
	case strings.HasPrefix(mimeType, "audio/"):
		return wire.AttachmentType_ATTACHMENT_TYPE_AUDIO
	}
	return wire.AttachmentType_ATTACHMENT_TYPE_FILE
}

// mediaFile is the node's description of a stored file.
type mediaFile struct {
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	Name        string `json:"name"`
	MIME        string `json:"mime"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	ThumbSHA256 string `json:"thumb_sha256"`
}

// uploadStatus is what the node has of a resumable upload.
type uploadStatus struct {
	ID       string     `json:"id"`
	URL      string     `json:"url"`
	Size     int64      `json:"size"`
	Received [][2]int64 `json:"received"`
	Complete bool       `json:"complete"`
	File     *mediaFile `json:"file"`
}

// has reports whether every byte of [lo, hi) was received.
func (s *uploadStatus) has(lo, hi int64) bool {
	for _, r := range s.Received {
		if r[0] <= lo && hi <= r[1] {
			return true
		}
	}
	return false
}

// UploadFile uploads the file at path to the node's public listener with
// the client's session token and returns the attachment to send (with
// SendContent): its type from the MIME type (AttachmentTypeOf), address,
// size, name and MIME type, and a picture's dimensions and thumbnail. A
// file smaller than ChunkSize goes in one request; a larger one in
// chunks, Parallel at once, and a chunk whose request fails is sent again
// once the client asked the node what it has, so a dropped connection
// costs at most the chunks in flight. The file is stored on the node but
// held only once a message references it (within the node's grace, 24 h
// by default). Uploads and downloads of one Client share its HTTP
// connections (HTTP/2 where the node speaks it), made on first use and
// closed by Close.
func (c *Client) UploadFile(ctx context.Context, path string, o UploadOptions) (*wire.Attachment, error) {
	base := c.PublicURL()
	if base == "" {
		return nil, ErrNoPublicURL
	}
	o.fill(path)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("client: upload: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("client: upload: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("client: upload %s: not a regular file", path)
	}
	hc, err := c.httpClient()
	if err != nil {
		return nil, err
	}
	u := &uploader{c: c, hc: hc, base: base, f: f, size: st.Size(), o: o}
	var mf *mediaFile
	if u.size < o.ChunkSize {
		mf, err = u.single(ctx)
	} else {
		mf, err = u.chunked(ctx)
	}
	if err != nil {
		return nil, err
	}
	typ := mf.MIME
	if typ == "" {
		typ = o.MIME
	}
	return &wire.Attachment{
		Type: AttachmentTypeOf(typ), Sha256: mf.SHA256, Size: mf.Size, Name: o.Name, Mime: typ,
		Width: uint32(mf.Width), Height: uint32(mf.Height), ThumbSha256: mf.ThumbSHA256,
	}, nil
}

// mediaHTTP is a Client's HTTP client for the node's media API, shared
// by its uploads and downloads so that they reuse connections (and TLS
// sessions) instead of a handshake each.
type mediaHTTP struct {
	mu     sync.Mutex   // guards the following
	hc     *http.Client // made on first use
	closed bool
}

// close closes the idle connections and refuses later use; requests in
// flight finish.
func (m *mediaHTTP) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.hc != nil {
		m.hc.CloseIdleConnections()
	}
}

// httpClient returns the client's HTTP client, made on first use: it
// verifies the node as the client's connections do (its TLS
// configuration, for HTTP/2 and 1.1). After Close it fails with
// ErrClosed.
func (c *Client) httpClient() (*http.Client, error) {
	c.media.mu.Lock()
	defer c.media.mu.Unlock()
	if c.media.closed {
		return nil, ErrClosed
	}
	if c.media.hc == nil {
		c.media.hc = c.newHTTPClient()
	}
	return c.media.hc, nil
}

// newHTTPClient makes the HTTP client of httpClient.
func (c *Client) newHTTPClient() *http.Client {
	cfg := c.dialer.tls.Clone()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	t := &http.Transport{
		TLSClientConfig:       cfg,
		ForceAttemptHTTP2:     true,
		DialContext:           (&net.Dialer{Timeout: c.opts.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   c.opts.DialTimeout,
		ResponseHeaderTimeout: 5 * time.Minute,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
		// Uploads ask first (Expect: 100-continue): a node refusing one
		// (429 at its cap, 413) answers before any of the body is sent,
		// so that no bytes cross only to be dropped and the node buffers
		// none of them.
		ExpectContinueTimeout: 2 * time.Second,
	}
	return &http.Client{Transport: t}
}

// uploader is one UploadFile.
type uploader struct {
	c    *Client
	hc   *http.Client
	base string
	f    *os.File
	size int64
	o    UploadOptions
}

// do sends one request with the session token, each send bounded by
// RequestTimeout, and decodes a JSON answer into out. body, when not
// nil, makes the n bytes of the body afresh for each send. A request the
// node refuses as busy (429) is sent again after its Retry-After, up to
// BusyAttempts sends.
func (u *uploader) do(ctx context.Context, method, url string, body func() io.Reader, n int64, hdr map[string]string, out any) error {
	for busy := 1; ; busy++ {
		err := u.send(ctx, method, url, body, n, hdr, out)
		var he *HTTPError
		if !errors.As(err, &he) || he.Status != http.StatusTooManyRequests || busy >= u.o.BusyAttempts {
			return err
		}
		if err := busyPause(ctx, he.RetryAfter); err != nil {
			return fmt.Errorf("client: media: %w (waiting after %w)", err, he)
		}
	}
}

// send sends a request once; see do.
func (u *uploader) send(ctx context.Context, method, url string, body func() io.Reader, n int64, hdr map[string]string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, u.o.RequestTimeout)
	defer cancel()
	var r io.Reader
	if body != nil {
		r = body()
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return fmt.Errorf("client: media: %w", err)
	}
	if body != nil {
		req.ContentLength = n
		if n == 0 {
			req.Body = http.NoBody
		} else {
			req.Header.Set("Expect", "100-continue")
		}
	}
	req.Header.Set("Authorization", "Bearer "+u.c.currentToken())
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return doJSON(u.hc, req, out)
}

// maxRetryAfter caps the wait a node's Retry-After asks for.
const maxRetryAfter = 30 * time.Second

// busyPause waits the node's Retry-After d (1 s when it gave none,
// capped at maxRetryAfter) with ±50% jitter, so that the uploads refused
// together do not come back together, or until ctx is done.
func busyPause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		d = time.Second
	}
	d = min(d, maxRetryAfter)
	d = d/2 + rand.N(d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// doJSON sends req and decodes a 2xx JSON answer into out, or returns an
// *HTTPError.
func doJSON(hc *http.Client, req *http.Request, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("client: media: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("client: media: read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		he := httpError(resp.StatusCode, b)
		he.RetryAfter = retryAfter(resp.Header)
		return he
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("client: media: answer: %w", err)
	}
	return nil
}

// retryAfter reads a Retry-After header in whole seconds: 0 when it is
// absent or not a number of seconds.
func retryAfter(h http.Header) time.Duration {
	v, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After")))
	if err != nil || v < 0 {
		return 0
	}
	return time.Duration(v) * time.Second
}

func httpError(status int, body []byte) *HTTPError {
	e := &HTTPError{Status: status}
	if json.Unmarshal(body, e) != nil || e.Code == "" {
		e.Code, e.Message = "http_"+strconv.Itoa(status), strings.TrimSpace(string(body))
	}
	return e
}

// retryable reports whether a request that failed with err is worth
// sending again: the network failed, or the node did (5xx), or a chunk
// met one still in flight (overlap, after a dropped request). A busy
// node's 429 is sent again by do itself.
func retryable(err error) bool {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status >= 500 || he.Code == "overlap" || he.Status == http.StatusUnauthorized
	}
	return !errors.Is(err, context.Canceled)
}

// pause waits before attempt (1, 2, ...): 100 ms doubling up to 5 s.
func pause(ctx context.Context, attempt int) error {
	d := min(100*time.Millisecond<<min(attempt-1, 6), 5*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// section makes readers of bytes [lo, hi) of the file, one per send: a
// request's body may still be read by the transport after its answer.
func (u *uploader) section(lo, hi int64) func() io.Reader {
	return func() io.Reader { return io.NewSectionReader(u.f, lo, hi-lo) }
}

func (u *uploader) fileHeaders() map[string]string {
	h := map[string]string{"X-File-Name": u.o.Name, "Content-Type": "application/octet-stream"}
	if u.o.MIME != "" {
		h["Content-Type"] = u.o.MIME
	}
	return h
}

// single uploads the file in one request, sent again on failure (the
// node deduplicates).
func (u *uploader) single(ctx context.Context) (*mediaFile, error) {
	var mf mediaFile
	var err error
	for attempt := 1; attempt <= u.o.Attempts; attempt++ {
		if attempt > 1 {
			if perr := pause(ctx, attempt-1); perr != nil {
				return nil, perr
			}
		}
		err = u.do(ctx, "POST", u.base+"/media/upload", u.section(0, u.size), u.size, u.fileHeaders(), &mf)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return &mf, nil
}

// chunked uploads the file resumably, Parallel chunks at once.
func (u *uploader) chunked(ctx context.Context) (*mediaFile, error) {
	create, _ := json.Marshal(map[string]any{"size": u.size, "name": u.o.Name, "mime": u.o.MIME})
	var st uploadStatus
	body := func() io.Reader { return bytes.NewReader(create) }
	if err := u.do(ctx, "POST", u.base+"/media/uploads", body, int64(len(create)), map[string]string{"Content-Type": "application/json"}, &st); err != nil {
		return nil, err
	}
	if st.Complete && st.File != nil {
		return st.File, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex // guards the following
		file    *mediaFile
		failure error
	)
	next := make(chan int64)
	var wg sync.WaitGroup
	for range u.o.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lo := range next {
				f, err := u.chunk(ctx, st.URL, lo, min(lo+u.o.ChunkSize, u.size))
				mu.Lock()
				if f != nil && file == nil {
					file = f
				}
				if err != nil && failure == nil {
					failure = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for lo := int64(0); lo < u.size; lo += u.o.ChunkSize {
		select {
		case next <- lo:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if failure != nil {
		return nil, failure
	}
	if file != nil {
		return file, nil
	}
	// Every chunk is in but the completing answer was lost (or came to
	// another request): ask.
	if err := u.do(ctx, "GET", st.URL, nil, 0, nil, &st); err != nil {
		return nil, err
	}
	if !st.Complete || st.File == nil {
		return nil, fmt.Errorf("client: upload %s: every chunk sent, the node has %v", st.ID, st.Received)
	}
	return st.File, nil
}

// chunk sends [lo, hi) of the file, again after a failure once the node
// says it lacks it. It returns the file when this chunk completed the
// upload.
func (u *uploader) chunk(ctx context.Context, url string, lo, hi int64) (*mediaFile, error) {
	hdr := map[string]string{
		"Content-Range": fmt.Sprintf("bytes %d-%d/%d", lo, hi-1, u.size),
		"Content-Type":  "application/octet-stream",
	}
	var err error
	for attempt := 1; attempt <= u.o.Attempts; attempt++ {
		if attempt > 1 {
			if perr := pause(ctx, attempt-1); perr != nil {
				return nil, perr
			}
			var st uploadStatus
			if serr := u.do(ctx, "GET", url, nil, 0, nil, &st); serr == nil {
				if st.Complete {
					return st.File, nil
				}
				if st.has(lo, hi) {
					return nil, nil
				}
			}
		}
		var st uploadStatus
		err = u.do(ctx, "PUT", url, u.section(lo, hi), hi-lo, hdr, &st)
		if err == nil {
			if st.Complete {
				return st.File, nil
			}
			return nil, nil
		}
		if !retryable(err) || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("client: upload chunk %d-%d: %w", lo, hi-1, err)
}

// downloadStall is how long a download may receive nothing before it is
// abandoned.
const downloadStall = time.Minute

// Download writes file sha, an attachment (or thumbnail) of message seq in
// chat, to w, checking its SHA-256. It fails with *HTTPError not_found
// when the message does not carry it or the user is not in the chat. A
// download that receives nothing for a minute fails.
func (c *Client) Download(ctx context.Context, chat, seq uint64, sha string, w io.Writer) error {
	base := c.PublicURL()
	if base == "" {
		return ErrNoPublicURL
	}
	hc, err := c.httpClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	u := fmt.Sprintf("%s/media/files/%s?chat=%d&seq=%d", base, url.PathEscape(sha), chat, seq)
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return fmt.Errorf("client: download: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.currentToken())
	stall := time.AfterFunc(downloadStall, cancel)
	defer stall.Stop()
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("client: download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return httpError(resp.StatusCode, b)
	}
	h := sha256.New()
	body := &stallReader{r: resp.Body, t: stall}
	if _, err := io.Copy(io.MultiWriter(w, h), body); err != nil {
		return fmt.Errorf("client: download: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return fmt.Errorf("client: download: content hashes to %s, want %s", got, sha)
	}
	return nil
}

// stallReader restarts t on each read that makes progress.
type stallReader struct {
	r io.Reader
	t *time.Timer
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.t.Reset(downloadStall)
	}
	return n, err
}

// SendContent sends a MEDIA message: content (text, attachments from
// UploadFile, keyboard) as its body. The node checks it and fills what it
// knows of each file; a file it does not hold is refused UNKNOWN_FILE.
func (c *Client) SendContent(ctx context.Context, chat uint64, content *wire.Content) (Ack, error) {
	body, err := proto.Marshal(content)
	if err != nil {
		return Ack{}, fmt.Errorf("client: content: %w", err)
	}
	return c.SendMsg(ctx, SendOptions{Chat: chat, Kind: wire.MsgKind_MSG_KIND_MEDIA, Body: body})
}
