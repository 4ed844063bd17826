package client

import (
	"time"

	"github.com/gonets/gonets/broker/wire"
)

// ChatInfo describes a chat.
type ChatInfo struct {
	Chat    uint64
	Kind    wire.ChatKind
	Title   string
	Creator uint64
	// Members is the member count.
	Members uint64
	LastSeq uint64
	// Existed reports that CreateChat found an existing direct chat.
	Existed bool
}

// Dialog is a chat that changed since a sync point, with the user's
// markers in it.
type Dialog struct {
	Chat      uint64
	Kind      wire.ChatKind
	LastSeq   uint64
	LastTime  time.Time
	Version   uint64
	Delivered uint64
	Read      uint64
}

// SyncPage is one page of Sync.
type SyncPage struct {
	Dialogs []Dialog
	// More reports a cut listing: call Sync again with Next as the cursor.
	More bool
	Next []byte
	// Version is the next sync point, once More is false.
	Version uint64
}

// HistoryPage is one page of a chat's log, in seq order.
type HistoryPage struct {
	Chat     uint64
	Messages []Message
	// LastSeq is the chat's last durable seq, Floor its first retained.
	LastSeq uint64
	Floor   uint64
}

// chatFromWire converts a wire chat description.
func chatFromWire(c *wire.ChatInfo) ChatInfo {
	return ChatInfo{
		Chat:    c.GetChat(),
		Kind:    c.GetKind(),
		Title:   c.GetTitle(),
		Creator: c.GetCreator(),
		Members: c.GetMembers(),
		LastSeq: c.GetLastSeq(),
		Existed: c.GetExisted(),
	}
}

// syncFromWire converts a sync result.
func syncFromWire(r *wire.SyncResult) SyncPage {
	p := SyncPage{More: r.GetMore(), Next: r.GetNext(), Version: r.GetVersion()}
	p.Dialogs = make([]Dialog, len(r.GetDialogs()))
	for i, d := range r.GetDialogs() {
		p.Dialogs[i] = Dialog{
			Chat:      d.GetChat(),
			Kind:      d.GetKind(),
			LastSeq:   d.GetLastSeq(),
			LastTime:  fromMicros(d.GetLastTimeUs()),
			Version:   d.GetVersion(),
			Delivered: d.GetDelivered(),
			Read:      d.GetRead(),
		}
	}
	return p
}

// historyFromWire converts a history result.
func historyFromWire(r *wire.HistoryResult) HistoryPage {
	p := HistoryPage{Chat: r.GetChat(), LastSeq: r.GetLastSeq(), Floor: r.GetFloor()}
	p.Messages = make([]Message, len(r.GetMessages()))
	for i, m := range r.GetMessages() {
		p.Messages[i] = messageFromWire(m)
	}
	return p
}
