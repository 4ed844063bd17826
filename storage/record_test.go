package storage

import (
	"bytes"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	m := Message{Chat: 1, Sender: 300, Device: 7, ClientMsgID: 1 << 40, Kind: MsgEdit, Target: 12}
	b := appendRecordHeader(nil, &m, codecS2, 1_700_000_000_000_000)
	b = append(b, "body"...)
	var r Record
	codec, body, err := decodeRecordHeader(b, &r)
	if err != nil || codec != codecS2 || string(body) != "body" || r.Sender != 300 || r.Device != 7 ||
		r.ClientMsgID != 1<<40 || r.Kind != MsgEdit || r.Target != 12 || r.Time != 1_700_000_000_000_000 {
		t.Fatalf("decoded %+v codec %d body %q err %v", r, codec, body, err)
	}
	c := chatRecord{kind: ChatDirect, created: 5, creator: 1, peer: 2, title: "t", hasRetention: true,
		retention: Retention{MaxAge: time.Hour, MaxCount: 9}, lastSeq: 10, lastTime: 11, floor: 3, dedupeFloor: 4, ver: 12, members: 2}
	var c2 chatRecord
	if err := c2.decode(c.appendTo(nil)); err != nil || c2 != c {
		t.Fatalf("chat record %+v != %+v (%v)", c2, c, err)
	}
	o := overlay{edited: 5, deleted: false, codec: codecNone, body: []byte("x"), reactions: []Reaction{{"a", 2}, {"b", 1}}}
	var o2 overlay
	if err := o2.decode(o.appendTo(nil)); err != nil || !bytes.Equal(o2.appendTo(nil), o.appendTo(nil)) {
		t.Fatalf("overlay %+v != %+v (%v)", o2, o, err)
	}
}

// FuzzDecode feeds damaged bytes to every decoder of stored data: they
// must return errCorrupt or a value, never panic.
func FuzzDecode(f *testing.F) {
	m := Message{Chat: 1, Sender: 2, Device: 3, ClientMsgID: 4, Kind: MsgText}
	f.Add(append(appendRecordHeader(nil, &m, codecNone, 99), "hello"...))
	f.Add((&chatRecord{kind: ChatGroup, title: "g", lastSeq: 3}).appendTo(nil))
	f.Add((&memberRecord{role: RoleAdmin, mode: modePush, read: 2}).appendTo(nil))
	f.Add((&overlay{deleted: true, reactions: []Reaction{{"👍", 3}}}).appendTo(nil))
	f.Add(appendDedupe(nil, 7, 8))
	f.Add([]byte{})
	f.Add([]byte{recVersion, 0xFF, 0xFF, 0xFF})
	codec, err := newBodyCodec()
	if err != nil {
		f.Fatal(err)
	}
	defer codec.close()
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		decodeRecordHeader(b, &r)
		var c chatRecord
		c.decode(b)
		var mr memberRecord
		mr.decode(b)
		var o overlay
		o.decode(b)
		decodeDedupe(b)
		for _, k := range []byte{codecNone, codecS2, codecZstd, 9} {
			codec.appendDecoded(nil, b, k)
		}
		enc, k := codec.appendEncoded(nil, b)
		dec, err := codec.appendDecoded(nil, enc, k)
		if err != nil || !bytes.Equal(dec, b) {
			t.Fatalf("codec %d round trip: %v", k, err)
		}
	})
}
