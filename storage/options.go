package storage

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Options configure a Store. The zero value of every field means its
// default, named in the field's comment.
type Options struct {
	// Shards is the number of virtual shards chats and users are hashed
	// into. It is fixed when the store is created; reopening with another
	// non-zero value fails. Default: 256, or the stored value on reopen.
	Shards int

	// MaxBodyBytes caps a message body. Default: 64 KiB.
	MaxBodyBytes int
	// MaxBatchBytes caps the bodies of one group commit, and of one Append
	// call; a membership change counts 256 bytes per member it adds.
	// Default: 1 MiB.
	MaxBatchBytes int
	// MaxQueuedBytes caps the bodies waiting for the committer; Append
	// blocks (honouring its ctx) while the queue is full. Default: 16 MiB.
	MaxQueuedBytes int

	// SyncDelayMax bounds how long a group commit may wait, under load,
	// for more requests to share its WAL sync: the next sync begins at
	// most this long after the previous one began. An idle store, or a
	// lone sender waiting for each ack, never waits (see syncPacer).
	// Negative disables the wait. Default: 1 ms.
	SyncDelayMax time.Duration

	// DedupeWindow is how long a (sender device, client message id) is
	// remembered. Default: 24h.
	DedupeWindow time.Duration

	// MaxMembers caps the members of a group or direct chat. Channels are
	// not capped. Default: 200,000.
	MaxMembers uint64
	// MaxChatsPerUser caps the chats (of every kind) a user may be in;
	// creating or joining one more fails with ErrTooManyChats. The count
	// is kept per user, so the check reads one key. Default: 5,000.
	MaxChatsPerUser uint64
	// Uncapped, if set, names users MaxChatsPerUser does not bind (the
	// node's bots, which people open chats with by the thousand), as it
	// binds no service user. It is called in the committer: it must be
	// quick and must not block.
	Uncapped func(UserID) bool
	// PushMembers is the group size up to which members joining a group
	// have their dialog index written on every change; members joining a
	// larger group, and every channel subscriber, read it on demand.
	// Default: 1,000.
	PushMembers uint64

	// Retention is the default retention of each chat kind, indexed by
	// ChatKind; a chat may override it. Default: keep everything.
	Retention [4]Retention
	// SweepInterval is how often the retention sweeper runs; negative
	// disables it (Sweep may still be called). Default: 1 minute.
	SweepInterval time.Duration
	// SweepBatch caps the keys one sweeper batch deletes. Default: 10,000.
	SweepBatch int
	// Removed, if set, is called after retention removed records of chat,
	// once their removal is durable, with those of kind MsgMedia that were
	// not deleted, as they were when removed (Body the latest edit's): the
	// files they carry are referenced by nothing in the store any more.
	// It runs on the sweeping goroutine (Sweep's caller), so the other
	// chats' retention waits for it; one call carries the records of one
	// sweep batch (at most SweepBatch, and 8 MiB of bodies). A crash
	// between the removal and the call loses the call: the files stay
	// referenced (kept), never the other way round.
	Removed func(chat ChatID, recs []Record)

	// CacheChats caps the chats whose state is cached in memory; the
	// committer evicts idle ones beyond it. Default: 1,000,000.
	CacheChats int

	// CacheBytes is the Pebble block cache size. Default: 128 MiB.
	CacheBytes int64
	// MemTableBytes is the Pebble memtable size. Default: 64 MiB.
	MemTableBytes uint64

	// RecoverMinDelay is the wait before the first attempt to reopen a
	// failed store; each failed attempt doubles it, up to RecoverMaxDelay.
	// Default: 100 ms.
	RecoverMinDelay time.Duration
	// RecoverMaxDelay caps the wait between attempts to reopen a failed
	// store. Default: 5 s.
	RecoverMaxDelay time.Duration

	// FS is the file system under the store; tests inject faults here.
	// Default: the OS file system.
	FS vfs.FS
	// Exit ends the process after a fatal storage error (one Pebble cannot
	// survive; see doc.go), once the fatal line is logged. It must not
	// return; if it does, the goroutine that hit the error blocks forever.
	// Default: os.Exit.
	Exit func(code int)
	// Logger receives lifecycle events and errors. Default: discard.
	Logger *slog.Logger
	// Metrics is the set the store registers gonets_storage_* metrics in.
	// Default: a new set, available from Store.Metrics.
	Metrics *metrics.Set
	// Now is the clock. Default: time.Now.
	Now func() time.Time

	// pacerRate seeds the sync pacer's rate (requests per second), so
	// that a test finds the store under load from its first commit.
	pacerRate float64

	// fatalStderr also receives the fatal line when no Logger was given.
	fatalStderr io.Writer
}

