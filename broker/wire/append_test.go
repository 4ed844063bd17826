package wire

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// The hand-encoded frames are byte for byte what AppendFrame makes of the
// same frames, zero fields, empty bodies and extreme values included.
func TestAppendMatchesMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() uint64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return rng.Uint64N(200)
		case 2:
			return ^uint64(0) - rng.Uint64N(3)
		}
		return rng.Uint64()
	}
	for i := range 2000 {
		m := &NewMessage{Chat: pick(), Seq: pick(), Sender: pick(), Device: pick(), ClientMsgID: pick(),
			Kind: MsgKind(rng.IntN(3)), TimeUs: int64(pick()), Target: pick(), Body: make([]byte, rng.IntN(300))}
		want, err := AppendFrame([]byte("prefix"), &Frame{Body: &Frame_Deliver{Deliver: &Deliver{Message: &Message{
			Chat: m.Chat, Seq: m.Seq, Sender: m.Sender, Device: m.Device, ClientMsgId: m.ClientMsgID,
			Kind: m.Kind, TimeUs: m.TimeUs, Target: m.Target, Body: m.Body,
		}}}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendDeliver([]byte("prefix"), m, 0)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("deliver %d %+v:\n got %x %v\nwant %x", i, m, got, err, want)
		}

		id, chat, seq, tm, dup := pick(), pick(), pick(), int64(pick()), rng.IntN(2) == 0
		want, err = AppendFrame(nil, &Frame{Id: id, Body: &Frame_Ack{Ack: &Ack{Chat: chat, Seq: seq, TimeUs: tm, Duplicate: dup}}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendAck(nil, id, chat, seq, tm, dup); !bytes.Equal(got, want) {
			t.Fatalf("ack %d:\n got %x\nwant %x", i, got, want)
		}
	}
	if _, err := AppendDeliver([]byte("x"), &NewMessage{Body: make([]byte, 100)}, 50); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("over max: %v", err)
	}
}

func TestAppendAllocatesNothing(t *testing.T) {
	buf := make([]byte, 0, 4096)
	m := &NewMessage{Chat: 1, Seq: 2, Sender: 3, Device: 4, ClientMsgID: 5, Kind: MsgKind_MSG_KIND_TEXT, TimeUs: 6, Body: make([]byte, 256)}
	if n := testing.AllocsPerRun(100, func() {
		b, _ := AppendDeliver(buf[:0], m, 0)
		AppendAck(b, 1, 2, 3, 4, true)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// ParseSend reads what Decode reads from a plain Send, and declines the
// rest, leaving it to Decode.
func TestParseSend(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		f := &Frame{Id: rng.Uint64N(1 << uint(rng.IntN(64))), Body: &Frame_Send{Send: &Send{
			Chat: rng.Uint64(), ClientMsgId: rng.Uint64N(1000), Kind: MsgKind(rng.IntN(4)), Body: make([]byte, rng.IntN(100)),
		}}}
		b, err := AppendFrame(nil, f, 0)
		if err != nil {
			t.Fatal(err)
		}
		id, s, ok := ParseSend(b[4:])
		want := f.GetSend()
		if !ok || id != f.Id || s.Chat != want.Chat || s.ClientMsgID != want.ClientMsgId || s.Kind != want.Kind || !bytes.Equal(s.Body, want.Body) {
			t.Fatalf("%d: ParseSend = %d %+v %v, want %v", i, id, s, ok, f)
		}
	}
	declined := func(f *Frame) {
		t.Helper()
		b, _ := AppendFrame(nil, f, 0)
		if _, _, ok := ParseSend(b[4:]); ok {
			t.Errorf("ParseSend took %v", f)
		}
	}
	declined(&Frame{Id: 1, Body: &Frame_Ping{Ping: &Ping{Nonce: 1}}})
	declined(&Frame{Id: 1, Body: &Frame_Edit{Edit: &Edit{Chat: 1}}})
	// A repeated field, an unknown field, a truncated frame.
	b, _ := AppendFrame(nil, &Frame{Id: 1, Body: &Frame_Send{Send: &Send{Chat: 1, Body: []byte("x")}}}, 0)
	if _, _, ok := ParseSend(append(b[4:], b[4:]...)); ok {
		t.Error("ParseSend took a frame with its fields twice")
	}
	if _, _, ok := ParseSend(append(append([]byte{}, b[4:]...), 0x98, 0x06, 1)); ok { // field 99 varint
		t.Error("ParseSend took an unknown field")
	}
	if _, _, ok := ParseSend(b[4 : len(b)-1]); ok {
		t.Error("ParseSend took a truncated frame")
	}
	if n := testing.AllocsPerRun(100, func() { ParseSend(b[4:]) }); n != 0 {
		t.Errorf("ParseSend allocates %v times", n)
	}
}

// FuzzParseSend: whatever ParseSend accepts, Decode reads the same.
func FuzzParseSend(f *testing.F) {
	for _, fr := range []*Frame{
		{Id: 7, Body: &Frame_Send{Send: &Send{Chat: 1, ClientMsgId: 2, Kind: MsgKind_MSG_KIND_TEXT, Body: []byte("hi")}}},
		{Id: 1, Body: &Frame_Send{Send: &Send{}}},
		{Id: 1, Body: &Frame_Ping{Ping: &Ping{Nonce: 3}}},
	} {
		b, _ := AppendFrame(nil, fr, 0)
		f.Add(b[4:])
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		id, s, ok := ParseSend(payload)
		if !ok {
			return
		}
		var fr Frame
		if err := Decode(payload, &fr); err != nil {
			t.Fatalf("ParseSend took what Decode refuses: %v", err)
		}
		want := fr.GetSend()
		if want == nil || id != fr.Id || s.Chat != want.Chat || s.ClientMsgID != want.ClientMsgId || s.Kind != want.Kind || !bytes.Equal(s.Body, want.Body) {
			t.Fatalf("ParseSend = %d %+v, Decode = %v", id, s, &fr)
		}
	})
}
