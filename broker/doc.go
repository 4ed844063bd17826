// Package broker serves client sessions over a storage.Store: it owns the
// path from a client's request to a durable append, and from an
// acknowledged append to every online device of every member.
//
// # Sessions
//
// A Broker serves each connection (Serve, over any Conn; ServeQUIC for
// QUIC with ALPN gonets/1) as a Session: the first frame must be a Hello
// with a token the configured verifier accepts; then requests are handled
// one at a time, in order, each answered on the request stream. Pushes
// (Deliver, Receipt, Typing, Resync, GoingAway) go on a separate push
// stream that the session opens on first use. The protocol is in
// docs/protocol.md.
//
// # Delivery
//
// An acked record is encoded once into a Payload, reference counted and
// shared by every recipient. The chat's cache entry (chats.go) holds the
// member list and serialises the chat's fan-out so that sessions see its
// records in seq order; the registry maps each online user to its sessions.
// Every session has a bounded Outbox: a push that does not fit stalls it,
// the drop is counted, and the session's writer, once it has written what
// was queued, tells the client to Resync; a sync resumes pushes.
// Best-effort pushes (typing, receipts) are refused by a full outbox
// without stalling it. Fan-out allocates nothing per recipient.
//
// # Goroutines
//
// Per session: its reader (the goroutine in Serve), for the session's
// life; and a writer, started by the outbox when it becomes non-empty and
// ending when it is drained, so an idle session has one goroutine of ours
// and holds no buffer. Per listener: an accept loop. Shutdown stops the
// accept loops, asks every session to go away, waits for the connections
// (or closes them when its context ends) and for the writers.
//
// # Locks
//
// Lock order: chatEntry.mu, then a registry shard's, then an Outbox's.
// chatCache.mu and Broker.mu are taken alone. Two Outboxes' locks are
// never held together.
package broker
