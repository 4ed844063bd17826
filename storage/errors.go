package storage

import "errors"

// Errors returned by the store. Input errors leave the store unchanged; the
// broker maps each one onto a stable client error code.
var (
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("storage: store closed")
	// ErrFailed is returned for every write while the store is failed: a
	// commit, sync or flush failed, and the store refuses writes until it
	// has reopened its database (it retries by itself, see doc.go). Nothing
	// from the failed batch was acknowledged.
	ErrFailed = errors.New("storage: store failed; writes refused until it recovers")
	// ErrNoSpace is returned by Open when the store's disk has no room for
	// the store to open: free space and open again.
	ErrNoSpace = errors.New("storage: no space left on device")
	// ErrLocked is returned by Open when another process (or another Store
	// in this process) holds the store's directory.
	ErrLocked = errors.New("storage: another process holds the store")

	// ErrUnknownChat is returned for a chat that does not exist.
	ErrUnknownChat = errors.New("storage: unknown chat")
	// ErrChatExists is returned when creating a chat whose id is taken.
	ErrChatExists = errors.New("storage: chat exists")
	// ErrBadKind is returned for an unknown chat, role or message kind.
	ErrBadKind = errors.New("storage: bad kind")
	// ErrBadID is returned for a zero or otherwise invalid chat, user,
	// device or client message id.
	ErrBadID = errors.New("storage: bad id")
	// ErrEmptyBody is returned for a message with no body where one is needed.
	ErrEmptyBody = errors.New("storage: empty body")
	// ErrTooLarge is returned for a body over Options.MaxBodyBytes, or an
	// Append whose messages together exceed Options.MaxBatchBytes.
	ErrTooLarge = errors.New("storage: too large")
	// ErrBadRange is returned for a read with an invalid range or limit.
	ErrBadRange = errors.New("storage: bad range")

	// ErrNotMember is returned when a user is not a member of the chat.
	ErrNotMember = errors.New("storage: not a member")
	// ErrAlreadyMember is returned when adding a user who is a member.
	ErrAlreadyMember = errors.New("storage: already a member")
	// ErrTooManyMembers is returned when a chat would exceed its member cap.
	ErrTooManyMembers = errors.New("storage: too many members")
	// ErrTooManyChats is returned when a user would join more than
	// Options.MaxChatsPerUser chats.
	ErrTooManyChats = errors.New("storage: too many chats")
	// ErrNoTarget is returned when an edit, delete or reaction points at a
	// seq that holds no live message.
	ErrNoTarget = errors.New("storage: no such message")
	// ErrNotAllowed is returned when a user may not edit or delete a message.
	ErrNotAllowed = errors.New("storage: not allowed")
	// ErrTooManyReactions is returned when a message already carries
	// maxReactionKinds distinct reactions and a new one is added.
	ErrTooManyReactions = errors.New("storage: too many distinct reactions")

	// ErrNotStore is returned by Open for a directory that holds data but not
	// a Gonets store, or a store written by an incompatible version.
	ErrNotStore = errors.New("storage: not a gonets store")
)
