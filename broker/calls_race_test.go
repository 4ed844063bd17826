package broker_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
)

// gatedMedia wraps the fake SFU: a Join or Leave of a gated user waits
// for its release, and a Join that comes after the call's End succeeds,
// bringing the room back, as the real SFU adapter's does (it starts a
// room for a call it does not run).
type gatedMedia struct {
	*brokertest.CallMedia
	entered chan broker.CallParticipant

	mu        sync.Mutex               // guards the following
	joinGate  map[uint64]chan struct{} // by user
	leaveGate map[uint64]chan struct{}
	revived   map[broker.CallID]bool // rooms a Join after End brought back
}

func newGatedMedia() *gatedMedia {
	return &gatedMedia{
		CallMedia: brokertest.NewCallMedia(), entered: make(chan broker.CallParticipant, 16),
		joinGate: map[uint64]chan struct{}{}, leaveGate: map[uint64]chan struct{}{}, revived: map[broker.CallID]bool{},
	}
}

// gate holds the next call of user in m until the returned channel is
// closed.
func (g *gatedMedia) gate(m map[uint64]chan struct{}, user uint64) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch := make(chan struct{})
	m[user] = ch
	return ch
}

func (g *gatedMedia) wait(m map[uint64]chan struct{}, p broker.CallParticipant) {
	g.mu.Lock()
	ch := m[uint64(p.User)]
	delete(m, uint64(p.User))
	g.mu.Unlock()
	if ch != nil {
		g.entered <- p
		<-ch
	}
}

func (g *gatedMedia) Join(ctx context.Context, p broker.CallParticipant, video bool, ev func(broker.CallEvent)) error {
	g.wait(g.joinGate, p)
	if g.Ended(p.Call) {
		g.mu.Lock()
		g.revived[p.Call] = true
		g.mu.Unlock()
		return nil
	}
	return g.CallMedia.Join(ctx, p, video, ev)
}

func (g *gatedMedia) Leave(ctx context.Context, p broker.CallParticipant) error {
	g.wait(g.leaveGate, p)
	return g.CallMedia.Leave(ctx, p)
}

func (g *gatedMedia) End(ctx context.Context, call broker.CallID) error {
	g.mu.Lock()
	delete(g.revived, call)
	g.mu.Unlock()
	return g.CallMedia.End(ctx, call)
}

// isRevived reports whether a late Join brought the call's room back and
// no End followed.
func (g *gatedMedia) isRevived(call broker.CallID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.revived[call]
}

func gatedNode(t *testing.T) (*brokertest.Node, *gatedMedia) {
	t.Helper()
	media := newGatedMedia()
	return brokertest.Start(t, brokertest.Options{Broker: broker.Options{Calls: media}}), media
}

// TestCallRefusedAcceptChangesNothing checks that an accept the SFU
// refuses leaves the call as it was: still ringing, answerable.
func TestCallRefusedAcceptChangesNothing(t *testing.T) {
	n, media := callNode(t, 0)
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(direct, 2)
	call := alice.mustCall(startFrame(chat, false)).Call
	bob.pushOf("ring", func(f *wire.Frame) bool { return f.GetCallRing() != nil })

	media.Fail("Join", errors.New("sfu: transient failure"))
	if resp := bob.do(acceptFrame(call)); resp.GetError() == nil {
		t.Fatalf("accept with the SFU failing: %v", resp)
	}
	media.Fail("Join", nil)
	alice.noCallPush()
	if info := bob.mustCall(acceptFrame(call)); len(info.Participants) != 2 {
		t.Fatalf("the accept after a refused one: %v", info)
	}
	if u := alice.update(wire.CallUpdateKind_CALL_UPDATE_KIND_ACCEPTED); u.User != 2 {
		t.Fatalf("accepted: %v", u)
	}
}

// TestCallStaleLeaveKeepsRejoinedDevice checks that a device that
// rejoins on a new connection while its old session's Leave is still on
// its way to the SFU stays in the room: each join has its own id.
func TestCallStaleLeaveKeepsRejoinedDevice(t *testing.T) {
	n, media := gatedNode(t)
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(group, 2)
	call := alice.mustCall(startFrame(chat, false)).Call
	bob.mustCall(acceptFrame(call))

	release := media.gate(media.leaveGate, 2)
	bob.conn.CloseWithError(0, "network change") // the node's Leave of bob's join waits
	<-media.entered

	bob2 := dial(t, n, n.Token(t, 2, 1)) // the same device, a new connection
	if info := bob2.mustCall(joinFrame(call)); len(info.Participants) != 2 {
		t.Fatalf("rejoin: %v", info)
	}
	close(release)
	eventually(t, "the old join's Leave", func() bool {
		return slices.ContainsFunc(media.Log(), func(l string) bool { return l == "Leave 2/1" })
	})
	if a := bob2.do(publishFrame(call, "v=0 offer")).GetCallAnswer(); a == nil {
		t.Fatalf("the rejoined device cannot publish: the room holds %v", media.In(broker.CallID(call)))
	}
}

