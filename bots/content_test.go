package bots_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
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
