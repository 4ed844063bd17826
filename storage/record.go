package storage

import (
	"encoding/binary"
	"time"
)

const recVersion = 1

// Record is one entry of a chat's log as a reader sees it. For content
// kinds it carries the message's current state: the latest edit, whether
// it was deleted and its reaction counts.
type Record struct {
	Chat        ChatID
	Seq         uint64
	Kind        MsgKind
	Sender      UserID
	Device      DeviceID
	ClientMsgID uint64
	// Time is the server time of the append, in Unix microseconds.
	Time int64
	// Target is the seq an edit, delete or reaction points at; 0 otherwise.
	Target uint64
	// Body is the current body: the latest edit's for an edited message,
	// empty for a deleted one. In callbacks it is valid only until return.
	Body []byte

	// Edited is the time of the latest edit (Unix µs), 0 if never edited.
	Edited int64
	// Deleted reports that the message was deleted.
	Deleted bool
	// Reactions are the counts per reaction, in first-used order.
	Reactions []Reaction
}

// Reaction is the number of users who reacted to a message with Emoji.
type Reaction struct {
	Emoji string
	Count uint32
}

// appendRecordHeader appends a log record's header; the encoded body follows.
func appendRecordHeader(b []byte, m *Message, codec byte, now int64) []byte {
	b = append(b, recVersion, byte(m.Kind), codec)
	b = binary.AppendUvarint(b, uint64(m.Sender))
	b = binary.AppendUvarint(b, uint64(m.Device))
	b = binary.AppendUvarint(b, m.ClientMsgID)
	b = binary.AppendVarint(b, now)
	return binary.AppendUvarint(b, m.Target)
}

// decodeRecordHeader fills r from a log value and returns the codec and the
// encoded body.
func decodeRecordHeader(v []byte, r *Record) (codec byte, body []byte, err error) {
	if len(v) < 3 || v[0] != recVersion {
		return 0, nil, errCorrupt
	}
	r.Kind, codec = MsgKind(v[1]), v[2]
	d := decoder{b: v[3:]}
	r.Sender = UserID(d.uvarint())
	r.Device = DeviceID(d.uvarint())
	r.ClientMsgID = d.uvarint()
	r.Time = d.varint()
	r.Target = d.uvarint()
	if d.bad {
		return 0, nil, errCorrupt
	}
	return codec, d.b, nil
}

// decoder reads varints and length-prefixed bytes, remembering the first
// error so that callers check once.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func appendBytes(b, v []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

// Retention bounds how much of a chat's log is kept. A zero field means no
// bound of that sort.
type Retention struct {
	// MaxAge drops messages older than this.
	MaxAge time.Duration
	// MaxCount keeps at most this many of the newest messages.
	MaxCount uint64
}

// chatRecord is the persisted state of a chat (table tChat).
type chatRecord struct {
	kind    ChatKind
	created int64
	creator UserID
	peer    UserID // the creator's peer in a direct chat
	title   string
	// retention overrides the default of the chat's kind when set.
	retention    Retention
	hasRetention bool

	lastSeq     uint64 // last seq appended
	lastTime    int64  // time of the last append
	floor       uint64 // first retained seq; seqs below it were swept
	dedupeFloor uint64 // dedupe entries of seqs below it were swept
	ver         uint64 // store version of the last change
	idxEpoch    uint64 // epoch where its push members' dialog entries are
	members     uint64 // member count
}

func (c *chatRecord) appendTo(b []byte) []byte {
	b = append(b, recVersion, byte(c.kind))
	b = binary.AppendVarint(b, c.created)
	b = binary.AppendUvarint(b, uint64(c.creator))
	b = binary.AppendUvarint(b, uint64(c.peer))
	b = appendBytes(b, []byte(c.title))
	if c.hasRetention {
		b = append(b, 1)
		b = binary.AppendVarint(b, int64(c.retention.MaxAge))
		b = binary.AppendUvarint(b, c.retention.MaxCount)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, c.lastSeq)
	b = binary.AppendVarint(b, c.lastTime)
	b = binary.AppendUvarint(b, c.floor)
	b = binary.AppendUvarint(b, c.dedupeFloor)
	b = binary.AppendUvarint(b, c.ver)
	b = binary.AppendUvarint(b, c.idxEpoch)
	return binary.AppendUvarint(b, c.members)
}

