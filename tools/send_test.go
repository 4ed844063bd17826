package tools

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/media"
	"github.com/gonets/gonets/media/mediahttp"
	"github.com/gonets/gonets/storage"
)

// send runs gonets send and returns the decoded ack line.
func send(t *testing.T, n *brokertest.Node, tok string, chat uint64, text ...string) ackLine {
	t.Helper()
	args := append(append([]string{"send"}, clientArgs(n, tok)...), "--chat", jsonNumber(chat))
	code, out, errOut := run(append(args, text...)...)
	if code != 0 {
		t.Fatalf("send: exit %d: %s", code, errOut)
	}
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("send printed %q, want one line", out)
	}
	var a ackLine
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("send printed %q: %v", out, err)
	}
	return a
}

func jsonNumber(u uint64) string {
	b, _ := json.Marshal(u)
	return string(b)
}

func TestSend(t *testing.T) {
	checkClientLeaks(t)
	n := brokertest.Start(t, brokertest.Options{})
	tok := n.Token(t, 1, 1)
	chat := createChat(t, n, tok, "--kind", "direct", "--member", "2")
	before := time.Now()
	a := send(t, n, tok, chat, "hello", "world")
	if a.Chat != chat || a.Seq != 1 || a.Duplicate {
		t.Fatalf("ack %+v", a)
	}
	at, err := time.Parse(time.RFC3339Nano, a.Time)
	if err != nil || at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("ack time %q: %v", a.Time, err)
	}
	if b := send(t, n, tok, chat, "again"); b.Seq != 2 {
		t.Fatalf("second ack %+v", b)
	}
	// The exact shape of the line is a contract.
	code, out, _ := run(append(append([]string{"send"}, clientArgs(n, tok)...), "--chat", jsonNumber(chat), "x")...)
	if code != 0 || !strings.HasPrefix(out, `{"chat":`+jsonNumber(chat)+`,"seq":3,"time":"`) || !strings.HasSuffix(out, `","duplicate":false}`+"\n") {
		t.Fatalf("send printed %q", out)
	}
}

// startMediaNode starts a test node whose public URL serves the media
// API (an httptest TLS server with the node's certificate), as gonets
// serve wires it.
func startMediaNode(t *testing.T) (*brokertest.Node, *media.Store) {
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
	var srv *mediahttp.Server
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { srv.ServeHTTP(w, r) }))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := media.Open(media.Options{Dir: filepath.Join(dir, "media"), Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var n *brokertest.Node
	srv, err = mediahttp.New(mediahttp.Options{
		Store: st,
		Authenticate: func(tok string) (uint64, error) {
			c, err := v.Verify(tok)
			return c.User, err
		},
		Access: func(ctx context.Context, user, chat, seq uint64) ([]byte, wire.MsgKind, error) {
			s := n.Store()
			if _, err := s.Member(storage.ChatID(chat), storage.UserID(user)); err != nil {
				return nil, 0, err
			}
			rec, err := s.Get(storage.ChatID(chat), seq)
			return rec.Body, wire.MsgKind(rec.Kind), err
		},
		PublicURL: ts.URL,
		Key:       bytes.Repeat([]byte{3}, 32),
		Log:       quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	n = brokertest.Start(t, brokertest.Options{Dir: dir, Broker: broker.Options{Attachments: srv, PublicURL: ts.URL}})
	return n, st
}

// tempFile writes b to name in a new temporary directory.
func tempFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.Set(x, y, color.NRGBA{uint8(x), uint8(y), 50, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestSendFile(t *testing.T) {
	checkClientLeaks(t)
	n, store := startMediaNode(t)
	tok := n.Token(t, 1, 1)
	chat := createChat(t, n, tok, "--kind", "direct", "--member", "2")
	pic, doc := testPNG(t, 400, 300), []byte("a plain document\n")
	a := send(t, n, tok, chat, "--file", tempFile(t, "p.png", pic), "--file", tempFile(t, "notes.txt", doc), "--", "the", "caption")
	if a.Seq != 1 || len(a.Attachments) != 2 {
		t.Fatalf("ack %+v", a)
	}
	p, d := a.Attachments[0], a.Attachments[1]
	if p.Type != "photo" || p.Name != "p.png" || p.MIME != "image/png" || p.SHA256 != sha256Hex(pic) || p.Width != 400 || p.Height != 300 || p.ThumbSHA256 == "" {
		t.Fatalf("photo %+v", p)
	}
	if d.Type != "file" || d.Name != "notes.txt" || d.Size != int64(len(doc)) || !strings.HasPrefix(d.MIME, "text/plain") {
		t.Fatalf("file %+v", d)
	}
	if refs, err := store.Refs(p.SHA256); err != nil || refs != 1 {
		t.Fatalf("photo refs %d %v", refs, err)
	}
	// A file alone, without text.
	if b := send(t, n, tok, chat, "--file", tempFile(t, "clip.mp4", []byte("not really a video"))); b.Attachments[0].Type != "video" {
		t.Fatalf("video %+v", b)
	}
	code, _, errOut := run(append(append([]string{"send"}, clientArgs(n, tok)...), "--chat", jsonNumber(chat), "--file", "/nonexistent/file")...)
	if code != 1 || !strings.Contains(errOut, "nonexistent") {
		t.Fatalf("missing file: exit %d, %s", code, errOut)
	}
	// A node without a public URL stores no files.
	plain := brokertest.Start(t, brokertest.Options{})
	ptok := plain.Token(t, 1, 1)
	pchat := createChat(t, plain, ptok, "--kind", "direct", "--member", "2")
	code, _, errOut = run(append(append([]string{"send"}, clientArgs(plain, ptok)...), "--chat", jsonNumber(pchat), "--file", tempFile(t, "x", doc))...)
	if code != 1 || !strings.Contains(errOut, "no public URL") {
		t.Fatalf("node without public URL: exit %d, %s", code, errOut)
	}
}
