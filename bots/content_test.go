package bots_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// MEDIA bodies are checked: each bad one is refused with its code and
// stores nothing.
func TestContentChecks(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	a := w.dial(t, 5001)
	info, err := a.CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{5002}, "")
	if err != nil {
		t.Fatal(err)
	}
	sha := strings.Repeat("ab", 32)
	button := func(b *wire.Button) *wire.Content {
		return &wire.Content{Text: "x", Keyboard: &wire.Keyboard{Rows: []*wire.KeyboardRow{{Buttons: []*wire.Button{b}}}}}
	}
	for _, tc := range []struct {
		name string
		c    *wire.Content
		want error
	}{
		{"empty", &wire.Content{}, client.ErrBadContent},
		{"long text", &wire.Content{Text: strings.Repeat("я", 4001)}, client.ErrBadContent},
		{"bad format", &wire.Content{Text: "x", Format: 7}, client.ErrBadContent},
		{"bad sha", &wire.Content{Attachments: []*wire.Attachment{{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: "ABC"}}}, client.ErrBadContent},
		{"no type", &wire.Content{Attachments: []*wire.Attachment{{Sha256: sha}}}, client.ErrBadContent},
		{"11 files", &wire.Content{Attachments: make11(sha)}, client.ErrBadContent},
		{"callback without payload", button(&wire.Button{Type: wire.ButtonType_BUTTON_TYPE_CALLBACK, Text: "b"}), client.ErrBadContent},
		{"link not http", button(&wire.Button{Type: wire.ButtonType_BUTTON_TYPE_LINK, Text: "b", Url: "javascript:alert(1)"}), client.ErrBadContent},
		{"button no text", button(&wire.Button{Type: wire.ButtonType_BUTTON_TYPE_MESSAGE}), client.ErrBadContent},
		{"unknown file", &wire.Content{Attachments: []*wire.Attachment{{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: sha}}}, client.ErrUnknownFile},
	} {
		body, _ := proto.Marshal(tc.c)
		if _, err := a.SendMsg(ctx, client.SendOptions{Chat: info.Chat, Kind: wire.MsgKind_MSG_KIND_MEDIA, Body: body}); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := a.SendMsg(ctx, client.SendOptions{Chat: info.Chat, Kind: wire.MsgKind_MSG_KIND_MEDIA, Body: []byte{0xff, 0xff}}); !errors.Is(err, client.ErrBadContent) {
		t.Errorf("not a Content: %v", err)
	}
	// A good one with a keyboard; a person's message has no button to press.
	body, _ := proto.Marshal(button(&wire.Button{Type: wire.ButtonType_BUTTON_TYPE_CALLBACK, Text: "b", Payload: "p"}))
	ack, err := a.SendMsg(ctx, client.SendOptions{Chat: info.Chat, Kind: wire.MsgKind_MSG_KIND_MEDIA, Body: body})
	if err != nil || ack.Seq != 1 {
		t.Fatalf("a good content: %+v %v (nothing before it stored)", ack, err)
	}
	if err := a.PressButton(ctx, info.Chat, ack.Seq, "p"); !errors.Is(err, client.ErrNoButton) {
		t.Fatalf("a person's button: %v", err)
	}
	// A stranger cannot press anything in a chat it is not in.
	c := w.dial(t, 5003)
	if err := c.PressButton(ctx, info.Chat, ack.Seq, "p"); !errors.Is(err, client.ErrNotMember) {
		t.Fatalf("a stranger's press: %v", err)
	}
}

func make11(sha string) []*wire.Attachment {
	var out []*wire.Attachment
	for range 11 {
		out = append(out, &wire.Attachment{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: sha})
	}
	return out
}

// fakeFiles holds every file and counts its references.
type fakeFiles struct {
	mu   sync.Mutex
	refs map[string]int
	prev []string // the files of the Content the last edit replaced
}

func (f *fakeFiles) Attach(_ context.Context, _ storage.UserID, atts []*wire.Attachment) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range atts {
		a.Size = 7
		f.refs[a.Sha256]++
	}
	return nil
}

// AttachEdit records the files of the Content an edit replaces.
func (f *fakeFiles) AttachEdit(ctx context.Context, user storage.UserID, atts, prev []*wire.Attachment) error {
	f.mu.Lock()
	f.prev = nil
	for _, p := range prev {
		f.prev = append(f.prev, p.Sha256)
	}
	f.mu.Unlock()
	return f.Attach(ctx, user, atts)
}

func (f *fakeFiles) Release(atts []*wire.Attachment) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range atts {
		f.refs[a.Sha256]--
	}
}

func (f *fakeFiles) count(sha string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refs[sha]
}

// A message's files are referenced while it holds them: a resend takes
// none, an edit moves them to the new Content, a delete gives them back,
// once.
func TestContentReferences(t *testing.T) {
	files := &fakeFiles{refs: map[string]int{}}
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{Attachments: files}})
	ctx := ctxT(t)
	o := client.Options{TCPAddr: n.TCPAddr, Fingerprint: n.Fingerprint, Logger: quiet, DialTimeout: 5 * time.Second}
	a, err := client.Dial(ctx, n.Addr, n.Token(t, 5001, 1), o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	info, err := a.CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{5002}, "")
	if err != nil {
		t.Fatal(err)
	}
	shaA, shaB := strings.Repeat("aa", 32), strings.Repeat("bb", 32)
	content := func(sha string) []byte {
		b, _ := proto.Marshal(&wire.Content{Attachments: []*wire.Attachment{{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: sha, Name: "f"}}})
		return b
	}
	opts := client.SendOptions{Chat: info.Chat, ClientMsgID: 77, Kind: wire.MsgKind_MSG_KIND_MEDIA, Body: content(shaA)}
	ack, err := a.SendMsg(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := a.SendMsg(ctx, opts); err != nil || !again.Duplicate {
		t.Fatalf("resend: %+v %v", again, err)
	}
	if files.count(shaA) != 1 {
		t.Fatalf("after a send and its resend: %d references", files.count(shaA))
	}
	if _, err := a.Edit(ctx, info.Chat, ack.Seq, content(shaB)); err != nil {
		t.Fatal(err)
	}
	if files.count(shaA) != 0 || files.count(shaB) != 1 {
		t.Fatalf("after the edit: A %d, B %d", files.count(shaA), files.count(shaB))
	}
	if files.mu.Lock(); len(files.prev) != 1 || files.prev[0] != shaA {
		t.Fatalf("the edit's Attach was told of %v, not the message's own file", files.prev)
	}
	files.mu.Unlock()
	if _, err := a.Delete(ctx, info.Chat, ack.Seq); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Delete(ctx, info.Chat, ack.Seq); err == nil {
		t.Fatal("a second delete")
	}
	if files.count(shaA) != 0 || files.count(shaB) != 0 {
		t.Fatalf("after the delete: A %d, B %d", files.count(shaA), files.count(shaB))
	}
}
