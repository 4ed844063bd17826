package storage

import (
	"encoding/binary"
	"fmt"
)

// Dialog is a user's view of one chat that changed.
type Dialog struct {
	Chat     ChatID
	Kind     ChatKind
	LastSeq  uint64
	LastTime int64 // Unix µs
	// Version is the store version of the chat's last change.
	Version uint64
	// Delivered and Read are the user's markers.
	Delivered uint64
	Read      uint64
}

// DialogCursor continues a Dialogs listing cut at its limit. The zero
// value starts one.
type DialogCursor struct {
	epoch   uint64
	chat    ChatID
	version uint64 // the sync point the listing will return
}

// DialogPage is one answer of Dialogs.
type DialogPage struct {
	Dialogs []Dialog
	// More reports that the listing was cut at its limit: call again with
	// Next. Version is set on the last page only.
	More bool
	Next DialogCursor
	// Version is the sync point to pass as since next time.
	Version uint64
}

// Dialogs returns the chats of user that changed after the sync point
// since (a Version from an earlier listing, or 0 for all of them), at most
// limit push-indexed chats per page; pass the page's Next to continue.
//
// Push entries sit at the ~131 ms epoch of their chat's last change, and
// the sync points Dialogs returns end an epoch (see syncPoint), so the cost
// is proportional to the user's chats that changed since the sync point,
// and to the user's pull chats (channels and groups joined beyond
// Options.PushMembers), which are checked on demand. It does not grow with
// the user's unchanged push chats. A since that is not a returned sync
// point also reads the chats changed in its epoch before it. See doc.go.
func (s *Store) Dialogs(user UserID, since uint64, cur DialogCursor, limit int) (DialogPage, error) {
	if user == 0 {
		return DialogPage{}, ErrBadID
	}
	if limit <= 0 || limit > MaxReadLimit {
		return DialogPage{}, fmt.Errorf("storage: dialog limit %d: %w", limit, ErrBadRange)
	}
	v, err := s.acquire()
	if err != nil {
		return DialogPage{}, err
	}
	defer v.release()
	if cur.version == 0 {
		cur = DialogCursor{epoch: epochOf(since + 1), version: syncPoint(since, v.ver)}
	} else if cur.chat == ^ChatID(0) {
		cur = DialogCursor{epoch: cur.epoch + 1, version: cur.version}
	} else {
		cur.chat++
	}
	page := DialogPage{}
	if since >= v.ver {
		page.Version = cur.version
		return page, nil
	}
	it, err := v.newIter(s.dialogKey(nil, user, cur.epoch, cur.chat), s.dialogKey(nil, user, epochOf(v.ver)+1, 0))
	if err != nil {
		return DialogPage{}, err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		chat := ChatID(lastU64(k))
		if len(page.Dialogs) == limit {
			page.More = true
			return page, it.Error()
		}
		d, ok, err := s.dialog(v, user, chat)
		if err != nil {
			return DialogPage{}, err
		}
		page.Next = DialogCursor{epoch: lastU64(k[:len(k)-8]), chat: chat, version: cur.version}
		if ok && d.Version > since {
			page.Dialogs = append(page.Dialogs, d)
		}
	}
	if err := it.Error(); err != nil {
		return DialogPage{}, err
	}
	prefix := s.userKey(nil, tPull, user)
	pit, err := v.newIter(prefix, keyUpper(prefix))
	if err != nil {
		return DialogPage{}, err
	}
	defer pit.Close()
	for valid := pit.First(); valid; valid = pit.Next() {
		d, ok, err := s.dialog(v, user, ChatID(lastU64(pit.Key())))
		if err != nil {
			return DialogPage{}, err
		}
		if ok && d.Version > since {
			page.Dialogs = append(page.Dialogs, d)
		}
	}
	page.Version, page.Next = cur.version, DialogCursor{}
	return page, pit.Error()
}

// syncPoint is the sync point a listing at version ver returns: the last
// version of the epoch before ver's. Every change after it sits in a later
// epoch, so the next listing from it starts at an epoch boundary and reads
// no chat that did not change. The price: changes in the last ≤131 ms
// before a listing are listed again by the next one.
func syncPoint(since, ver uint64) uint64 {
	p := ver
	if ep := epochOf(ver); ep > 0 {
		p = ep<<epochBits - 1
	}
	return max(since, p)
}

// dialog reads chat's record and user's markers in view.
func (s *Store) dialog(v *view, user UserID, chat ChatID) (Dialog, bool, error) {
	cv, found, err := v.get(s.chatKey(nil, tChat, chat))
	if err != nil || !found {
		return Dialog{}, false, err
	}
	var rec chatRecord
	if err := rec.decode(cv); err != nil {
		return Dialog{}, false, fmt.Errorf("storage: chat %d: %w", chat, err)
	}
	d := Dialog{Chat: chat, Kind: rec.kind, LastSeq: rec.lastSeq, LastTime: rec.lastTime, Version: rec.ver}
	mv, found, err := v.get(s.chatKey(nil, tMember, chat, uint64(user)))
	if err != nil || !found {
		return Dialog{}, false, err
	}
	var m memberRecord
	if err := m.decode(mv); err != nil {
		return Dialog{}, false, fmt.Errorf("storage: member %d of chat %d: %w", user, chat, err)
	}
	d.Delivered, d.Read = m.delivered, m.read
	return d, true, nil
}

// AppendBinary appends the cursor's encoding, for a client to hand back.
func (c DialogCursor) AppendBinary(b []byte) ([]byte, error) {
	if c == (DialogCursor{}) {
		return b, nil
	}
	b = binary.AppendUvarint(b, c.epoch)
	b = binary.AppendUvarint(b, uint64(c.chat))
	return binary.AppendUvarint(b, c.version), nil
}

// ParseDialogCursor decodes a cursor encoded by AppendBinary; empty input
// is the zero cursor. A malformed one returns ErrBadRange.
func ParseDialogCursor(b []byte) (DialogCursor, error) {
	var c DialogCursor
	if len(b) == 0 {
		return c, nil
	}
	var f [3]uint64
	for i := range f {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return DialogCursor{}, fmt.Errorf("storage: dialog cursor: %w", ErrBadRange)
		}
		f[i], b = v, b[n:]
	}
	if len(b) != 0 || f[2] == 0 {
		return DialogCursor{}, fmt.Errorf("storage: dialog cursor: %w", ErrBadRange)
	}
	c.epoch, c.chat, c.version = f[0], ChatID(f[1]), f[2]
	return c, nil
}