// TestCallJoinRacingHangUp checks that a join whose SFU Join lands after
// the call ended is refused (UNKNOWN_CALL) and the room it brought back
// is ended again.
func TestCallJoinRacingHangUp(t *testing.T) {
	n, media := gatedNode(t)
	alice, bob, carol := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1)), dial(t, n, n.Token(t, 3, 1))
	chat := alice.createChat(group, 2, 3)
	call := alice.mustCall(startFrame(chat, false)).Call
	bob.mustCall(acceptFrame(call))

	release := media.gate(media.joinGate, 3)
	resp := make(chan *wire.Frame, 1)
	go func() { resp <- carol.do(joinFrame(call)) }()
	<-media.entered
	alice.mustDone(hangUpFrame(call))
	close(release)
	if code := errCode(t, <-resp); code != wire.ErrorCode_ERROR_CODE_UNKNOWN_CALL {
		t.Fatalf("a join the call ended under: %v", code)
	}
	if media.isRevived(broker.CallID(call)) {
		t.Fatal("the room the late Join brought back was not ended")
	}
}

// TestCallShutdownDuringStart checks that a node shutting down while a
// start waits for the SFU discards that call: nothing rings, nothing is
// recorded, and the room the late Join brought back is ended.
func TestCallShutdownDuringStart(t *testing.T) {
	n, media := gatedNode(t)
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(direct, 2)

	release := media.gate(media.joinGate, 1)
	go alice.do(startFrame(chat, false))
	p := <-media.entered
	stopped := make(chan struct{})
	go func() {
		n.Stop()
		close(stopped)
	}()
	eventually(t, "End", func() bool { return media.Ended(p.Call) })
	close(release)
	<-stopped
	for {
		select {
		case f := <-bob.pushes:
			if f.GetCallRing() != nil || f.GetCallUpdate() != nil || f.GetDeliver() != nil {
				t.Fatalf("bob got %v for a call that never rang", f)
			}
			continue
		case <-time.After(100 * time.Millisecond):
		}
		break
	}
	if media.isRevived(p.Call) {
		t.Fatal("the room the late Join brought back was not ended")
	}
}

// TestCallMemberRemovedDuringJoin checks that a member removed from the
// group while its join waits for the SFU does not end up in the call.
func TestCallMemberRemovedDuringJoin(t *testing.T) {
	n, media := gatedNode(t)
	alice, bob, carol := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1)), dial(t, n, n.Token(t, 3, 1))
	chat := alice.createChat(group, 2, 3)
	call := alice.mustCall(startFrame(chat, false)).Call
	bob.mustCall(acceptFrame(call))

	release := media.gate(media.joinGate, 3)
	resp := make(chan *wire.Frame, 1)
	go func() { resp <- carol.do(joinFrame(call)) }()
	<-media.entered
	alice.mustDone(&wire.Frame{Body: &wire.Frame_RemoveMember{RemoveMember: &wire.RemoveMember{Chat: chat, User: 3}}})
	close(release)
	if r := <-resp; r.GetCallInfo() != nil {
		t.Fatalf("a removed member's join: %v", r)
	}
	if in := media.In(broker.CallID(call)); len(in) != 2 {
		t.Fatalf("room: %v", in)
	}
}

// TestCallRingsOnlyRungUsers checks that a start rings exactly the users
// it recorded as rung: a member who comes online while the start waits
// for the SFU is not rung (no ring it could never stop).
func TestCallRingsOnlyRungUsers(t *testing.T) {
	n, media := gatedNode(t)
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(group, 2, 3)

	release := media.gate(media.joinGate, 1)
	resp := make(chan *wire.Frame, 1)
	go func() { resp <- alice.do(startFrame(chat, false)) }()
	<-media.entered
	carol := dial(t, n, n.Token(t, 3, 1)) // online after the start chose whom to ring
	close(release)
	if (<-resp).GetCallInfo() == nil {
		t.Fatal("start failed")
	}
	bob.pushOf("ring", func(f *wire.Frame) bool { return f.GetCallRing() != nil })
	carol.noCallPush()
}
