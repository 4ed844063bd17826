package mediahttp

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/media"
)

// FuzzChunk sends chunks with arbitrary Content-Range headers and bodies
// to an upload: the server answers each with a client error or success,
// never a 5xx or a panic, and what it reports received stays within the
// file.
func FuzzChunk(f *testing.F) {
	for _, s := range []string{"bytes 0-9/100", "bytes 90-99/100", "bytes 0-99/*", "bytes 5-4/100", "bytes -1-5/100",
		"bytes 0-9/99", "bytes 0-999999999999999999/100", "bytes=0-9/100", "", "bytes 10-19/100 "} {
		f.Add(s, []byte("0123456789"))
	}
	srv := newBareServer(f, media.Options{MaxChunk: 64})
	f.Fuzz(func(t *testing.T, cr string, body []byte) {
		up, err := srv.store.CreateUpload(1, 100, media.Meta{})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.store.Abort(1, up.ID)
		req := httptest.NewRequest("PUT", "/media/uploads/"+up.ID, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok-1")
		req.Header.Set("Content-Range", cr)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%q: %d %s", cr, w.Code, w.Body)
		}
		if got, err := srv.store.Upload(1, up.ID); err == nil && received(got) > 100 {
			t.Fatalf("%q: received %v", cr, got.Received)
		}
	})
}

// FuzzBotToken: no string but a token NewBotUpload issued resolves.
func FuzzBotToken(f *testing.F) {
	srv := newBareServer(f, media.Options{})
	_, tok, err := srv.NewBotUpload(1, "file")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add(tok[:len(tok)-1] + "A")
	f.Add("")
	f.Add(strings.Repeat("A", 43))
	f.Fuzz(func(t *testing.T, s string) {
		_, err := srv.Resolve(1, s)
		if s == tok {
			if err != ErrNotReady {
				t.Fatalf("the issued token: %v", err)
			}
			return
		}
		if err != ErrUnknownToken {
			t.Fatalf("%q resolved: %v", s, err)
		}
	})
}

// FuzzMessageMeta: the names, types and message bodies a request brings
// are read without panics; a cleaned name has no path separator or
// control character.
func FuzzMessageMeta(f *testing.F) {
	b, _ := proto.Marshal(&wire.Content{Attachments: []*wire.Attachment{{Sha256: "ab", ThumbSha256: "cd"}}})
	f.Add("dir/a.txt", "text/plain; charset=utf-8", b)
	f.Add(`..\x`, "multipart/form-data; boundary=x", []byte{0xff})
	f.Fuzz(func(t *testing.T, name, typ string, body []byte) {
		n := cleanName(name)
		if strings.ContainsAny(n, "/\\\x00\n") || (utf8.ValidString(name) && !utf8.ValidString(n)) {
			t.Fatalf("cleanName(%q) = %q", name, n)
		}
		cleanMIME(typ)
		referenced(body, wire.MsgKind_MSG_KIND_MEDIA, "ab")
	})
}

// newBareServer returns a Server on a store in a temporary directory,
// for calling directly (no listener); session tokens are "tok-<user>".
func newBareServer(tb testing.TB, mo media.Options) *Server {
	tb.Helper()
	mo.Dir, mo.Log = tb.TempDir(), quietLog()
	st, err := media.Open(mo)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	srv, err := New(Options{
		Store: st,
		Authenticate: func(tok string) (uint64, error) {
			if tok != "tok-1" {
				return 0, errors.New("bad token")
			}
			return 1, nil
		},
		Access: func(context.Context, uint64, uint64, uint64) ([]byte, wire.MsgKind, error) {
			return nil, 0, errors.New("no messages")
		},
		PublicURL: "https://127.0.0.1:7445",
		Key:       bytes.Repeat([]byte{9}, 32),
		Log:       quietLog(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return srv
}
