package storage

import (
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

// DialogPage is one answer of Dialogs.
type DialogPage struct {
	Dialogs []Dialog
	// Version is the sync point to pass as since next time.
	Version uint64
	// More reports that the page was cut at limit: call again from Version.
	More bool
}

// Dialogs returns the chats of user that changed after sync point since
// (a Version from an earlier call, or 0 for all), at most limit of the
// push-indexed ones per page.
//
// The cost is proportional to the changed chats the user receives by push
// plus the user's pull chats (channels, and groups joined beyond
// Options.PushMembers), which are checked on demand; it does not grow with
// the user's unchanged push chats. See doc.go.
func (s *Store) Dialogs(user UserID, since uint64, limit int) (DialogPage, error) {
	if user == 0 {
		return DialogPage{}, ErrBadID
	}
	if limit <= 0 || limit > MaxReadLimit {
		return DialogPage{}, fmt.Errorf("storage: dialog limit %d: %w", limit, ErrBadRange)
	}
	v := s.acquire()
	defer v.release()
	page := DialogPage{Version: v.ver}
	if since >= v.ver {
		return page, nil
	}
	it, err := v.newIter(s.userKey(nil, tDialog, user, since+1), s.userKey(nil, tDialog, user, v.ver+1))
	if err != nil {
		return DialogPage{}, err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		if len(page.Dialogs) == limit {
			page.More = true
			page.Version = page.Dialogs[limit-1].Version
			return page, nil
		}
		d, ok, err := s.dialog(v, user, ChatID(lastU64(k)))
		if err != nil {
			return DialogPage{}, err
		}
		if ok {
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
	return page, pit.Error()
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
