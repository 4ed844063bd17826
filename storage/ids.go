package storage

import "fmt"

// ChatID names a chat. Zero is never a valid chat.
type ChatID uint64

// UserID names a user. Zero is never a valid user.
type UserID uint64

// DeviceID names one of a user's devices. Zero is never a valid device.
type DeviceID uint64

// DeviceNode is the device of the records a node writes itself on a
// user's behalf (call records): their client message ids are the node's,
// in a space no device of the user's shares. No session may hold it.
const DeviceNode DeviceID = 1<<64 - 1

// Service users are the node's own accounts, which write to users in
// their service chats (direct chats with a service user): new logins,
// and later the state services' statuses. They are the 256 ids below
// 2^32 (the first id the accounts store gives a person). No session may
// hold one, and MaxChatsPerUser does not cap them: a service user is in
// one chat with every user.
const (
	FirstServiceUser UserID = 1<<32 - 256
	// GosuslugiUser is the state services' account ("Госуслуги"): its
	// service chat with a user carries the statuses of the user's
	// applications and what the state-service adapters report.
	GosuslugiUser UserID = 1<<32 - 2
	// ServiceUser is the node's own service account ("Gonets").
	ServiceUser UserID = 1<<32 - 1
)

// IsServiceUser reports whether u is one of the node's service users.
func IsServiceUser(u UserID) bool { return u >= FirstServiceUser && u <= ServiceUser }

// ChatKind is the kind of a chat.
type ChatKind uint8

// Chat kinds.
const (
	// ChatDirect is a one-to-one chat between exactly two users. Its id is
	// derived from the pair, so creating it twice yields the same chat.
	ChatDirect ChatKind = 1
	// ChatGroup is a chat whose members all post.
	ChatGroup ChatKind = 2
	// ChatChannel is a broadcast chat: owners and admins post, subscribers
	// read. Its subscribers' dialog lists are read on demand (see doc.go).
	ChatChannel ChatKind = 3
)

func (k ChatKind) valid() bool { return k >= ChatDirect && k <= ChatChannel }

// String returns the lower-case name of the kind.
func (k ChatKind) String() string {
	switch k {
	case ChatDirect:
		return "direct"
	case ChatGroup:
		return "group"
	case ChatChannel:
		return "channel"
	}
	return fmt.Sprintf("ChatKind(%d)", uint8(k))
}

// Role is a member's role in a chat.
type Role uint8

// Roles, from least to most privileged.
const (
	// RoleSubscriber reads a channel.
	RoleSubscriber Role = 1
	// RoleMember reads and posts in a direct chat or group.
	RoleMember Role = 2
	// RoleAdmin may also delete others' messages and post in channels.
	RoleAdmin Role = 3
	// RoleOwner created the chat.
	RoleOwner Role = 4
)

func (r Role) valid() bool { return r >= RoleSubscriber && r <= RoleOwner }

// String returns the lower-case name of the role.
func (r Role) String() string {
	switch r {
	case RoleSubscriber:
		return "subscriber"
	case RoleMember:
		return "member"
	case RoleAdmin:
		return "admin"
	case RoleOwner:
		return "owner"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// MsgKind is the kind of a log record. Kinds below 64 are content that
// clients show; the record kinds Edit, Delete and Reaction point at an
// earlier seq through Message.Target.
type MsgKind uint8

// Message kinds.
const (
	// MsgText is a text message; Body is UTF-8 or an encoded rich text.
	MsgText MsgKind = 1
	// MsgMedia is a media message; Body references the media.
	MsgMedia MsgKind = 2
	// MsgService is a service message (joined, left, renamed, ...).
	MsgService MsgKind = 3
	// MsgCall is a call record, written by the node when a call ends (from
	// DeviceNode); Body is an encoded wire.CallRecord. It cannot be edited.
	MsgCall MsgKind = 4

	// MsgEdit replaces the body of message Target with Body. Only the
	// original sender may edit.
	MsgEdit MsgKind = 64
	// MsgDelete deletes message Target. The sender, an admin or the owner
	// may delete. Body must be empty.
	MsgDelete MsgKind = 65
	// MsgReaction sets the sender's reaction on message Target to Body (an
	// emoji, at most 64 bytes); an empty Body removes it.
	MsgReaction MsgKind = 66
)

// IsContent reports whether k is a content kind (not an edit, delete or
// reaction record).
func (k MsgKind) IsContent() bool { return k >= MsgText && k <= MsgCall }

func (k MsgKind) valid() bool { return k.IsContent() || (k >= MsgEdit && k <= MsgReaction) }
