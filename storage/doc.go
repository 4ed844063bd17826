// Package storage is Gonets' durable message store: chats, members, every
// chat's append-only log, the dialog index and read markers, kept in one
// Pebble database and partitioned into a fixed number of virtual shards.
//
// # Model
//
// A chat is a log of records numbered by seq: 1, 2, 3, ... with no gaps.
// Content records (text, media, service) are never rewritten; edits,
// deletes and reactions are records of their own that point at an earlier
// seq (Target). The current state of a content message (latest edit,
// deleted flag, reaction counts) is kept beside the log in an overlay entry
// and merged into reads, so a reader gets both the change records (to sync
// a client by seq) and the current state of each message.
//
// Acked means durable. Append hands its messages to the committer, which
// gives each the chat's next seq, writes many callers' messages in one
// Pebble batch and commits it with one WAL sync (group commit). Only then
// are the callers answered. Messages that arrive while a sync is in flight
// form the next batch, capped at Options.MaxBatchBytes; an idle store
// commits at once. Under load a batch may wait, up to Options.SyncDelayMax
// after the previous sync began, for more messages to share its sync
// (syncPacer: never for a lone message, never when idle); the wait comes
// before the batch is written, so it delays acks but never precedes one
// to its sync. A failed commit or sync fails every caller in the batch
// and the store refuses writes (ErrFailed) until it has reopened its
// database, which it does by itself (see Failures): nothing is ever acked
// after a failed sync.
//
// Readers never see what is not yet durable. Pebble makes a batch visible
// before its sync completes, so the committer takes a Pebble snapshot right
// after applying each batch and publishes it only once the batch's sync
// has succeeded; every read goes through the latest published snapshot
// (view.go), chat records included, so a read's floor, last seq and log
// always agree.
//
// A repeated (chat, sender, device, client message id) within
// Options.DedupeWindow returns the original ack and writes nothing. Dedupe
// entries are persisted, so this holds across restarts. Scoping dedupe to
// the chat keeps every key of an append inside the chat's shard.
//
// # Shards and keys
//
// Chats and users map to one of Options.Shards virtual shards by a fixed
// hash of their id (mix64). Every key starts with its shard, big endian, so
// a shard is one contiguous key range: the unit that cluster mode will
// replicate and move. All integers in keys are big-endian uint64, so key
// order is numeric order.
//
//	shard(chat) 'c' chat                  chat record: kind, title, creator,
//	                                      last seq, floor, dedupe floor,
//	                                      version, member count, retention
//	shard(chat) 'm' chat user             member: role, mode, joined, markers
//	shard(chat) 'l' chat seq              log record: kind, codec, sender,
//	                                      device, client id, time, target, body
//	shard(chat) 's' chat seq              overlay: current state of a message
//	shard(chat) 'r' chat seq user         one user's reaction to a message
//	shard(chat) 'd' chat user device cmid dedupe entry: seq, time
//	shard(user) 'u' user chat             the user's chats: role, mode
//	shard(user) 'v' user epoch chat       push dialog index (empty value)
//	shard(user) 'p' user chat             the user's pull chats (empty value)
//	0xFFFF 'M' 'f'                        format version and shard count
//	0xFFFF 'M' 'v'                        last committed store version
//
// Membership writes touch two shards: the chat's (member entry) and the
// user's (user-chat, dialog and pull entries).
//
// # Dialogs
//
// Every batch that changes anything gets the next store version: its
// commit time in Unix microseconds, or one more than the last version if
// the clock is behind. Each chat records the version of its last change.
// Dialogs(user, since) returns the user's chats whose version is above
// since, at a cost proportional to the changed chats, not to all of the
// user's chats. Members are of two modes:
//
//   - push: the member has an index entry (user, epoch, chat), where an
//     epoch is 2^17 versions (~131 ms) and the entry sits at the epoch of the
//     chat's last change. When a change moves a chat into a new epoch, all
//     of its push members' entries move (two blind writes per member, no
//     reads: they all sit at the chat's recorded epoch); further changes in
//     the same epoch write nothing per member. A busy chat thus costs its
//     members' entries at most once per epoch, not once per message.
//     Members of direct chats and the first Options.PushMembers members of
//     a group are push members.
//   - pull: nothing is written per member on a change; Dialogs reads the
//     chat's record when the user syncs. Every channel subscriber and every
//     member joining a group beyond Options.PushMembers is a pull member. A
//     post to a channel with millions of subscribers therefore writes one
//     chat record, not millions of index entries; a user's sync costs one
//     point read per pull chat.
//
// The sync point a listing returns is the end of the epoch before its
// view's version, so the next listing starts at an epoch boundary and
// reads only chats that changed. The price is that changes of the last
// epoch before a listing are listed again by the next one; clients treat a
// listed dialog as "check this chat", so a repeat is harmless.
//
// # Retention
//
// Each chat kind has a default Retention (max age, max count), which a
// chat may override. The sweeper goroutine (every Options.SweepInterval)
// moves a chat's floor up and deletes the records below it with range
// deletions, in batches of at most Options.SweepBatch records. Only a
// prefix of a log is ever removed and reads start at the floor, so a
// reader never sees a hole. Dedupe entries are removed when their window
// has passed or their record is removed, whichever comes first. Once a
// batch's removal is durable, Options.Removed hears of its MEDIA records
// still standing (their latest revision), so that the files they carry
// are given back; a batch holds at most 8 MiB of such bodies.
//
// # Compression
//
// Bodies are compressed by the caller's goroutine before they are queued:
// s2 for bodies from 128 B, zstd from 16 KiB, kept only when they save at
// least 10%. The codec is recorded per record (and per overlay), so it can
// change without rewriting data.
//
// # Failures
//
// The store survives, and recovers from by itself, every failure Pebble
// reports as an error:
//
//   - a failed WAL write or sync (a full disk, an I/O error): the batch's
//     callers get ErrFailed; nothing of it is acked;
//   - a failed flush of a memtable into a table (Pebble would otherwise
//     stall writes once memtables pile up);
//   - an I/O error reading Pebble while building a batch.
//
// Each fails the store: writes are refused at once with ErrFailed,
// Healthy reports false, and reads go on from the last published view.
// The committer then reopens the database in place (recover.go): after
// Options.RecoverMinDelay, doubling to Options.RecoverMaxDelay, it probes
// the disk (a small synced write and, where the file system reports it,
// free space for the WAL to replay); once the disk takes writes it closes
// the database (reads fail with ErrFailed until the reopen is done),
// opens it again, writes a synced probe record, drops its chat cache and
// publishes a new view. The directory lock is held throughout. A batch
// whose sync failed may be found on disk after the reopen; it was never
// acked, and a retry of it is answered from the dedupe table. Failed
// compactions are logged and counted, not fatal: they lose nothing.
//
// The process stops (Options.Exit, after one line "storage: fatal: ...;
// the process stops; acknowledged data is safe in the WAL; restart") on
// what Pebble cannot survive: a WAL that cannot be created, or the
// previous WAL that cannot be finished, in a memtable rotation (Pebble
// panics there with its mutex released, which no recover survives:
// walFS and the WALCreated event end the process first); a failed
// MANIFEST write; a panic inside a commit; and every Logger.Fatalf of
// Pebble's (invariant violations). A restart replays the WAL: everything
// acked is there.
//
// Open refuses a disk without room to open the store (ErrNoSpace, at
// once: Pebble would otherwise retry the flush of the replayed WAL
// forever) and a directory another process holds (ErrLocked). Pebble
// retries a failed flush or compaction at once and forever; the store's
// event listener pauses those retries (up to maxRetryPause) and its log
// lines are rate-limited per message (loglimit.go), so a full disk costs
// neither a core nor the log.
//
// # Goroutines and locks
//
// Open starts two goroutines, both stopped and waited for by Close:
// the committer (commitLoop), which owns every write, the database handle
// and the chatState fields marked committer-owned, and reopens a failed
// database; and the sweeper (sweepLoop), which plans deletions from a
// read view and submits them through the committer. Callers block in
// Append and the other writes until their batch is durable; the queue to
// the committer is bounded by Options.MaxQueuedBytes. Close waits for the
// batch in flight, and so for its sync: on a disk whose syncs hang, Close
// hangs (the node bounds its shutdown and exits).
//
// Lock order: Store.mu (the chat cache) is taken alone; queue.mu is taken
// alone. Neither is held while waiting on the other or on a sync.
package storage