// maxReactionKinds caps the distinct reactions on one message.
const maxReactionKinds = 64

// maxEmojiBytes caps one reaction.
const maxEmojiBytes = 64

// maxTitleBytes caps a chat title.
const maxTitleBytes = 256

// withDefaults returns a copy of o with defaults filled in, or an error
// naming the first invalid field.
func (o Options) withDefaults() (Options, error) {
	if o.Shards == 0 {
		o.Shards = 256
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 64 << 10
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = 1 << 20
	}
	if o.MaxQueuedBytes == 0 {
		o.MaxQueuedBytes = 16 << 20
	}
	if o.SyncDelayMax == 0 {
		o.SyncDelayMax = time.Millisecond
	}
	if o.DedupeWindow == 0 {
		o.DedupeWindow = 24 * time.Hour
	}
	if o.MaxMembers == 0 {
		o.MaxMembers = 200_000
	}
	if o.MaxChatsPerUser == 0 {
		o.MaxChatsPerUser = 5_000
	}
	if o.PushMembers == 0 {
		o.PushMembers = 1_000
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = time.Minute
	}
	if o.SweepBatch == 0 {
		o.SweepBatch = 10_000
	}
	if o.CacheChats == 0 {
		o.CacheChats = 1_000_000
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 128 << 20
	}
	if o.MemTableBytes == 0 {
		o.MemTableBytes = 64 << 20
	}
	if o.RecoverMinDelay == 0 {
		o.RecoverMinDelay = 100 * time.Millisecond
	}
	if o.RecoverMaxDelay == 0 {
		o.RecoverMaxDelay = 5 * time.Second
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Exit == nil {
		o.Exit = os.Exit
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		o.fatalStderr = os.Stderr
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch {
	case o.Shards < 1 || o.Shards >= metaShard:
		return o, fmt.Errorf("storage: Shards %d out of range [1, %d)", o.Shards, metaShard)
	case o.MaxBodyBytes < 1:
		return o, fmt.Errorf("storage: MaxBodyBytes %d must be positive", o.MaxBodyBytes)
	case o.MaxBatchBytes < o.MaxBodyBytes:
		return o, fmt.Errorf("storage: MaxBatchBytes %d below MaxBodyBytes %d", o.MaxBatchBytes, o.MaxBodyBytes)
	case o.MaxQueuedBytes < o.MaxBatchBytes:
		return o, fmt.Errorf("storage: MaxQueuedBytes %d below MaxBatchBytes %d", o.MaxQueuedBytes, o.MaxBatchBytes)
	case o.DedupeWindow < 0:
		return o, fmt.Errorf("storage: DedupeWindow %v is negative", o.DedupeWindow)
	case o.SweepBatch < 1:
		return o, fmt.Errorf("storage: SweepBatch %d must be positive", o.SweepBatch)
	case o.CacheChats < 1:
		return o, fmt.Errorf("storage: CacheChats %d must be positive", o.CacheChats)
	case o.CacheBytes < 0:
		return o, fmt.Errorf("storage: CacheBytes %d is negative", o.CacheBytes)
	case o.RecoverMinDelay < 0 || o.RecoverMaxDelay < o.RecoverMinDelay:
		return o, fmt.Errorf("storage: RecoverMinDelay %v and RecoverMaxDelay %v must satisfy 0 < min <= max", o.RecoverMinDelay, o.RecoverMaxDelay)
	}
	for k, r := range o.Retention {
		if r.MaxAge < 0 {
			return o, fmt.Errorf("storage: Retention[%s].MaxAge %v is negative", ChatKind(k), r.MaxAge)
		}
	}
	return o, nil
}
