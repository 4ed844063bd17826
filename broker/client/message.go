package client

import (
	"time"

	"github.com/gonets/gonets/broker/wire"
)

// Message is one record of a chat's log, as History returns it and Events
// delivers it. Edits, deletions and reactions are records of their own
// (Kind EDIT, DELETE, REACTION) that point at Target; History also folds
// them into the target (Edited, Deleted, Reactions).
type Message struct {
	Chat   uint64
	Seq    uint64
	Sender uint64
	// Device is the sender's device; a Client's own sends carry its Device.
	Device      uint64
	ClientMsgID uint64
	Kind        wire.MsgKind
	// Time is when the node appended the record.
	Time time.Time
	// Target is the seq an edit, delete or reaction points at.
	Target uint64
	// Body is the payload: UTF-8 text for TEXT, the new text for EDIT, the
	// emoji for REACTION.
	Body []byte
	// Edited is the time of the last edit, zero if none.
	Edited    time.Time
	Deleted   bool
	Reactions []Reaction
}

// Reaction counts the users who reacted with one emoji.
type Reaction struct {
	Emoji string
	Count uint32
}

// Ack confirms that a message is durable in its chat.
type Ack struct {
	Chat uint64
	Seq  uint64
	Time time.Time
	// Duplicate reports that the node had the message already: a resend
	// with the same client message id returns the original Ack.
	Duplicate bool
}

// SendOptions describe one message for SendMsg.
type SendOptions struct {
	Chat uint64
	// ClientMsgID deduplicates resends: a message sent twice with the same
	// id is stored once. Default: a fresh id from NextClientMsgID.
	ClientMsgID uint64
	// Kind is TEXT, MEDIA or SERVICE. Default: TEXT.
	Kind wire.MsgKind
	Body []byte
}

// Receipt is a pushed marker move: User's devices received (Delivered) or
// read (Read) Chat up to those seqs.
type Receipt struct {
	Chat      uint64
	User      uint64
	Delivered uint64
	Read      uint64
}

// Typing is a pushed "User is typing in Chat".
type Typing struct {
	Chat uint64
	User uint64
}

// fromMicros converts Unix microseconds; 0 is the zero time.
func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

// messageFromWire converts a wire message.
func messageFromWire(m *wire.Message) Message {
	out := Message{
		Chat:        m.GetChat(),
		Seq:         m.GetSeq(),
		Sender:      m.GetSender(),
		Device:      m.GetDevice(),
		ClientMsgID: m.GetClientMsgId(),
		Kind:        m.GetKind(),
		Time:        fromMicros(m.GetTimeUs()),
		Target:      m.GetTarget(),
		Body:        m.GetBody(),
		Edited:      fromMicros(m.GetEditedUs()),
		Deleted:     m.GetDeleted(),
	}
	if rs := m.GetReactions(); len(rs) > 0 {
		out.Reactions = make([]Reaction, len(rs))
		for i, r := range rs {
			out.Reactions[i] = Reaction{Emoji: r.GetEmoji(), Count: r.GetCount()}
		}
	}
	return out
}

// ackFromWire converts a wire ack.
func ackFromWire(a *wire.Ack) Ack {
	return Ack{Chat: a.GetChat(), Seq: a.GetSeq(), Time: fromMicros(a.GetTimeUs()), Duplicate: a.GetDuplicate()}
}
