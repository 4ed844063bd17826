package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"
)

// sampleFrames has one frame of every kind, for round trips and as the
// fuzz seed corpus.
func sampleFrames() []*Frame {
	msg := &Message{Chat: 7, Seq: 9, Sender: 1, Device: 2, ClientMsgId: 3, Kind: MsgKind_MSG_KIND_TEXT,
		TimeUs: 1_700_000_000_000_000, Body: []byte("привет"), Reactions: []*Reaction{{Emoji: "👍", Count: 2}}}
	return []*Frame{
		{Id: 1, Body: &Frame_Hello{Hello: &Hello{Version: 1, Capabilities: []string{"datagrams"}, Client: "test", Token: "t.o.k"}}},
		{Id: 1, Body: &Frame_Welcome{Welcome: &Welcome{Version: 1, User: 1, Device: 2, MaxFrameBytes: 1 << 20}}},
		{Id: 2, Body: &Frame_Send{Send: &Send{Chat: 7, ClientMsgId: 3, Kind: MsgKind_MSG_KIND_TEXT, Body: []byte("hi")}}},
		{Id: 2, Body: &Frame_Ack{Ack: &Ack{Chat: 7, Seq: 9, TimeUs: 5}}},
		{Body: &Frame_Deliver{Deliver: &Deliver{Message: msg}}},
		{Id: 3, Body: &Frame_Sync{Sync: &SyncRequest{Since: 5, Limit: 100}}},
		{Id: 3, Body: &Frame_SyncResult{SyncResult: &SyncResult{Dialogs: []*Dialog{{Chat: 7, Kind: ChatKind_CHAT_KIND_GROUP, LastSeq: 9}}, Version: 11}}},
		{Id: 4, Body: &Frame_History{History: &HistoryRequest{Chat: 7, FromSeq: 1, Limit: 50}}},
		{Id: 4, Body: &Frame_HistoryResult{HistoryResult: &HistoryResult{Chat: 7, Messages: []*Message{msg}, LastSeq: 9, Floor: 1}}},
		{Id: 5, Body: &Frame_Receipt{Receipt: &Receipt{Chat: 7, Delivered: 9, Read: 8}}},
		{Id: 6, Body: &Frame_Edit{Edit: &Edit{Chat: 7, ClientMsgId: 4, Target: 9, Body: []byte("fixed")}}},
		{Id: 7, Body: &Frame_Delete{Delete: &Delete{Chat: 7, ClientMsgId: 5, Target: 9}}},
		{Id: 8, Body: &Frame_React{React: &React{Chat: 7, ClientMsgId: 6, Target: 9, Emoji: "🔥"}}},
		{Id: 9, Body: &Frame_CreateChat{CreateChat: &CreateChat{Kind: ChatKind_CHAT_KIND_DIRECT, Members: []uint64{2}}}},
		{Id: 9, Body: &Frame_Chat{Chat: &ChatInfo{Chat: 7, Kind: ChatKind_CHAT_KIND_DIRECT, Members: 2}}},
		{Id: 10, Body: &Frame_AddMembers{AddMembers: &AddMembers{Chat: 7, Users: []uint64{3, 4}}}},
		{Id: 11, Body: &Frame_RemoveMember{RemoveMember: &RemoveMember{Chat: 7, User: 3}}},
		{Id: 12, Body: &Frame_Leave{Leave: &Leave{Chat: 7}}},
		{Body: &Frame_Typing{Typing: &Typing{Chat: 7, User: 1}}},
		{Id: 13, Body: &Frame_Ping{Ping: &Ping{Nonce: 42}}},
		{Id: 13, Body: &Frame_Pong{Pong: &Pong{Nonce: 42}}},
		{Id: 14, Body: &Frame_Error{Error: &Error{Code: ErrorCode_ERROR_CODE_RATE_LIMITED, Message: "slow down", RetryAfterMs: 100}}},
		{Body: &Frame_GoingAway{GoingAway: &GoingAway{RetryAfterMs: 500}}},
		{Body: &Frame_Resync{Resync: &Resync{Since: 11}}},
		{Id: 15, Body: &Frame_Done{Done: &Done{}}},
		{Id: 16, Body: &Frame_Auth{Auth: &Auth{Token: "new"}}},
	}
}

