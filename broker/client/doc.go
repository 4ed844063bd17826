// Package client is the Go SDK of Gonets: a session with a node that
// survives connection loss and hands the app every message of the user's
// chats in order, each once.
//
// Dial connects over QUIC or TLS 1.3 over TCP (ALPN gonets/1 on both;
// pin a node's self-signed certificate with Options.Fingerprint), says
// Hello with a session token and returns once the node sent Welcome.
// Requests (Send,
// History, CreateChat, ...) are methods that block until their response;
// a refusal comes back as an *Error with a stable code (errors.Is against
// ErrNotMember and the other sentinels). Results are the package's own
// plain structs; enums (message, chat and error kinds) are the wire's.
//
// # Transports
//
// QUIC is the transport; TLS over TCP, on the same port number by
// default (Options.TCPAddr), is the fallback for networks that block or
// throttle UDP, with the same frames and the same session semantics. By
// default (Options.Via) every connection attempt races them, happy
// eyeballs style: the transport that worked last (QUIC at first;
// SyncState carries it across restarts) dials alone for 250 ms, then the
// other starts too, at once if the first failed. The first connection to
// be established gets the Hello; the other attempt is abandoned once the
// session is open, and gets the Hello only if the first fails before
// Welcome, so the node never holds two sessions of one client. A Hello
// that hears nothing while the other transport remains gets half the
// time left of DialTimeout, the other the rest.
// Client.Transport and EventConnected say which won.
//
// Over TCP the node's responses, control frames and pushes share one
// stream. One reader sorts them by id (a response) and body (Error,
// Resync, GoingAway with id 0 are control frames, the rest pushes) and
// never waits: it queues pushes for the delivery goroutine, up to
// Options.PushBuffer (4 MiB, the node's own bound) and 1,024 frames. Past
// that it drops them, counted in Stats.DroppedPushes, until the delivery
// goroutine takes a Resync it queues for itself, which catches up from
// history what was dropped. TCP has no end-to-end keep-alive: the node
// writes a heartbeat (a Ping with id 0, not answered) to a session it has
// written nothing to for 25 s, the client pings a node silent for halfway
// from the keep-alive period to Options.IdleTimeout (~40 s), and drops a
// connection silent for the idle timeout; the kernel's keep-alive probes
// are on too.
//
// # Delivery
//
// Messages, receipts, typing signals and connection changes arrive as
// Events (a channel, or the Options.OnEvent callback). The client holds,
// per chat, the highest seq up to which it delivered every message, and a
// sync point: a pushed message at or below the held seq is dropped, one
// past a gap waits for the gap. The node pushes a message to every session
// but its sender's, so the client delivers its own acked sends itself, in
// the same order; as pushes and Acks come on different streams, one can
// overtake the other, so a message past a gap first waits up to
// Options.GapHold (50 ms) for the missing ones, and only then is the gap
// fetched from history. Other chats are not held up meanwhile. An app that persists
// SyncState and passes it back in Options.State resumes without
// duplicates.
//
// # Calls
//
// Call signalling (calls.go) is requests (StartCall, AcceptCall,
// JoinCall, DeclineCall, LeaveCall, HangUp, and the WebRTC relay
// PublishOffer, AnswerSubscriber, AddCandidate, MuteCall, RequestLayer)
// and pushes delivered as EventCall* events with a CallPush, in the order
// they came, among the messages. The app runs the two PeerConnections
// itself (a WebRTC stack); the client carries their signalling. A call is
// the session's: a lost connection takes the device out of it. When a
// call ends the node appends a CALL message to the chat (CallRecordOf
// decodes it), delivered as any message.
//
// Memory is bounded: when the app does not read Events, the delivery
// goroutine blocks, the push stream is not read, QUIC flow control holds
// the node back, and the node stops pushing and later sends Resync (over
// TCP the client's push queue fills and it resyncs by itself); the
// client then catches up from history (SyncRequest from its sync point,
// HistoryRequest for every chat behind).
//
// # Accounts
//
// StartLogin and VerifyLogin log a device in by phone number and return
// its Tokens; RefreshTokens trades a refresh token for a new pair. They
// are pre-authentication requests, each on a connection of its own, sent
// once: a refresh token must never be sent twice (the node ends the
// device on a second use), so a refresh whose answer was lost returns
// ErrRefreshLost rather than retry. With Options.Refresh a Client renews
// its access token itself, at about three quarters of its life and when
// the node refuses it TOKEN_EXPIRED, one refresh at a time, and hands
// each new pair to Options.OnTokens before using it. Devices, EndDevice
// and EndOtherDevices manage the user's devices.
//
// # Reconnection
//
// When a connection breaks (not on Close) the client reconnects with
// exponential backoff and full jitter (100 ms doubling to 10 s), says
// Hello again and catches up the same way; on a GoingAway push it
// reconnects after the delay the node asked for. A rejected token stops
// the client. Requests made meanwhile wait for the connection; requests in
// flight are repeated where that is safe (see Client).
//
// # Goroutines
//
// A Client owns one delivery goroutine (run) for its life; it handles
// pushes and own sends one at a time, runs every catch-up, and reconnects.
// A connection attempt runs each transport's dial in a goroutine of its
// own, and waits for both before it returns. Each connection (session)
// over QUIC owns two readers: one matches responses on the request stream
// to waiting requests by frame id, one accepts the node's push stream
// (opened lazily) and hands pushes to the delivery goroutine over an
// unbuffered channel. Over TCP it owns three: the one reader, which
// queues pushes; the queue's, which hands them to the delivery goroutine
// over the same channel; and the keep-alive watch. Closing a session
// waits for them; Close waits for the delivery goroutine, which closes
// the last session. Locks are never nested: Client.mu, the position's
// mu, session.mu, session.wmu and the push queue's mu are each taken
// alone (wmu while one frame is written; the others briefly, around the
// fields they guard).
package client
