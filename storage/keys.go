package storage

import "encoding/binary"

// Key tables. Every key is shard(2, big endian) | table(1) | fields, with
// all integers big endian so that byte order is numeric order. See doc.go.
const (
	tChat     = 'c' // shard(chat) c chat                  -> chatRecord
	tMember   = 'm' // shard(chat) m chat user             -> memberRecord
	tLog      = 'l' // shard(chat) l chat seq              -> record
	tOverlay  = 's' // shard(chat) s chat seq              -> overlay (current state)
	tReaction = 'r' // shard(chat) r chat seq user         -> emoji
	tDedupe   = 'd' // shard(chat) d chat user device cmid -> seq, time
	tUserChat = 'u' // shard(user) u user chat             -> role, mode, kind
	tUserN    = 'n' // shard(user) n user                  -> number of the user's chats
	tDialog   = 'v' // shard(user) v user epoch chat       -> (empty)
	tPull     = 'p' // shard(user) p user chat             -> (empty)
)

// metaShard is the reserved shard prefix of store-wide keys; real shards
// are below it.
const metaShard = 0xFFFF

var (
	keyFormat  = []byte{0xFF, 0xFF, 'M', 'f'} // -> format version, shard count
	keyVersion = []byte{0xFF, 0xFF, 'M', 'v'} // -> last committed version
)

// mix64 is the splitmix64 finalizer. It decides placement, so it must never
// change for an existing store.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// shardOf maps an id to one of n shards.
func shardOf(id uint64, n int) uint16 { return uint16(mix64(id) % uint64(n)) }

func appendPrefix(b []byte, shard uint16, table byte) []byte {
	return append(binary.BigEndian.AppendUint16(b, shard), table)
}

func be(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// chatKey is the key of a table entry keyed by chat and then more fields.
func (s *Store) chatKey(b []byte, table byte, chat ChatID, rest ...uint64) []byte {
	b = be(appendPrefix(b, shardOf(uint64(chat), s.opts.Shards), table), uint64(chat))
	for _, v := range rest {
		b = be(b, v)
	}
	return b
}

// userKey is the key of a table entry keyed by user and then more fields.
func (s *Store) userKey(b []byte, table byte, user UserID, rest ...uint64) []byte {
	b = be(appendPrefix(b, shardOf(uint64(user), s.opts.Shards), table), uint64(user))
	for _, v := range rest {
		b = be(b, v)
	}
	return b
}

// logKey appends the key of message seq in chat; it allocates nothing when
// b has room.
func (s *Store) logKey(b []byte, chat ChatID, seq uint64) []byte {
	return be(be(appendPrefix(b, shardOf(uint64(chat), s.opts.Shards), tLog), uint64(chat)), seq)
}

// dedupeKey appends the key of the dedupe entry of a sender's client id.
func (s *Store) dedupeKey(b []byte, chat ChatID, user UserID, dev DeviceID, cmid uint64) []byte {
	b = be(appendPrefix(b, shardOf(uint64(chat), s.opts.Shards), tDedupe), uint64(chat))
	return be(be(be(b, uint64(user)), uint64(dev)), cmid)
}

// epochBits is the log2 of a dialog index epoch in versions. Versions are
// Unix microseconds (or one more than the last, if the clock is behind), so
// an epoch is about 131 ms.
const epochBits = 17

// epochOf returns the dialog index epoch of a version.
func epochOf(ver uint64) uint64 { return ver >> epochBits }

// dialogKey appends the key of user's push dialog entry for chat.
func (s *Store) dialogKey(b []byte, user UserID, epoch uint64, chat ChatID) []byte {
	return s.userKey(b, tDialog, user, epoch, uint64(chat))
}

// lastU64 decodes the trailing uint64 of a key.
func lastU64(k []byte) uint64 { return binary.BigEndian.Uint64(k[len(k)-8:]) }

// keyUpper returns the smallest key greater than every key with prefix p.
func keyUpper(p []byte) []byte {
	u := append([]byte(nil), p...)
	for i := len(u) - 1; i >= 0; i-- {
		if u[i] != 0xFF {
			u[i]++
			return u[:i+1]
		}
	}
	return nil
}
