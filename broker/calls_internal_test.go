package broker

import (
	"context"
	"math"
	"sync"
	"testing"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// eventMedia is a CallMedia that accepts everything and keeps each
// participant's event function, for a test to play the SFU.
type eventMedia struct {
	mu     sync.Mutex
	events map[CallParticipant]func(CallEvent)
}

func (m *eventMedia) Join(_ context.Context, p CallParticipant, _ bool, ev func(CallEvent)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events[p] = ev
	return nil
}

// emit hands ev to the participant of user, as the SFU would.
func (m *eventMedia) emit(t *testing.T, user storage.UserID, ev CallEvent) {
	t.Helper()
	m.mu.Lock()
	var fn func(CallEvent)
	for p, f := range m.events {
		if p.User == user {
			fn = f
		}
	}
	m.mu.Unlock()
	if fn == nil {
		t.Fatalf("user %d joined no call", user)
	}
	fn(ev)
}

func (*eventMedia) Publish(context.Context, CallParticipant, string) (string, error) { return "", nil }
func (*eventMedia) Answer(context.Context, CallParticipant, string) error            { return nil }
func (*eventMedia) Candidate(context.Context, CallParticipant, CallPC, ICECandidate) error {
	return nil
}
func (*eventMedia) Mute(context.Context, CallParticipant, CallTrack, string, bool) error { return nil }
func (*eventMedia) RequestLayer(context.Context, CallParticipant, string, CallQuality) error {
	return nil
}
func (*eventMedia) Leave(context.Context, CallParticipant) error { return nil }
func (*eventMedia) End(context.Context, CallID) error            { return nil }

// callRig is a broker on eventMedia with users 1..online online, one
// session each (their outboxes bounded by ob, never drained by a
// writer), all in one group that user 1 owns.
type callRig struct {
	b        *Broker
	media    *eventMedia
	chat     storage.ChatID
	sessions map[storage.UserID]*Session
}

func newCallRig(t *testing.T, online int, ob OutboxOptions) *callRig {
	t.Helper()
	st, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	media := &eventMedia{events: make(map[CallParticipant]func(CallEvent))}
	b, err := New(st, &token.Verifier{}, Options{Calls: media})
	if err != nil {
		t.Fatal(err)
	}
	members := make([]storage.UserID, 0, online)
	for u := storage.UserID(2); u <= storage.UserID(online); u++ {
		members = append(members, u)
	}
	c, err := st.CreateChat(context.Background(), storage.ChatSpec{Kind: storage.ChatGroup, Creator: 1, Members: members})
	if err != nil {
		t.Fatal(err)
	}
	r := &callRig{b: b, media: media, chat: c.ID, sessions: make(map[storage.UserID]*Session)}
	for u := storage.UserID(1); u <= storage.UserID(online); u++ {
		s := &Session{b: b, conn: &discardConn{}, user: u, device: 1}
		s.writeFn, s.ctlFn = func() {}, func() {}
		s.expires.Store(math.MaxInt64)
		ob.Drops = b.m.drops
		s.out = NewOutbox(ob)
		if _, err := b.register(s); err != nil {
			t.Fatal(err)
		}
		r.sessions[u] = s
	}
	return r
}

// pushes takes the pushes queued for user's session and decodes them.
func (r *callRig) pushes(t *testing.T, user storage.UserID) []*wire.Frame {
	t.Helper()
	var out []*wire.Frame
	buf := make([]*Payload, 64)
	for {
		n, _ := r.sessions[user].out.Take(buf)
		if n == 0 {
			return out
		}
		for _, p := range buf[:n] {
			f := &wire.Frame{}
			if err := wire.Decode(p.B[4:], f); err != nil {
				t.Fatal(err)
			}
			p.Release()
			out = append(out, f)
		}
	}
}

// callPushes returns the call pushes queued for user, one word each
// ("ring", the update's kind, "offer", "candidate", "removed").
func (r *callRig) callPushes(t *testing.T, user storage.UserID) []string {
	t.Helper()
	var kinds []string
	for _, f := range r.pushes(t, user) {
		switch {
		case f.GetCallRing() != nil:
			kinds = append(kinds, "ring")
		case f.GetCallUpdate() != nil:
			kinds = append(kinds, f.GetCallUpdate().Kind.String())
		case f.GetCallOffer() != nil:
			kinds = append(kinds, "offer "+f.GetCallOffer().Sdp)
		case f.GetCallCandidate() != nil:
			kinds = append(kinds, "candidate")
		case f.GetCallRemoved() != nil:
			kinds = append(kinds, "removed")
		}
	}
	return kinds
}

// stall fills user's outbox until it stalls, and empties it again: its
// pushes are refused until a resume.
func (r *callRig) stall(t *testing.T, user storage.UserID) {
	t.Helper()
	o := r.sessions[user].out
	for !o.Stalled() {
		p := NewPayload()
		p.B = append(p.B, 0, 0, 0, 0)
		o.Push(p)
		p.Release()
	}
	buf := make([]*Payload, 64)
	for n, _ := o.Take(buf); n > 0; n, _ = o.Take(buf) {
		for _, p := range buf[:n] {
			p.Release()
		}
	}
}

// TestCallBigGroupRingsAndUpdates checks that in a group with more than
// maxRelayMembers members online a call rings up to maxRelayMembers of
// them, each rung user's session gets its ring, and the call's updates
// reach its participants and the rung users.
func TestCallBigGroupRingsAndUpdates(t *testing.T) {
	const online = maxRelayMembers + 2
	r := newCallRig(t, online, OutboxOptions{})
	if _, err := r.sessions[1].startCall(&wire.CallStart{Chat: uint64(r.chat)}); err != nil {
		t.Fatal(err)
	}
	b := r.b
	b.calls.mu.Lock()
	c := b.calls.byChat[r.chat]
	var rung []storage.UserID
	for u := range c.ringing {
		rung = append(rung, u)
	}
	b.calls.mu.Unlock()
	if len(rung) != maxRelayMembers {
		t.Fatalf("%d users rung, want %d", len(rung), maxRelayMembers)
	}
	rungSet := map[storage.UserID]bool{}
	for _, u := range rung {
		rungSet[u] = true
	}
	for u := storage.UserID(2); u <= online; u++ {
		got := r.callPushes(t, u)
		if want := rungSet[u]; want != (len(got) == 1 && got[0] == "ring") {
			t.Fatalf("user %d (rung: %v) got %v", u, want, got)
		}
	}
	if _, err := r.sessions[rung[0]].joinCall(c.id); err != nil {
		t.Fatal(err)
	}
	if got := r.callPushes(t, 1); len(got) != 1 || got[0] != "CALL_UPDATE_KIND_ACCEPTED" {
		t.Fatalf("the caller got %v for an accept", got)
	}
	if _, err := r.sessions[1].hangUp(c.id); err != nil {
		t.Fatal(err)
	}
	for _, u := range rung {
		got := r.callPushes(t, u)
		if u == rung[0] {
			if len(got) != 1 || got[0] != "CALL_UPDATE_KIND_ENDED" {
				t.Fatalf("the participant got %v for the hang-up", got)
			}
			continue
		}
		if len(got) != 2 || got[1] != "CALL_UPDATE_KIND_ENDED" {
			t.Fatalf("rung user %d got %v", u, got)
		}
	}
}

// TestCallStalledSessionCatchesUp checks that the call pushes a device
// needs are not lost to a stalled outbox: its ring, then the SFU's
// offers and candidates (a later offer replacing an earlier one and the
// candidates before it), come when its sync resumes the outbox, and an
// end replaces what came before it of the call.
func TestCallStalledSessionCatchesUp(t *testing.T) {
	r := newCallRig(t, 3, OutboxOptions{MaxFrames: 4})
	r.stall(t, 2)
	if _, err := r.sessions[1].startCall(&wire.CallStart{Chat: uint64(r.chat)}); err != nil {
		t.Fatal(err)
	}
	call := r.b.calls.byChat[r.chat].id
	if got := r.callPushes(t, 2); len(got) != 0 {
		t.Fatalf("a stalled session got %v", got)
	}
	if !r.sessions[2].resume() {
		t.Fatal("not stalled")
	}
	if got := r.callPushes(t, 2); len(got) != 1 || got[0] != "ring" {
		t.Fatalf("after the resume: %v, want the ring", got)
	}

	if _, err := r.sessions[2].joinCall(call); err != nil {
		t.Fatal(err)
	}
	r.pushes(t, 1)
	r.stall(t, 2)
	cand := CallEvent{Kind: CallEventCandidate, PC: CallPCSubscribe, Candidate: ICECandidate{Candidate: "candidate:1"}}
	r.media.emit(t, 2, CallEvent{Kind: CallEventOffer, SDP: "v=0 first"})
	r.media.emit(t, 2, cand)
	r.media.emit(t, 2, CallEvent{Kind: CallEventOffer, SDP: "v=0 second"})
	r.media.emit(t, 2, cand)
	r.sessions[2].resume()
	if got := r.callPushes(t, 2); len(got) != 2 || got[0] != "offer v=0 second" || got[1] != "candidate" {
		t.Fatalf("after the resume: %v, want the second offer and its candidate", got)
	}

	r.stall(t, 3)
	r.media.emit(t, 2, CallEvent{Kind: CallEventOffer, SDP: "v=0 third"})
	r.stall(t, 2)
	r.media.emit(t, 2, CallEvent{Kind: CallEventOffer, SDP: "v=0 fourth"})
	if _, err := r.sessions[1].hangUp(call); err != nil {
		t.Fatal(err)
	}
	for _, u := range []storage.UserID{2, 3} {
		r.sessions[u].resume()
		if got := r.callPushes(t, u); len(got) != 1 || got[0] != "CALL_UPDATE_KIND_ENDED" {
			t.Fatalf("user %d after the resume: %v, want only ENDED", u, got)
		}
	}
}

// TestKeepLostRecordingUpdates: a stalled session's backlog of needed
// call pushes keeps only the latest recording update of a call, so that
// an admin starting and stopping a recording over and over cannot fill it
// and have another call's offer refused.
func TestKeepLostRecordingUpdates(t *testing.T) {
	rec := func(call uint64, k wire.CallUpdateKind) *wire.Frame {
		return &wire.Frame{Body: &wire.Frame_CallUpdate{CallUpdate: &wire.CallUpdate{Call: call, Kind: k}}}
	}
	var lost []*wire.Frame
	for i := range 2 * maxCallBacklog {
		k := wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STARTED
		if i%2 == 1 {
			k = wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STOPPED
		}
		var kept bool
		if lost, kept = keepLost(lost, rec(1, k)); !kept {
			t.Fatalf("recording update %d refused with %d kept", i, len(lost))
		}
	}
	lost, _ = keepLost(lost, rec(2, wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STARTED))
	offer := &wire.Frame{Body: &wire.Frame_CallOffer{CallOffer: &wire.CallSdp{Call: 3}}}
	lost, kept := keepLost(lost, offer)
	if !kept || len(lost) != 3 {
		t.Fatalf("backlog of %d, offer kept %v; want 3: call 1's last recording update, call 2's, the offer", len(lost), kept)
	}
	if k := lost[0].GetCallUpdate().GetKind(); k != wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STOPPED {
		t.Errorf("call 1's kept update is %v, want its last, RECORDING_STOPPED", k)
	}
}
