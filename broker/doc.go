// Package broker routes messages between client sessions: it owns the
// delivery path from an acknowledged append to every online device.
//
// What exists so far is the fan-out core that the QUIC sessions build on:
//
//   - Payload: one encoded frame, shared by every recipient and reference
//     counted, so a message is encoded once whatever its audience, and its
//     buffer returns to a pool when the last writer is done with it.
//   - Outbox: a session's bounded queue of payloads (by count and bytes).
//     Pushing never blocks the publisher; a drained outbox keeps at most a
//     64-byte ring. When a session's outbox is full
//     it stops taking live pushes ("stalled"), every refused push is
//     counted, and the session's writer, after sending what was queued,
//     tells the client to resync from the log; the session resumes when
//     the client syncs. Fan-out allocates nothing per recipient.
//
// Lock order: an Outbox's mutex is taken alone, never while holding
// another Outbox's.
package broker