func TestRoundTrip(t *testing.T) {
	var stream []byte
	frames := sampleFrames()
	for _, f := range frames {
		var err error
		if stream, err = AppendFrame(stream, f, 0); err != nil {
			t.Fatalf("AppendFrame(%v): %v", f, err)
		}
	}
	r := NewReader(bytes.NewReader(stream), 0)
	for i, want := range frames {
		var got Frame
		if err := r.Read(&got); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !proto.Equal(&got, want) {
			t.Fatalf("frame %d = %v, want %v", i, &got, want)
		}
	}
	var f Frame
	if err := r.Read(&f); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestBadFrames(t *testing.T) {
	good, err := AppendFrame(nil, sampleFrames()[2], 0)
	if err != nil {
		t.Fatal(err)
	}
	f := func(name string, stream []byte, max int, want error) {
		t.Helper()
		var fr Frame
		err := NewReader(bytes.NewReader(stream), max).Read(&fr)
		if !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", name, err, want)
		}
	}
	f("cut in the header", good[:2], 0, ErrTruncated)
	f("cut in the body", good[:len(good)-1], 0, ErrTruncated)
	f("over the limit", good, len(good)-headerBytes-1, ErrFrameTooLarge)
	f("empty frame", []byte{0, 0, 0, 0}, 0, ErrBadFrame)
	f("huge length", []byte{0xFF, 0xFF, 0xFF, 0xFF}, 0, ErrFrameTooLarge)
	f("not protobuf", append([]byte{0, 0, 0, 3}, 0xFF, 0xFF, 0xFF), 0, ErrBadFrame)
	f("no body", append([]byte{0, 0, 0, 2}, 0x08, 0x01), 0, ErrBadFrame) // id 1 only

	if _, err := AppendFrame(nil, &Frame{Id: 1}, 0); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("AppendFrame without body: %v", err)
	}
	big := &Frame{Body: &Frame_Send{Send: &Send{Chat: 1, Body: make([]byte, 100)}}}
	dst := []byte("keep")
	out, err := AppendFrame(dst, big, 50)
	if !errors.Is(err, ErrFrameTooLarge) || string(out) != "keep" {
		t.Fatalf("AppendFrame over the limit = %q, %v", out, err)
	}
}

func TestReaderRelease(t *testing.T) {
	stream, _ := AppendFrame(nil, sampleFrames()[2], 0)
	r := NewReader(bytes.NewReader(stream), 0)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	r.Release()
	if r.buf != nil {
		t.Fatal("Release kept the buffer")
	}
}

// FuzzReader feeds arbitrary streams to the frame reader: it must return
// frames or errors, never panic, and every frame it accepts must re-encode
// to a frame that decodes to the same message.
func FuzzReader(f *testing.F) {
	for _, fr := range sampleFrames() {
		b, err := AppendFrame(nil, fr, 0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 5, 1, 2})
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := NewReader(bytes.NewReader(stream), 1<<16)
		for range 64 {
			var fr Frame
			if err := r.Read(&fr); err != nil {
				return
			}
			b, err := AppendFrame(nil, &fr, 1<<20)
			if err != nil {
				t.Fatalf("re-encode of an accepted frame: %v", err)
			}
			var again Frame
			if err := NewReader(bytes.NewReader(b), 0).Read(&again); err != nil || !proto.Equal(&fr, &again) {
				t.Fatalf("round trip: %v", err)
			}
		}
	})
}

func BenchmarkAppendFrame(b *testing.B) {
	f := &Frame{Body: &Frame_Deliver{Deliver: &Deliver{Message: &Message{Chat: 7, Seq: 9, Sender: 1, Device: 2,
		ClientMsgId: 3, Kind: MsgKind_MSG_KIND_TEXT, TimeUs: 1_700_000_000_000_000, Body: make([]byte, 256)}}}}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for range b.N {
		var err error
		if buf, err = AppendFrame(buf[:0], f, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

// A frame's buffer grows as its bytes arrive, also when the pool holds
// larger buffers that earlier frames grew: a connection that announces a
// small frame and sends part of it (a Hello before authentication, held
// until the hello deadline) holds a buffer of the first step, not of the
// largest frame read lately.
func TestReaderTakesSmallBuffers(t *testing.T) {
	big := make([]byte, headerBytes+60<<10)
	binary.BigEndian.PutUint32(big, 60<<10)
	var held []*Reader
	for range 8 {
		r := NewReader(bytes.NewReader(big), 0)
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		held = append(held, r)
	}
	for _, r := range held {
		r.Release() // large buffers, into the pool
	}
	partial := binary.BigEndian.AppendUint32(nil, 100)
	partial = append(partial, make([]byte, 10)...) // 10 of 100 bytes
	for range 8 {
		r := NewReader(bytes.NewReader(partial), 16<<10)
		if _, err := r.Next(); !errors.Is(err, ErrTruncated) {
			t.Fatalf("Next = %v, want ErrTruncated", err)
		}
		if c := cap(*r.buf); c > growStep {
			t.Fatalf("a reader holding 10 bytes of a 100-byte frame holds a buffer of %d bytes, want at most %d", c, growStep)
		}
	}
}