func (c *chatRecord) decode(v []byte) error {
	d := decoder{b: v}
	if d.byte() != recVersion {
		return errCorrupt
	}
	c.kind = ChatKind(d.byte())
	c.created = d.varint()
	c.creator = UserID(d.uvarint())
	c.peer = UserID(d.uvarint())
	c.title = string(d.bytes())
	c.hasRetention = d.byte() == 1
	if c.hasRetention {
		c.retention.MaxAge = time.Duration(d.varint())
		c.retention.MaxCount = d.uvarint()
	}
	c.lastSeq = d.uvarint()
	c.lastTime = d.varint()
	c.floor = d.uvarint()
	c.dedupeFloor = d.uvarint()
	c.ver = d.uvarint()
	c.idxEpoch = d.uvarint()
	c.members = d.uvarint()
	if d.bad || !c.kind.valid() {
		return errCorrupt
	}
	return nil
}

// Member modes decide how a member learns that a chat changed (doc.go).
const (
	modePush byte = 1 // the member's dialog index is written on each change
	modePull byte = 2 // the chat is read on demand when the member syncs
)

// memberRecord is a member's state in a chat (table tMember).
type memberRecord struct {
	role      Role
	mode      byte
	joined    int64
	delivered uint64
	read      uint64
}

func (m *memberRecord) appendTo(b []byte) []byte {
	b = append(b, recVersion, byte(m.role), m.mode)
	b = binary.AppendVarint(b, m.joined)
	b = binary.AppendUvarint(b, m.delivered)
	return binary.AppendUvarint(b, m.read)
}

func (m *memberRecord) decode(v []byte) error {
	d := decoder{b: v}
	if d.byte() != recVersion {
		return errCorrupt
	}
	m.role = Role(d.byte())
	m.mode = d.byte()
	m.joined = d.varint()
	m.delivered = d.uvarint()
	m.read = d.uvarint()
	if d.bad || !m.role.valid() {
		return errCorrupt
	}
	return nil
}

// overlay is the current state of a content message that was edited,
// deleted or reacted to (table tOverlay).
type overlay struct {
	edited    int64
	deleted   bool
	codec     byte
	body      []byte // encoded latest edit body
	reactions []Reaction
}

func (o *overlay) appendTo(b []byte) []byte {
	b = append(b, recVersion)
	if o.deleted {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendVarint(b, o.edited)
	b = append(b, o.codec)
	b = appendBytes(b, o.body)
	b = binary.AppendUvarint(b, uint64(len(o.reactions)))
	for _, r := range o.reactions {
		b = appendBytes(b, []byte(r.Emoji))
		b = binary.AppendUvarint(b, uint64(r.Count))
	}
	return b
}

func (o *overlay) decode(v []byte) error {
	d := decoder{b: v}
	if d.byte() != recVersion {
		return errCorrupt
	}
	o.deleted = d.byte() == 1
	o.edited = d.varint()
	o.codec = d.byte()
	o.body = d.bytes()
	n := d.uvarint()
	if d.bad || n > maxReactionKinds {
		return errCorrupt
	}
	o.reactions = o.reactions[:0]
	for i := uint64(0); i < n; i++ {
		e := string(d.bytes())
		o.reactions = append(o.reactions, Reaction{Emoji: e, Count: uint32(d.uvarint())})
	}
	if d.bad {
		return errCorrupt
	}
	return nil
}

// dedupe values: seq, time.
func appendDedupe(b []byte, seq uint64, t int64) []byte {
	return binary.AppendVarint(binary.AppendUvarint(b, seq), t)
}

func decodeDedupe(v []byte) (seq uint64, t int64, err error) {
	d := decoder{b: v}
	seq, t = d.uvarint(), d.varint()
	if d.bad {
		return 0, 0, errCorrupt
	}
	return seq, t, nil
}
