package client_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/media"
	"github.com/gonets/gonets/media/mediahttp"
	"github.com/gonets/gonets/storage"
)

// mediaNode is a test node with a media store behind its public URL, an
// httptest TLS server with the node's certificate, as gonets serve wires
// it. drop, when set, decides which requests lose their connection;
// busy, which are refused 429 too_many_uploads (Retry-After: 1). conns
// counts the connections accepted.
type mediaNode struct {
	*brokertest.Node
	store *media.Store
	drop  func(r *http.Request) bool
	busy  func(r *http.Request) bool
	conns atomic.Int32
}

func startMediaNode(t *testing.T) *mediaNode {
	t.Helper()
	dir := t.TempDir()
	cert, _, err := nodecert.LoadOrCreate(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := token.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(token.Options{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	m := &mediaNode{}
	var srv *mediahttp.Server
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.drop != nil && m.drop(r) {
			io.CopyN(io.Discard, r.Body, 1000)
			panic(http.ErrAbortHandler) // the connection drops mid-request
		}
		if m.busy != nil && m.busy(r) {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"code":"too_many_uploads","message":"too many uploads in flight"}`)
			return
		}
		srv.ServeHTTP(w, r)
	}))
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			m.conns.Add(1)
		}
	}
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	m.store, err = media.Open(media.Options{Dir: filepath.Join(dir, "media"), Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.store.Close() })
	srv, err = mediahttp.New(mediahttp.Options{
		Store: m.store,
		Authenticate: func(tok string) (uint64, error) {
			c, err := v.Verify(tok)
			return c.User, err
		},
		Access: func(ctx context.Context, user, chat, seq uint64) ([]byte, wire.MsgKind, error) {
			st := m.Node.Store()
			if _, err := st.Member(storage.ChatID(chat), storage.UserID(user)); err != nil {
				return nil, 0, err
			}
			rec, err := st.Get(storage.ChatID(chat), seq)
			if err != nil {
				return nil, 0, err
			}
			return rec.Body, wire.MsgKind(rec.Kind), nil
		},
		PublicURL: ts.URL,
		Key:       bytes.Repeat([]byte{1}, 32),
		Log:       quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Node = brokertest.Start(t, brokertest.Options{Dir: dir, Broker: broker.Options{Attachments: srv, PublicURL: ts.URL}})
	return m
}

func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.Set(x, y, color.NRGBA{uint8(x), uint8(y), 200, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestUploadSendDownload: a picture in one request and a large file in
// parallel chunks (one of them dropped mid-request and sent again) go
// into a MEDIA message, which the node fills and the other member
// downloads from.
func TestUploadSendDownload(t *testing.T) {
	n := startMediaNode(t)
	alice := dial(t, n.Node, "", 1, 1, client.Options{SendOnly: true})
	bob := dial(t, n.Node, "", 2, 1, client.Options{SendOnly: true})
	if alice.PublicURL() == "" || !strings.HasPrefix(alice.PublicURL(), "https://127.0.0.1:") {
		t.Fatalf("PublicURL %q", alice.PublicURL())
	}
	ctx := ctxT(t)
	chat, err := alice.CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{2}, "")
	if err != nil {
		t.Fatal(err)
	}
	pic := pngOf(t, 640, 480)
	photo, err := alice.UploadFile(ctx, writeTemp(t, "cat.png", pic), client.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if photo.Type != wire.AttachmentType_ATTACHMENT_TYPE_PHOTO || photo.Sha256 != hexSHA(pic) || photo.Width != 640 ||
		photo.Height != 480 || photo.ThumbSha256 == "" || photo.Name != "cat.png" || photo.Mime != "image/png" {
		t.Fatalf("photo %v", photo)
	}

	big := make([]byte, 3<<20+12345)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	var puts atomic.Int32
	n.drop = func(r *http.Request) bool { return r.Method == "PUT" && puts.Add(1) == 3 }
	doc, err := alice.UploadFile(ctx, writeTemp(t, "data.bin", big), client.UploadOptions{ChunkSize: 256 << 10, Parallel: 4})
	n.drop = nil
	if err != nil {
		t.Fatal(err)
	}
	if doc.Type != wire.AttachmentType_ATTACHMENT_TYPE_FILE || doc.Sha256 != hexSHA(big) || doc.Size != int64(len(big)) {
		t.Fatalf("file %v", doc)
	}
	if puts.Load() <= 13 {
		t.Fatalf("%d chunk requests: the dropped one was not sent again", puts.Load())
	}

	doc.Size = 1 // the node sets it
	ack, err := alice.SendContent(ctx, chat.Chat, &wire.Content{Text: "look", Attachments: []*wire.Attachment{photo, doc}})
	if err != nil {
		t.Fatal(err)
	}
	if refs, _ := n.store.Refs(photo.Sha256); refs != 1 {
		t.Fatalf("photo refs %d", refs)
	}
	page, err := bob.History(ctx, chat.Chat, ack.Seq, 1)
	if err != nil || len(page.Messages) != 1 {
		t.Fatalf("history: %v %v", page, err)
	}
	var got wire.Content
	if err := proto.Unmarshal(page.Messages[0].Body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Text != "look" || len(got.Attachments) != 2 || got.Attachments[1].Size != int64(len(big)) {
		t.Fatalf("received %v", &got)
	}
	for _, want := range []struct {
		sha  string
		data []byte
	}{{photo.Sha256, pic}, {doc.Sha256, big}} {
		var b bytes.Buffer
		if err := bob.Download(ctx, chat.Chat, ack.Seq, want.sha, &b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.Bytes(), want.data) {
			t.Fatalf("downloaded %d bytes, want %d", b.Len(), len(want.data))
		}
	}
	var thumb bytes.Buffer
	if err := bob.Download(ctx, chat.Chat, ack.Seq, photo.ThumbSha256, &thumb); err != nil {
		t.Fatal(err)
	}
	if cfg, _, err := image.DecodeConfig(&thumb); err != nil || cfg.Width != 320 || cfg.Height != 240 {
		t.Fatalf("thumbnail %+v %v", cfg, err)
	}
	// Someone outside the chat reads nothing.
	eve := dial(t, n.Node, "", 3, 1, client.Options{SendOnly: true})
	var he *client.HTTPError
	if err := eve.Download(ctx, chat.Chat, ack.Seq, doc.Sha256, io.Discard); !errors.As(err, &he) || he.Status != 404 || he.Code != "not_found" {
		t.Fatalf("non-member download: %v", err)
	}
	// A file the node does not hold is refused.
	_, err = alice.SendContent(ctx, chat.Chat, &wire.Content{Attachments: []*wire.Attachment{{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: hexSHA([]byte("nothing"))}}})
	if err == nil {
		t.Fatal("unknown file sent")
	}
}

// TestUploadParallelSmall: several uploads at once from one client.
func TestUploadParallelSmall(t *testing.T) {
	n := startMediaNode(t)
	c := dial(t, n.Node, "", 1, 1, client.Options{SendOnly: true})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := bytes.Repeat([]byte{byte(i)}, 1000+i)
			a, err := c.UploadFile(ctxT(t), writeTemp(t, "f.txt", data), client.UploadOptions{})
			if err != nil || a.Sha256 != hexSHA(data) || a.Mime != "text/plain; charset=utf-8" {
				t.Errorf("upload %d: %v %v", i, a, err)
			}
		}()
	}
	wg.Wait()
}

// TestUploadRetriesBusy: a request the node refuses 429 too_many_uploads
// is sent again after its Retry-After, in one request or in chunks, and
// the upload succeeds; with BusyAttempts spent the 429 is returned.
func TestUploadRetriesBusy(t *testing.T) {
	n := startMediaNode(t)
	c := dial(t, n.Node, "", 1, 1, client.Options{SendOnly: true})
	ctx := ctxT(t)
	var refused atomic.Int32
	n.busy = func(r *http.Request) bool {
		return r.Method != "GET" && refused.Load() < 1 && refused.Add(1) == 1
	}
	small := bytes.Repeat([]byte("photo"), 4000)
	t0 := time.Now()
	a, err := c.UploadFile(ctx, writeTemp(t, "p.bin", small), client.UploadOptions{})
	if err != nil || a.Sha256 != hexSHA(small) {
		t.Fatalf("upload after a 429: %v, %v", a, err)
	}
	if refused.Load() != 1 || time.Since(t0) < 400*time.Millisecond {
		t.Fatalf("%d refusals, upload took %v: the Retry-After was not waited", refused.Load(), time.Since(t0))
	}

	var puts atomic.Int32
	n.busy = func(r *http.Request) bool { return r.Method == "PUT" && puts.Add(1) == 2 }
	big := bytes.Repeat([]byte("chunked file "), 100_000)
	a, err = c.UploadFile(ctx, writeTemp(t, "big.bin", big), client.UploadOptions{ChunkSize: 256 << 10, Parallel: 2})
	if err != nil || a.Sha256 != hexSHA(big) {
		t.Fatalf("chunked upload after a 429: %v, %v", a, err)
	}

	n.busy = func(r *http.Request) bool { return true }
	_, err = c.UploadFile(ctx, writeTemp(t, "q.bin", small[:100]), client.UploadOptions{BusyAttempts: 1})
	var he *client.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusTooManyRequests || he.Code != "too_many_uploads" || he.RetryAfter != time.Second {
		t.Fatalf("always busy: %v", err)
	}
	n.busy = nil
}

// TestUploadBusyHonoursContext: a cancelled context ends the wait for a
// busy node.
func TestUploadBusyHonoursContext(t *testing.T) {
	n := startMediaNode(t)
	c := dial(t, n.Node, "", 1, 1, client.Options{SendOnly: true})
	n.busy = func(r *http.Request) bool { return true }
	ctx, cancel := context.WithTimeout(ctxT(t), 200*time.Millisecond)
	defer cancel()
	_, err := c.UploadFile(ctx, writeTemp(t, "p.bin", []byte("photo")), client.UploadOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("busy node, cancelled context: %v", err)
	}
}

// TestUploadReusesConnections: a client's uploads and downloads share
// its HTTP connections; after Close it refuses to upload.
func TestUploadReusesConnections(t *testing.T) {
	n := startMediaNode(t)
	c := dial(t, n.Node, "", 1, 1, client.Options{SendOnly: true})
	ctx := ctxT(t)
	base := n.conns.Load()
	for i := range 5 {
		data := bytes.Repeat([]byte{byte(i)}, 5000+i)
		if _, err := c.UploadFile(ctx, writeTemp(t, "f.bin", data), client.UploadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.conns.Load() - base; got != 1 {
		t.Errorf("5 uploads one after another opened %d connections, want 1", got)
	}
	c.Close()
	if _, err := c.UploadFile(ctx, writeTemp(t, "g.bin", []byte("x")), client.UploadOptions{}); !errors.Is(err, client.ErrClosed) {
		t.Errorf("upload after Close: %v", err)
	}
}

// TestUploadExpectsContinue: uploads ask before sending their body, so
// that a node refusing one (429 at its cap) answers before any of it
// crosses.
func TestUploadExpectsContinue(t *testing.T) {
	n := startMediaNode(t)
	c := dial(t, n.Node, "", 1, 1, client.Options{SendOnly: true})
	var expect atomic.Value
	var once atomic.Bool
	n.busy = func(r *http.Request) bool {
		if r.Method == "POST" && once.CompareAndSwap(false, true) {
			expect.Store(r.Header.Get("Expect"))
			return true
		}
		return false
	}
	small := bytes.Repeat([]byte("photo"), 4000)
	if a, err := c.UploadFile(ctxT(t), writeTemp(t, "p.bin", small), client.UploadOptions{}); err != nil || a.Sha256 != hexSHA(small) {
		t.Fatalf("upload: %v, %v", a, err)
	}
	if got, _ := expect.Load().(string); !strings.EqualFold(got, "100-continue") {
		t.Fatalf("the refused upload carried Expect %q", got)
	}
}
