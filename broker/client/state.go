package client

import (
	"maps"
	"sync"
)

// SyncState is a client's position in the user's chats: the sync point of
// its last completed sync and, per chat, the highest seq up to which it
// delivered every message to the app. An app that persists it (see
// Client.SyncState) and passes it back in Options.State resumes where it
// stopped, without receiving a message twice.
type SyncState struct {
	// Since is the sync point (SyncResult.version) the next sync starts
	// from; 0 lists every chat.
	Since uint64
	// Held maps a chat id to the highest seq delivered.
	Held map[uint64]uint64
	// Transport is the transport of the last connection (TransportAuto
	// before the first). With Options.Via TransportAuto the client tries
	// it first, so an app on a network that blocks UDP, restarted with
	// its saved state, does not wait for QUIC to fail again.
	Transport Transport
}

// clone returns a deep copy, with a non-nil map.
func (s SyncState) clone() SyncState {
	out := SyncState{Since: s.Since, Held: make(map[uint64]uint64, len(s.Held)), Transport: s.Transport}
	maps.Copy(out.Held, s.Held)
	return out
}

// position is the client's live SyncState. The delivery goroutine is its
// only writer; SyncState reads it from any goroutine.
type position struct {
	mu        sync.Mutex // guards the following
	since     uint64
	held      map[uint64]uint64
	transport Transport
}

// newPosition starts from s, which it takes over.
func newPosition(s SyncState) *position {
	return &position{since: s.Since, held: s.Held, transport: s.Transport}
}

// lastTransport returns the transport of the last connection.
func (p *position) lastTransport() Transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.transport
}

// setTransport records the transport of a new connection.
func (p *position) setTransport(t Transport) {
	p.mu.Lock()
	p.transport = t
	p.mu.Unlock()
}

// get returns the highest seq delivered in chat.
func (p *position) get(chat uint64) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held[chat]
}

// hold records that every message of chat up to seq was delivered.
func (p *position) hold(chat, seq uint64) {
	p.mu.Lock()
	if seq > p.held[chat] {
		p.held[chat] = seq
	}
	p.mu.Unlock()
}

// sinceValue returns the current sync point.
func (p *position) sinceValue() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.since
}

// setSince records a completed sync.
func (p *position) setSince(v uint64) {
	p.mu.Lock()
	p.since = v
	p.mu.Unlock()
}

// snapshot returns a copy, consistent across since and held.
func (p *position) snapshot() SyncState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return SyncState{Since: p.since, Held: maps.Clone(p.held), Transport: p.transport}
}
