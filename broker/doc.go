// Package broker serves client sessions over a storage.Store: it owns the
// path from a client's request to a durable append, and from an
// acknowledged append to every online device of every member.
//
// # Sessions
//
// A Broker serves each connection (Serve, over any Conn; ServeQUIC for
// QUIC and ServeTCP for TLS over TCP, both with ALPN gonets/1) as a
// Session: the first frame must be a Hello with a token the configured
// verifier accepts; then requests are handled one at a time, in order,
// each answered on the request stream. Pushes (Deliver, Receipt, Typing)
// go on a separate push stream that the session opens on first use;
// over TCP both are the one stream, interleaved at frame boundaries, and
// no push goes out before Welcome. The protocol is in docs/protocol.md.
//
// # Delivery
//
// An acked record is encoded once into a Payload, reference counted and
// shared by every recipient. The chat index (chats.go) holds an entry per
// chat with a member online on this node: its online members and roles,
// which fan-out walks (a post costs O(online members), whatever the
// chat's size), and its publish order, so that sessions see its records
// in seq order. A user's first session joins the user to the entries of
// all its chats (presence.go); membership commits keep them; the registry
// maps each online user to its sessions. Every session has a bounded
// Outbox: a push that does not fit stalls it, the drop is counted by
// reason, and the client is told to Resync at once; a sync resumes
// pushes. Best-effort pushes (typing, receipts) are refused by a full
// outbox without stalling it. Fan-out allocates nothing per recipient.
//
// # Calls
//
// The broker keeps the signalling state of calls (calls.go): which call
// runs in which chat, which session is in it (a user from one device at
// a time), who is being rung, and the ring timeout, one timer per call.
// The media goes through Options.Calls, a CallMedia (the SFU), which the
// broker calls outside its locks and whose per-participant events it turns
// into pushes to that session (callsignal.go). A join reserves its
// place, waits for the SFU's Join and only then commits, so that a
// refused or overtaken join changes nothing. Call pushes a device needs
// stall a slow session like messages and are pushed again when it
// resumes (callpush.go). A call ends on a hang-up,
// when its last participant leaves (in a direct chat: either one), when
// every ring is declined or times out before anyone answered, or when the
// node shuts down; its record then goes into the chat through the durable
// append path and is delivered like any message (callrecord.go). Calls
// live in the node's memory: a restart ends them, a crash without a
// record. A call's recording (callrecording.go) is the SFU's, when its
// CallMedia is a CallRecorder: the broker checks who may start and stop
// it, tells the call's audience, and writes the announcement the SFU's
// done hands it, however the recording stopped.
//
// # Streams, deadlines and admission
//
// Responses and the control frames Resync and GoingAway go on the
// client's request stream (control frames with id 0), serialised by the
// session's respMu; pushes go on the push stream. Every write gets
// WriteTimeout to make progress, or the session is closed with its reason
// counted. Over TCP, where the three share one stream, each takes the
// connection's write lock (wmu) with its own deadline, and heartbeats
// (heartbeat.go) join them: written only when nothing is under way or
// unacknowledged, so they never wait. A connection closed with a code tells the client: QUIC in its
// close, TCP in a final Error frame. Until its Hello is verified a
// connection holds a place in the admission list (admission.go), which
// evicts the oldest beyond its bounds, and a QUIC connection one stream
// with small windows.
//
// # Goroutines
//
// Per session: its reader (the goroutine in Serve), for the session's
// life; a writer, started by the outbox when it becomes non-empty and
// ending when it is drained; and a control writer, started when a Resync
// or GoingAway is due and ending once it is written. An idle session has
// one goroutine of ours and holds no buffer. Per listener: an accept
// loop; per TCP listener with heartbeats, their sweep, once a second. Per ringing call: its ring timer's function when it fires; per
// removal the SFU reports, a goroutine that takes the participant out.
// Shutdown stops the accept loops, asks every session to go away, ends
// every call (up to 16 at once, within its context, waiting for those
// goroutines and the joins in flight), waits for the connections
// (or closes them when its context ends) and for the writers, then
// closes the listeners' sockets.
//
// # Locks
//
// Lock order: a registry shard's presence lock, then chatIndex.mu, then a
// chatEntry.mu, then a registry shard's mu, then an Outbox's. A
// session's callMu comes before the call table's mu and an Outbox's. The
// call table's mu is taken alone otherwise: nothing is locked under it,
// and no CallMedia method is called while it is held. A session's respMu comes before all
// of them: hello holds it while it registers the
// session, so that Welcome is the first frame on the response stream;
// nothing takes respMu while holding another lock. Broker.mu, the
// admission list's mu and a TCPListener's mu are taken alone; a TCP
// connection's write lock is taken under respMu or alone, and a
// heartbeats list's mu under it (a first write lists the connection) or
// alone (the sweep takes the write lock only with TryLock, after letting
// go of the list). Two Outboxes' locks are never held together.
package broker
