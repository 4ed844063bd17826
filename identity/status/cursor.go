package status

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
)

// MaxSeen caps the statuses a cursor remembers per application; older ones
// become its floor (see the package documentation).
const MaxSeen = 256

// keyPrefix starts every key the poller writes in the KV, which other
// state-service adapters share.
const keyPrefix = "status/cursor/"

// userPrefix is the key prefix of user's cursors.
func userPrefix(user uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(keyPrefix), user)
}

// cursorKey is the key of user's cursor of orderID: the user and a hash of
// the order id, which stays out of the store's keys.
func cursorKey(user uint64, orderID string) []byte {
	var buf [32 + MaxOrderID]byte
	h := sha256.Sum256(append(append(buf[:0], "gonets status order\x00"...), orderID...))
	return append(userPrefix(user), h[:16]...)
}

// digest identifies a status within an application.
type digest [16]byte

// digestOf hashes s's code, time and title.
func digestOf(s Status) digest {
	var buf [64 + MaxCode + MaxTitle]byte
	b := append(buf[:0], "gonets status\x00"...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Code)))
	b = append(b, s.Code...)
	b = binary.BigEndian.AppendUint64(b, uint64(s.At.UnixNano()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Title)))
	b = append(b, s.Title...)
	h := sha256.Sum256(b)
	return digest(h[:16])
}

// msgID derives Event.MsgID from the user, the order and the status's
// digest: stable across polls and restarts, never zero.
func msgID(user uint64, orderID string, d digest) uint64 {
	var buf [64 + MaxOrderID]byte
	b := append(buf[:0], "gonets status msg\x00"...)
	b = binary.BigEndian.AppendUint64(b, user)
	b = binary.BigEndian.AppendUint32(b, uint32(len(orderID)))
	b = append(b, orderID...)
	b = append(b, d[:]...)
	h := sha256.Sum256(b)
	if id := binary.BigEndian.Uint64(h[:]); id != 0 {
		return id
	}
	return 1
}

// seen is one posted status in a cursor.
type seen struct {
	at int64 // Status.At in Unix nanoseconds
	d  digest
}

// cursor is what was posted of one application.
type cursor struct {
	floor int64 // statuses at or before it count as posted; MinInt64: none
	seen  []seen
}

func newCursor() cursor { return cursor{floor: math.MinInt64} }

// posted reports whether the status d at at counts as posted.
func (c *cursor) posted(d digest, at int64) bool {
	if at <= c.floor {
		return true
	}
	for _, s := range c.seen {
		if s.d == d {
			return true
		}
	}
	return false
}

// add records d at at as posted, forgetting the earliest status past
// MaxSeen and raising the floor to it.
func (c *cursor) add(d digest, at int64) {
	c.seen = append(c.seen, seen{at: at, d: d})
	if len(c.seen) <= MaxSeen {
		return
	}
	first := 0
	for i, s := range c.seen {
		if s.at < c.seen[first].at {
			first = i
		}
	}
	c.floor = max(c.floor, c.seen[first].at)
	c.seen = append(c.seen[:first], c.seen[first+1:]...)
}

// cursorVersion is the first byte of an encoded cursor.
const cursorVersion = 1

// seenSize is the encoded size of one seen.
const seenSize = 8 + len(digest{})

// marshal encodes c: version, floor, count, then each (at, digest).
func (c *cursor) marshal() []byte {
	b := make([]byte, 0, 1+8+2+len(c.seen)*seenSize)
	b = append(b, cursorVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(c.floor))
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.seen)))
	for _, s := range c.seen {
		b = binary.BigEndian.AppendUint64(b, uint64(s.at))
		b = append(b, s.d[:]...)
	}
	return b
}

// parseCursor decodes marshal's encoding; errors wrap ErrCorruptCursor.
func parseCursor(b []byte) (cursor, error) {
	if len(b) < 11 || b[0] != cursorVersion {
		return cursor{}, fmt.Errorf("%w: %d bytes, version %v", ErrCorruptCursor, len(b), b[:min(len(b), 1)])
	}
	c := cursor{floor: int64(binary.BigEndian.Uint64(b[1:]))}
	n := int(binary.BigEndian.Uint16(b[9:]))
	b = b[11:]
	if n > MaxSeen || len(b) != n*seenSize {
		return cursor{}, fmt.Errorf("%w: %d statuses in %d bytes", ErrCorruptCursor, n, len(b))
	}
	c.seen = make([]seen, n)
	for i := range c.seen {
		c.seen[i].at = int64(binary.BigEndian.Uint64(b))
		copy(c.seen[i].d[:], b[8:seenSize])
		b = b[seenSize:]
	}
	return c, nil
}
