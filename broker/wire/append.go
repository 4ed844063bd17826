package wire

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The hot path's frames, encoded straight into the caller's buffer with
// no message structs: each produces exactly the bytes AppendFrame does for
// the same frame (proto3, fields in number order, zero values omitted),
// which TestAppendMatchesMarshal holds them to.

// Field numbers used below (gonets.proto).
const (
	fieldFrameID      = 1
	fieldFrameAck     = 14
	fieldFrameDeliver = 15
	fieldDeliverMsg   = 1
)

// NewMessage is a freshly appended message, as Deliver carries it.
type NewMessage struct {
	Chat, Seq, Sender, Device, ClientMsgID uint64
	Kind                                   MsgKind
	TimeUs                                 int64
	Target                                 uint64
	Body                                   []byte
}

// AppendDeliver appends, length-prefixed, a push frame (id 0) delivering
// m to dst, or fails as AppendFrame does when it is over max bytes (0
// means DefaultMaxFrameBytes), leaving dst as it was.
func AppendDeliver(dst []byte, m *NewMessage, max int) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxFrameBytes
	}
	msg := m.size()
	deliver := protowire.SizeTag(fieldDeliverMsg) + protowire.SizeBytes(msg)
	n := protowire.SizeTag(fieldFrameDeliver) + protowire.SizeBytes(deliver)
	if n > max {
		return dst, fmt.Errorf("%w: %d bytes over %d", ErrFrameTooLarge, n, max)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = protowire.AppendTag(dst, fieldFrameDeliver, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(deliver))
	dst = protowire.AppendTag(dst, fieldDeliverMsg, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(msg))
	return m.appendTo(dst), nil
}

// AppendAck appends, length-prefixed, the Ack response to request id.
func AppendAck(dst []byte, id, chat, seq uint64, timeUs int64, duplicate bool) []byte {
	ack := sizeUint(1, chat) + sizeUint(2, seq) + sizeUint(3, uint64(timeUs)) + sizeBool(4, duplicate)
	n := sizeUint(fieldFrameID, id) + protowire.SizeTag(fieldFrameAck) + protowire.SizeBytes(ack)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = appendUint(dst, fieldFrameID, id)
	dst = protowire.AppendTag(dst, fieldFrameAck, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(ack))
	dst = appendUint(dst, 1, chat)
	dst = appendUint(dst, 2, seq)
	dst = appendUint(dst, 3, uint64(timeUs))
	return appendBool(dst, 4, duplicate)
}

func (m *NewMessage) size() int {
	n := sizeUint(1, m.Chat) + sizeUint(2, m.Seq) + sizeUint(3, m.Sender) + sizeUint(4, m.Device) +
		sizeUint(5, m.ClientMsgID) + sizeUint(6, uint64(m.Kind)) + sizeUint(7, uint64(m.TimeUs)) + sizeUint(8, m.Target)
	if len(m.Body) > 0 {
		n += protowire.SizeTag(9) + protowire.SizeBytes(len(m.Body))
	}
	return n
}

func (m *NewMessage) appendTo(b []byte) []byte {
	b = appendUint(b, 1, m.Chat)
	b = appendUint(b, 2, m.Seq)
	b = appendUint(b, 3, m.Sender)
	b = appendUint(b, 4, m.Device)
	b = appendUint(b, 5, m.ClientMsgID)
	b = appendUint(b, 6, uint64(m.Kind))
	b = appendUint(b, 7, uint64(m.TimeUs))
	b = appendUint(b, 8, m.Target)
	if len(m.Body) > 0 {
		b = protowire.AppendTag(b, 9, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Body)
	}
	return b
}

// sizeUint and appendUint handle a proto3 varint field, omitted at zero
// (int64 and enum fields are passed as their uint64 bits).
func sizeUint(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

func sizeBool(num protowire.Number, v bool) int {
	if !v {
		return 0
	}
	return protowire.SizeTag(num) + 1
}

func appendBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return append(protowire.AppendTag(b, num, protowire.VarintType), 1)
}
