package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
)

// callNode starts a node whose calls run on a fake SFU, ringing for ring
// (45 s when 0).
func callNode(t *testing.T, ring time.Duration) (*brokertest.Node, *brokertest.CallMedia) {
	t.Helper()
	media := brokertest.NewCallMedia()
	return brokertest.Start(t, brokertest.Options{Broker: broker.Options{Calls: media, CallRingTimeout: ring}}), media
}

// startFrame and the others below wrap a call request in a frame.
func startFrame(chat uint64, video bool) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_CallStart{CallStart: &wire.CallStart{Chat: chat, Video: video}}}
}

func acceptFrame(call uint64) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_CallAccept{CallAccept: &wire.CallAccept{Call: call}}}
}

func joinFrame(call uint64) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_CallJoin{CallJoin: &wire.CallJoin{Call: call}}}
}

func declineFrame(call uint64) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_CallDecline{CallDecline: &wire.CallDecline{Call: call}}}
}

func leaveFrame(call uint64) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_CallLeave{CallLeave: &wire.CallLeave{Call: call}}}
}

func hangUpFrame(call uint64) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_CallHangUp{CallHangUp: &wire.CallHangUp{Call: call}}}
}

func publishFrame(call uint64, sdp string) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_CallPublish{CallPublish: &wire.CallSdp{Call: call, Sdp: sdp}}}
}

// mustCall sends a request answered by CallInfo and returns it.
func (c *wireClient) mustCall(f *wire.Frame) *wire.CallInfo {
	c.t.Helper()
	resp := c.do(f)
	info := resp.GetCallInfo()
	if info == nil {
		c.t.Fatalf("%T: %v", f.Body, resp)
	}
	return info
}

// mustDone sends a request answered by Done.
func (c *wireClient) mustDone(f *wire.Frame) {
	c.t.Helper()
	if resp := c.do(f); resp.GetDone() == nil {
		c.t.Fatalf("%T: %v", f.Body, resp)
	}
}

// pushOf waits for the next push that match accepts, dropping the others
// (typing, receipts, updates of no interest).
func (c *wireClient) pushOf(what string, match func(*wire.Frame) bool) *wire.Frame {
	c.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case f := <-c.pushes:
			if match(f) {
				return f
			}
		case <-deadline:
			c.t.Fatalf("no %s push within 5s", what)
			return nil
		}
	}
}

// update waits for a CallUpdate of kind.
func (c *wireClient) update(kind wire.CallUpdateKind) *wire.CallUpdate {
	c.t.Helper()
	return c.pushOf(kind.String(), func(f *wire.Frame) bool { return f.GetCallUpdate().GetKind() == kind }).GetCallUpdate()
}

// noCallPush checks that no call push arrives within a short while.
func (c *wireClient) noCallPush() {
	c.t.Helper()
	timeout := time.After(150 * time.Millisecond)
	for {
		select {
		case f := <-c.pushes:
			if f.GetDeliver() == nil {
				c.t.Fatalf("unexpected push %v", f)
			}
		case <-timeout:
			return
		}
	}
}

// callRecord waits for the Deliver of a call record and decodes it.
func (c *wireClient) callRecord() (*wire.Message, *wire.CallRecord) {
	c.t.Helper()
	f := c.pushOf("call record", func(f *wire.Frame) bool {
		return f.GetDeliver().GetMessage().GetKind() == wire.MsgKind_MSG_KIND_CALL
	})
	m := f.GetDeliver().GetMessage()
	var r wire.CallRecord
	if err := proto.Unmarshal(m.Body, &r); err != nil {
		c.t.Fatalf("call record body: %v", err)
	}
	return m, &r
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
	}
}

// TestCallRingsOthersNotCaller checks that a start rings every online
// device of the other member and none of the caller's: its own session
// gets the answer, its other device a JOINED update.
func TestCallRingsOthersNotCaller(t *testing.T) {
	n, media := callNode(t, 0)
	alice, alice2 := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 1, 2))
	bob, bob2 := dial(t, n, n.Token(t, 2, 1)), dial(t, n, n.Token(t, 2, 2))
	chat := alice.createChat(direct, 2)

	info := alice.mustCall(startFrame(chat, true))
	if info.Call == 0 || info.Chat != chat || !info.Video || info.Caller != 1 ||
		len(info.Participants) != 1 || info.Participants[0].User != 1 || info.Participants[0].Device != 1 {
		t.Fatalf("start: %v", info)
	}
	for _, c := range []*wireClient{bob, bob2} {
		r := c.pushOf("ring", func(f *wire.Frame) bool { return f.GetCallRing() != nil }).GetCallRing()
		if r.Call != info.Call || r.Chat != chat || r.Caller != 1 || r.Device != 1 || !r.Video || r.StartedUs == 0 {
			t.Fatalf("ring: %v", r)
		}
	}
	if u := alice2.update(wire.CallUpdateKind_CALL_UPDATE_KIND_JOINED); u.User != 1 || u.Device != 1 || u.Call != info.Call {
		t.Fatalf("alice's other device: %v", u)
	}
	alice.noCallPush()
	if got := media.Log(); !slices.Equal(got, []string{"Join 1/1 video"}) {
		t.Fatalf("media calls %q", got)
	}
}

// TestCallAcceptStopsRinging checks that an accept joins the accepting
// device, tells the caller, and tells the user's other device, which
// stops ringing; a hang-up ends the call for both, with a record.
func TestCallAcceptStopsRinging(t *testing.T) {
	n, media := callNode(t, 0)
	alice := dial(t, n, n.Token(t, 1, 1))
	bob, bob2 := dial(t, n, n.Token(t, 2, 1)), dial(t, n, n.Token(t, 2, 2))
	chat := alice.createChat(direct, 2)
	call := alice.mustCall(startFrame(chat, false)).Call

	info := bob2.mustCall(acceptFrame(call))
	if len(info.Participants) != 2 {
		t.Fatalf("accept: %v", info)
	}
	for _, c := range []*wireClient{alice, bob} {
		if u := c.update(wire.CallUpdateKind_CALL_UPDATE_KIND_ACCEPTED); u.User != 2 || u.Device != 2 {
			t.Fatalf("accepted: %v", u)
		}
	}
	if in := media.In(broker.CallID(call)); len(in) != 2 || in[1].User != 2 || in[1].Device != 2 {
		t.Fatalf("room: %v", in)
	}
	time.Sleep(20 * time.Millisecond) // a duration above 0
	alice.mustDone(hangUpFrame(call))
	if u := bob2.update(wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED); u.Reason != wire.CallEndReason_CALL_END_REASON_HUNG_UP {
		t.Fatalf("ended: %v", u)
	}
	if !media.Ended(broker.CallID(call)) {
		t.Fatal("the SFU's room was not ended")
	}
	m, r := bob.callRecord()
	if m.Sender != 1 || m.Device != uint64(1<<64-1) || m.ClientMsgId != call {
		t.Fatalf("record message: %v", m)
	}
	if r.Call != call || r.Caller != 1 || r.Video || r.Missed || r.DurationMs < 20 || r.Reason != wire.CallEndReason_CALL_END_REASON_HUNG_UP ||
		!slices.Equal(r.Joined, []uint64{1, 2}) {
		t.Fatalf("record: %v", r)
	}
	// The call is gone: a join finds nothing.
	if code := errCode(t, bob.do(joinFrame(call))); code != wire.ErrorCode_ERROR_CODE_UNKNOWN_CALL {
		t.Fatalf("join of an ended call: %v", code)
	}
}

// TestCallDeclineIsMissed checks that a decline of a direct call ends it
// and leaves a missed call in the chat's history.
func TestCallDeclineIsMissed(t *testing.T) {
	n, _ := callNode(t, 0)
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(direct, 2)
	call := alice.mustCall(startFrame(chat, true)).Call
	bob.pushOf("ring", func(f *wire.Frame) bool { return f.GetCallRing() != nil })

	bob.mustDone(declineFrame(call))
	if u := alice.update(wire.CallUpdateKind_CALL_UPDATE_KIND_DECLINED); u.User != 2 {
		t.Fatalf("declined: %v", u)
	}
	if u := alice.update(wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED); u.Reason != wire.CallEndReason_CALL_END_REASON_DECLINED {
		t.Fatalf("ended: %v", u)
	}
	h := bob.do(&wire.Frame{Body: &wire.Frame_History{History: &wire.HistoryRequest{Chat: chat}}}).GetHistoryResult()
	if len(h.GetMessages()) != 1 || h.Messages[0].Kind != wire.MsgKind_MSG_KIND_CALL {
		t.Fatalf("history: %v", h)
	}
	var r wire.CallRecord
	if err := proto.Unmarshal(h.Messages[0].Body, &r); err != nil {
		t.Fatal(err)
	}
	if !r.Missed || r.DurationMs != 0 || r.Reason != wire.CallEndReason_CALL_END_REASON_DECLINED || !slices.Equal(r.Joined, []uint64{1}) || !r.Video {
		t.Fatalf("record: %v", &r)
	}
	// A second decline finds no ring.
	if code := errCode(t, bob.do(declineFrame(call))); code != wire.ErrorCode_ERROR_CODE_UNKNOWN_CALL {
		t.Fatalf("decline of an ended call: %v", code)
	}
}

// TestCallRingTimeoutMissedAfterSync checks that a ring no one answers
// times out, ends the call as missed, and that the callee, offline all
// along, finds the missed call when it connects and reads the chat.
func TestCallRingTimeoutMissedAfterSync(t *testing.T) {
	n, media := callNode(t, 200*time.Millisecond)
	alice := dial(t, n, n.Token(t, 1, 1))
	chat := alice.createChat(direct, 2)
	call := alice.mustCall(startFrame(chat, false)).Call
	if u := alice.update(wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED); u.Reason != wire.CallEndReason_CALL_END_REASON_NO_ANSWER {
		t.Fatalf("ended: %v", u)
	}
	if !media.Ended(broker.CallID(call)) {
		t.Fatal("room not ended")
	}

	bob := dial(t, n, n.Token(t, 2, 1))
	res := bob.do(&wire.Frame{Body: &wire.Frame_Sync{Sync: &wire.SyncRequest{}}}).GetSyncResult()
	if len(res.GetDialogs()) != 1 || res.Dialogs[0].Chat != chat || res.Dialogs[0].LastSeq != 1 {
		t.Fatalf("sync: %v", res)
	}
	h := bob.do(&wire.Frame{Body: &wire.Frame_History{History: &wire.HistoryRequest{Chat: chat}}}).GetHistoryResult()
	var r wire.CallRecord
	if len(h.GetMessages()) != 1 || proto.Unmarshal(h.Messages[0].Body, &r) != nil {
		t.Fatalf("history: %v", h)
	}
	if !r.Missed || r.Reason != wire.CallEndReason_CALL_END_REASON_NO_ANSWER || r.Caller != 1 || r.Call != call {
		t.Fatalf("record: %v", &r)
	}
	var buf bytes.Buffer
	n.Broker().Metrics().WritePrometheus(&buf)
	for _, want := range []string{"gonets_broker_calls_started_total 1\n", "gonets_broker_calls_missed_total 1\n",
		"gonets_broker_calls_ended_total 1\n", "gonets_broker_call_participants 0\n", "gonets_broker_calls 0\n"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestCallGroupRingTimeoutKeepsAnsweredCall checks that in a group a ring
// timing out stops only the unanswered user's devices (MISSED to them)
// while the call of those who joined goes on.
func TestCallGroupRingTimeoutKeepsAnsweredCall(t *testing.T) {
	n, _ := callNode(t, 200*time.Millisecond)
	alice, bob, carol := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1)), dial(t, n, n.Token(t, 3, 1))
	chat := alice.createChat(group, 2, 3)
	call := alice.mustCall(startFrame(chat, false)).Call
	bob.mustCall(acceptFrame(call))
	if u := carol.update(wire.CallUpdateKind_CALL_UPDATE_KIND_MISSED); u.User != 3 || u.Call != call {
		t.Fatalf("missed: %v", u)
	}
	if info := alice.mustCall(joinFrame(call)); len(info.Participants) != 2 {
		t.Fatalf("the call after the timeout: %v", info)
	}
}

// TestCallNonMemberRefused checks that a user outside the chat can start,
// join, decline, hang up or signal nothing, and that the call is as it
// was.
func TestCallNonMemberRefused(t *testing.T) {
	n, media := callNode(t, 0)
	alice, bob, mallory := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1)), dial(t, n, n.Token(t, 9, 1))
	chat := alice.createChat(direct, 2)
	call := alice.mustCall(startFrame(chat, false)).Call
	bob.pushOf("ring", func(f *wire.Frame) bool { return f.GetCallRing() != nil })
	bob.mustCall(acceptFrame(call))
	alice.update(wire.CallUpdateKind_CALL_UPDATE_KIND_ACCEPTED)
	before := media.Log()

	for _, f := range []*wire.Frame{startFrame(chat, false), acceptFrame(call), joinFrame(call), declineFrame(call)} {
		if code := errCode(t, mallory.do(f)); code != wire.ErrorCode_ERROR_CODE_NOT_MEMBER {
			t.Fatalf("%T by a non-member: %v", f.Body, code)
		}
	}
	for _, f := range []*wire.Frame{leaveFrame(call), hangUpFrame(call), publishFrame(call, "v=0")} {
		if code := errCode(t, mallory.do(f)); code != wire.ErrorCode_ERROR_CODE_FORBIDDEN {
			t.Fatalf("%T by a non-participant: %v", f.Body, code)
		}
	}
	if code := errCode(t, mallory.do(joinFrame(call+1))); code != wire.ErrorCode_ERROR_CODE_UNKNOWN_CALL {
		t.Fatalf("join of an unknown call: %v", code)
	}
	if got := media.Log(); !slices.Equal(got, before) {
		t.Fatalf("media calls changed: %q, then %q", before, got)
	}
	alice.noCallPush()
	bob.noCallPush()
	if in := media.In(broker.CallID(call)); len(in) != 2 {
		t.Fatalf("room: %v", in)
	}
}

// TestCallSecondStartRefused checks that a chat holds one call: a second
// start is refused with CALL_RUNNING naming the call, which the second
// caller then joins.
func TestCallSecondStartRefused(t *testing.T) {
	n, _ := callNode(t, 0)
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(direct, 2)
	call := alice.mustCall(startFrame(chat, false)).Call
	e := bob.do(startFrame(chat, true)).GetError()
	if e.GetCode() != wire.ErrorCode_ERROR_CODE_CALL_RUNNING || e.Call != call {
		t.Fatalf("second start: %v", e)
	}
	if info := bob.mustCall(joinFrame(call)); len(info.Participants) != 2 || info.Video {
		t.Fatalf("join after CALL_RUNNING: %v", info)
	}
}

// TestCallGroupHangUpByAdminOnly checks that in a group only an admin or
// the owner ends the call for everyone; a member leaving ends it for no
// one else, and the last one leaving ends it.
func TestCallGroupHangUpByAdminOnly(t *testing.T) {
	n, media := callNode(t, 0)
	alice, bob, carol := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1)), dial(t, n, n.Token(t, 3, 1))
	chat := alice.createChat(group, 2, 3) // alice owns it
	call := bob.mustCall(startFrame(chat, true)).Call
	alice.mustCall(acceptFrame(call))
	carol.mustCall(acceptFrame(call))

	if code := errCode(t, bob.do(hangUpFrame(call))); code != wire.ErrorCode_ERROR_CODE_FORBIDDEN {
		t.Fatalf("hang-up by the (member) caller: %v", code)
	}
	carol.mustDone(leaveFrame(call))
	if u := alice.update(wire.CallUpdateKind_CALL_UPDATE_KIND_LEFT); u.User != 3 {
		t.Fatalf("left: %v", u)
	}
	if in := media.In(broker.CallID(call)); len(in) != 2 {
		t.Fatalf("room after a leave: %v", in)
	}
	alice.mustDone(hangUpFrame(call))
	// The record comes first: a client told of the end finds it.
	_, r := carol.callRecord()
	if r.Caller != 2 || r.Missed || !slices.Equal(r.Joined, []uint64{2, 1, 3}) {
		t.Fatalf("record: %v", r)
	}
	for _, c := range []*wireClient{bob, carol} {
		if u := c.update(wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED); u.Reason != wire.CallEndReason_CALL_END_REASON_HUNG_UP {
			t.Fatalf("ended: %v", u)
		}
	}
	if code := errCode(t, bob.do(&wire.Frame{Body: &wire.Frame_CallMute{CallMute: &wire.CallMute{Call: call, Track: wire.CallTrack_CALL_TRACK_AUDIO}}})); code != wire.ErrorCode_ERROR_CODE_UNKNOWN_CALL {
		t.Fatalf("mute after the end: %v", code)
	}
}

// TestCallSignalling checks the relay between a participant and the SFU:
// publish offer and answer, the SFU's subscriber offer and the answer to
// it, candidates both ways, mute, layers, the speaker, and the refusals
// of bad input.
func TestCallSignalling(t *testing.T) {
	n, media := callNode(t, 0)
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(direct, 2)
	call := alice.mustCall(startFrame(chat, true)).Call
	bob.mustCall(acceptFrame(call))
	me := broker.CallParticipant{Call: broker.CallID(call), User: 1, Device: 1}

	if a := alice.do(publishFrame(call, "v=0 offer")).GetCallAnswer(); a.GetCall() != call || a.GetSdp() != "answer to v=0 offer" {
		t.Fatalf("publish answer: %v", a)
	}
	for sdp, want := range map[string]wire.ErrorCode{"": wire.ErrorCode_ERROR_CODE_BAD_SDP, "garbage": wire.ErrorCode_ERROR_CODE_BAD_SDP} {
		if code := errCode(t, alice.do(publishFrame(call, sdp))); code != want {
			t.Fatalf("publish %q: %v, want %v", sdp, code, want)
		}
	}
	media.Fail("Publish", fmt.Errorf("room full: %w", broker.ErrTooManyPublishers))
	if code := errCode(t, bob.do(publishFrame(call, "v=0"))); code != wire.ErrorCode_ERROR_CODE_TOO_MANY_PUBLISHERS {
		t.Fatalf("publish beyond the limit: %v", code)
	}
	media.Fail("Publish", nil)

	if !media.Emit(me, broker.CallEvent{Kind: broker.CallEventOffer, SDP: "v=0 sub"}) {
		t.Fatal("alice is not in the room")
	}
	if o := alice.pushOf("offer", func(f *wire.Frame) bool { return f.GetCallOffer() != nil }).GetCallOffer(); o.Call != call || o.Sdp != "v=0 sub" {
		t.Fatalf("subscriber offer: %v", o)
	}
	alice.mustDone(&wire.Frame{Body: &wire.Frame_CallSubscriberAnswer{CallSubscriberAnswer: &wire.CallSdp{Call: call, Sdp: "v=0 sub answer"}}})
	if got := media.Answers(); !slices.Equal(got, []string{"v=0 sub answer"}) {
		t.Fatalf("answers %q", got)
	}

	media.Emit(me, broker.CallEvent{Kind: broker.CallEventCandidate, PC: broker.CallPCSubscribe, Candidate: broker.ICECandidate{Candidate: "candidate:1", SDPMid: "0", SDPMLineIndex: 1}})
	if c := alice.pushOf("candidate", func(f *wire.Frame) bool { return f.GetCallCandidate() != nil }).GetCallCandidate(); c.Pc != wire.CallPc_CALL_PC_SUBSCRIBE || c.Candidate != "candidate:1" || c.SdpMid != "0" || c.SdpMlineIndex != 1 {
		t.Fatalf("node candidate: %v", c)
	}
	cand := func(pc wire.CallPc, s string) *wire.Frame {
		return &wire.Frame{Body: &wire.Frame_CallCandidate{CallCandidate: &wire.CallCandidate{Call: call, Pc: pc, Candidate: s}}}
	}
	alice.mustDone(cand(wire.CallPc_CALL_PC_PUBLISH, "candidate:2"))
	if code := errCode(t, alice.do(cand(wire.CallPc_CALL_PC_UNSPECIFIED, "candidate:3"))); code != wire.ErrorCode_ERROR_CODE_BAD_REQUEST {
		t.Fatalf("candidate of no PeerConnection: %v", code)
	}

	alice.mustDone(&wire.Frame{Body: &wire.Frame_CallMute{CallMute: &wire.CallMute{Call: call, Track: wire.CallTrack_CALL_TRACK_VIDEO, Muted: true, TrackId: "cam"}}})
	if u := bob.update(wire.CallUpdateKind_CALL_UPDATE_KIND_MUTED); u.User != 1 || u.Track != wire.CallTrack_CALL_TRACK_VIDEO || !u.Muted || u.TrackId != "cam" {
		t.Fatalf("muted: %v", u)
	}
	alice.mustDone(&wire.Frame{Body: &wire.Frame_CallLayers{CallLayers: &wire.CallLayers{Call: call, Track: "bob-video", Quality: wire.CallQuality_CALL_QUALITY_LOW}}})
	if code := errCode(t, alice.do(&wire.Frame{Body: &wire.Frame_CallLayers{CallLayers: &wire.CallLayers{Call: call, Track: "bob-video"}}})); code != wire.ErrorCode_ERROR_CODE_BAD_REQUEST {
		t.Fatalf("layers of no quality: %v", code)
	}

	media.Emit(me, broker.CallEvent{Kind: broker.CallEventSpeaker, Speaker: broker.CallParticipant{Call: broker.CallID(call), User: 2, Device: 1}})
	if s := alice.pushOf("speaker", func(f *wire.Frame) bool { return f.GetCallSpeaker() != nil }).GetCallSpeaker(); s.User != 2 || s.Device != 1 {
		t.Fatalf("speaker: %v", s)
	}
	want := []string{"Join 1/1 video", "Join 2/1 video", "Publish 1/1", "Publish 1/1", "Publish 2/1", "Answer 1/1",
		"Candidate 1/1 pc1 candidate:2", `Mute 1/1 track2 "cam" true`, "RequestLayer 1/1 bob-video q1"}
	if got := media.Log(); !slices.Equal(got, want) {
		t.Fatalf("media calls\n%q\nwant\n%q", got, want)
	}
}

// TestCallRemovedByMedia checks that a participant the SFU drops is told
// why, leaves, and, being one of a direct call's two, ends it.
func TestCallRemovedByMedia(t *testing.T) {
	n, media := callNode(t, 0)
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(direct, 2)
	call := alice.mustCall(startFrame(chat, false)).Call
	bob.mustCall(acceptFrame(call))
	media.Emit(broker.CallParticipant{Call: broker.CallID(call), User: 2, Device: 1}, broker.CallEvent{Kind: broker.CallEventRemoved, Reason: broker.CallRemovedICEFailed})
	if r := bob.pushOf("removed", func(f *wire.Frame) bool { return f.GetCallRemoved() != nil }).GetCallRemoved(); r.Reason != wire.CallRemoveReason_CALL_REMOVE_REASON_ICE_FAILED {
		t.Fatalf("removed: %v", r)
	}
	if u := alice.update(wire.CallUpdateKind_CALL_UPDATE_KIND_LEFT); u.User != 2 {
		t.Fatalf("left: %v", u)
	}
	if u := alice.update(wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED); u.Reason != wire.CallEndReason_CALL_END_REASON_LEFT {
		t.Fatalf("ended: %v", u)
	}
}

// TestCallMovesToAnotherDevice checks that a user joining from a second
// device takes the first one out (REPLACED) and stays in the call.
func TestCallMovesToAnotherDevice(t *testing.T) {
	n, media := callNode(t, 0)
	alice, bob, bob2 := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1)), dial(t, n, n.Token(t, 2, 2))
	chat := alice.createChat(direct, 2)
	call := alice.mustCall(startFrame(chat, false)).Call
	bob.mustCall(acceptFrame(call))
	info := bob2.mustCall(joinFrame(call))
	if len(info.Participants) != 2 || info.Participants[1].Device != 2 {
		t.Fatalf("join from the second device: %v", info)
	}
	if r := bob.pushOf("removed", func(f *wire.Frame) bool { return f.GetCallRemoved() != nil }).GetCallRemoved(); r.Reason != wire.CallRemoveReason_CALL_REMOVE_REASON_REPLACED {
		t.Fatalf("removed: %v", r)
	}
	if in := media.In(broker.CallID(call)); len(in) != 2 || in[1].Device != 2 {
		t.Fatalf("room: %v", in)
	}
	if code := errCode(t, bob.do(leaveFrame(call))); code != wire.ErrorCode_ERROR_CODE_FORBIDDEN {
		t.Fatalf("leave from the replaced device: %v", code)
	}
}

// TestCallEndsWhenLastSessionGoes checks that a participant whose session
// ends leaves, and that the call, left empty, ends and is recorded.
func TestCallEndsWhenLastSessionGoes(t *testing.T) {
	n, media := callNode(t, 0)
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(group, 2)
	call := alice.mustCall(startFrame(chat, false)).Call
	alice.conn.CloseWithError(0, "")
	_, r := bob.callRecord()
	if !r.Missed || r.Call != call {
		t.Fatalf("record: %v", r)
	}
	if u := bob.update(wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED); u.Reason != wire.CallEndReason_CALL_END_REASON_LEFT {
		t.Fatalf("ended: %v", u)
	}
	eventually(t, "room ended", func() bool { return media.Ended(broker.CallID(call)) })
}

// TestCallLeavingChatLeavesCall checks that a member removed from the
// group is taken out of its call.
func TestCallLeavingChatLeavesCall(t *testing.T) {
	n, media := callNode(t, 0)
	alice, bob, carol := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1)), dial(t, n, n.Token(t, 3, 1))
	chat := alice.createChat(group, 2, 3)
	call := alice.mustCall(startFrame(chat, false)).Call
	bob.mustCall(acceptFrame(call))
	carol.mustCall(acceptFrame(call))
	alice.mustDone(&wire.Frame{Body: &wire.Frame_RemoveMember{RemoveMember: &wire.RemoveMember{Chat: chat, User: 3}}})
	if r := carol.pushOf("removed", func(f *wire.Frame) bool { return f.GetCallRemoved() != nil }).GetCallRemoved(); r.Reason != wire.CallRemoveReason_CALL_REMOVE_REASON_LEFT_CHAT {
		t.Fatalf("removed: %v", r)
	}
	if in := media.In(broker.CallID(call)); len(in) != 2 {
		t.Fatalf("room: %v", in)
	}
}

// TestCallsOff checks that a node without an SFU refuses call requests
// with CALLS_OFF.
func TestCallsOff(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	alice := dial(t, n, n.Token(t, 1, 1))
	chat := alice.createChat(direct, 2)
	if code := errCode(t, alice.do(startFrame(chat, false))); code != wire.ErrorCode_ERROR_CODE_CALLS_OFF {
		t.Fatalf("start: %v", code)
	}
}

// TestCallInChannelRefused checks that channels hold no calls.
func TestCallInChannelRefused(t *testing.T) {
	n, media := callNode(t, 0)
	alice := dial(t, n, n.Token(t, 1, 1))
	chat := alice.createChat(channel, 2)
	if code := errCode(t, alice.do(startFrame(chat, false))); code != wire.ErrorCode_ERROR_CODE_FORBIDDEN {
		t.Fatalf("start in a channel: %v", code)
	}
	if got := media.Log(); len(got) != 0 {
		t.Fatalf("media calls %q", got)
	}
}

// TestCallEndsOnShutdown checks that a node shutting down ends its calls,
// recorded.
func TestCallEndsOnShutdown(t *testing.T) {
	n, media := callNode(t, 0)
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(direct, 2)
	call := alice.mustCall(startFrame(chat, false)).Call
	bob.mustCall(acceptFrame(call))
	n.Stop()
	if u := bob.update(wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED); u.Reason != wire.CallEndReason_CALL_END_REASON_SHUTDOWN {
		t.Fatalf("ended: %v", u)
	}
	if !media.Ended(broker.CallID(call)) {
		t.Fatal("room not ended")
	}
}

// TestNodeDeviceRefused checks that no session may hold the device the
// node writes call records from.
func TestNodeDeviceRefused(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	c := dialRaw(t, n)
	resp := c.do(&wire.Frame{Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: n.Token(t, 1, 1<<64-1)}}})
	if code := errCode(t, resp); code != wire.ErrorCode_ERROR_CODE_UNAUTHENTICATED {
		t.Fatalf("hello from the node's device: %v", code)
	}
}

// TestCallGlareMakesOneCall checks that two members who start a call in
// one chat at once get one call: one start succeeds, the other is told
// CALL_RUNNING with its id.
func TestCallGlareMakesOneCall(t *testing.T) {
	n, _ := callNode(t, 0)
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(direct, 2)
	resps := make(chan *wire.Frame, 2)
	for _, c := range []*wireClient{alice, bob} {
		go func() { resps <- c.do(startFrame(chat, false)) }()
	}
	a, b := <-resps, <-resps
	if a.GetCallInfo() == nil {
		a, b = b, a
	}
	if a.GetCallInfo() == nil || b.GetError().GetCode() != wire.ErrorCode_ERROR_CODE_CALL_RUNNING || b.GetError().Call != a.GetCallInfo().Call {
		t.Fatalf("concurrent starts: %v and %v", a, b)
	}
}

// TestCallRingsLateDevice checks that a device connecting while a call
// rings its user rings too, and one connecting after the callee answered
// does not.
func TestCallRingsLateDevice(t *testing.T) {
	n, _ := callNode(t, 0)
	alice := dial(t, n, n.Token(t, 1, 1))
	chat := alice.createChat(direct, 2)
	call := alice.mustCall(startFrame(chat, true)).Call
	bob := dial(t, n, n.Token(t, 2, 1))
	if r := bob.pushOf("ring", func(f *wire.Frame) bool { return f.GetCallRing() != nil }).GetCallRing(); r.Call != call || r.Caller != 1 || !r.Video {
		t.Fatalf("late ring: %v", r)
	}
	bob.mustCall(acceptFrame(call))
	bob2 := dial(t, n, n.Token(t, 2, 2))
	bob2.noCallPush()
}

// TestCallSignallingRateLimited checks that joins, publishes, mutes and
// layer requests spend the user's send rate, and that a PeerConnection
// takes at most 50 candidates per negotiation.
func TestCallSignallingRateLimited(t *testing.T) {
	media := brokertest.NewCallMedia()
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{Calls: media, SendRate: 0.001, SendBurst: 4}})
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(group, 2)                   // 1 token
	call := alice.mustCall(startFrame(chat, false)).Call // 2
	alice.do(publishFrame(call, "v=0 offer"))            // 3
	mute := &wire.Frame{Body: &wire.Frame_CallMute{CallMute: &wire.CallMute{Call: call, Track: wire.CallTrack_CALL_TRACK_AUDIO, Muted: true}}}
	alice.mustDone(mute) // 4
	if code := errCode(t, alice.do(mute)); code != wire.ErrorCode_ERROR_CODE_RATE_LIMITED {
		t.Fatalf("a mute beyond the rate: %v", code)
	}
	if code := errCode(t, alice.do(&wire.Frame{Body: &wire.Frame_CallLayers{CallLayers: &wire.CallLayers{Call: call, Track: "x", Quality: wire.CallQuality_CALL_QUALITY_LOW}}})); code != wire.ErrorCode_ERROR_CODE_RATE_LIMITED {
		t.Fatalf("a layer request beyond the rate: %v", code)
	}

	bob.mustCall(acceptFrame(call)) // bob's own bucket
	cand := &wire.Frame{Body: &wire.Frame_CallCandidate{CallCandidate: &wire.CallCandidate{Call: call, Pc: wire.CallPc_CALL_PC_SUBSCRIBE, Candidate: "candidate:1"}}}
	for range 50 {
		bob.mustDone(cand)
	}
	if code := errCode(t, bob.do(cand)); code != wire.ErrorCode_ERROR_CODE_BAD_REQUEST {
		t.Fatalf("a 51st candidate: %v", code)
	}
	// A new subscriber offer starts a new negotiation.
	media.Emit(broker.CallParticipant{Call: broker.CallID(call), User: 2, Device: 1}, broker.CallEvent{Kind: broker.CallEventOffer, SDP: "v=0 again"})
	bob.pushOf("offer", func(f *wire.Frame) bool { return f.GetCallOffer() != nil })
	bob.mustDone(cand)
}

// endBlockingMedia is the fake SFU whose End takes until its context is
// done.
type endBlockingMedia struct{ *brokertest.CallMedia }

func (m endBlockingMedia) End(ctx context.Context, call broker.CallID) error {
	<-ctx.Done()
	return m.CallMedia.End(ctx, call)
}

// TestCallShutdownBoundedByContext checks that the calls a shutdown ends
// are ended at once and within the shutdown's context, not each in a
// context of its own.
func TestCallShutdownBoundedByContext(t *testing.T) {
	media := endBlockingMedia{brokertest.NewCallMedia()}
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{Calls: media}})
	alice := dial(t, n, n.Token(t, 1, 1))
	for device := range uint64(3) { // a device is in one call at a time
		c := dial(t, n, n.Token(t, 1, 2+device))
		c.mustCall(startFrame(alice.createChat(group, 2), false))
	}
	start := time.Now()
	n.Stop() // a second's grace
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %v with a second's grace", d)
	}
}

// TestCallRecordWhenCallerRemoved checks that a call whose caller, its
// only participant, was removed from the group still leaves its record
// in the chat.
func TestCallRecordWhenCallerRemoved(t *testing.T) {
	n, _ := callNode(t, 0)
	alice, bob, carol := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1)), dial(t, n, n.Token(t, 3, 1))
	chat := alice.createChat(group, 2, 3)
	call := bob.mustCall(startFrame(chat, false)).Call
	carol.pushOf("ring", func(f *wire.Frame) bool { return f.GetCallRing() != nil })
	alice.mustDone(&wire.Frame{Body: &wire.Frame_RemoveMember{RemoveMember: &wire.RemoveMember{Chat: chat, User: 2}}})
	m, r := carol.callRecord()
	if r.Call != call || r.Caller != 2 || !r.Missed || m.Device != uint64(1<<64-1) {
		t.Fatalf("record %v in %v", r, m)
	}
	carol.update(wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED)
}

// TestCallRemovedRungMemberStopsRinging checks that a rung member
// removed from the group has its ring stopped (MISSED) and hears no more
// of the call, and that a call then ringing no one, unanswered, ends.
func TestCallRemovedRungMemberStopsRinging(t *testing.T) {
	n, media := callNode(t, 0)
	alice, bob, carol := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1)), dial(t, n, n.Token(t, 3, 1))
	chat := alice.createChat(group, 2, 3)
	call := alice.mustCall(startFrame(chat, false)).Call
	bob.pushOf("ring", func(f *wire.Frame) bool { return f.GetCallRing() != nil })
	carol.pushOf("ring", func(f *wire.Frame) bool { return f.GetCallRing() != nil })

	alice.mustDone(&wire.Frame{Body: &wire.Frame_RemoveMember{RemoveMember: &wire.RemoveMember{Chat: chat, User: 3}}})
	if u := carol.update(wire.CallUpdateKind_CALL_UPDATE_KIND_MISSED); u.Call != call || u.User != 3 {
		t.Fatalf("missed: %v", u)
	}
	bob.mustDone(declineFrame(call))
	carol.noCallPush()
	if u := alice.update(wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED); u.Reason != wire.CallEndReason_CALL_END_REASON_DECLINED {
		t.Fatalf("ended: %v", u)
	}

	// The only rung member removed: the call ends, no one left to answer.
	call = alice.mustCall(startFrame(chat, false)).Call
	bob.pushOf("ring", func(f *wire.Frame) bool { return f.GetCallRing() != nil })
	alice.mustDone(&wire.Frame{Body: &wire.Frame_RemoveMember{RemoveMember: &wire.RemoveMember{Chat: chat, User: 2}}})
	bob.update(wire.CallUpdateKind_CALL_UPDATE_KIND_MISSED)
	if u := alice.update(wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED); u.Reason != wire.CallEndReason_CALL_END_REASON_NO_ANSWER {
		t.Fatalf("ended: %v", u)
	}
	if !media.Ended(broker.CallID(call)) {
		t.Fatal("room not ended")
	}
}

// TestCallDeclineAfterRingStopped checks that a decline that finds the
// ring stopped already (answered on another device) succeeds and changes
// nothing.
func TestCallDeclineAfterRingStopped(t *testing.T) {
	n, _ := callNode(t, 0)
	alice, bob, bob2 := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1)), dial(t, n, n.Token(t, 2, 2))
	chat := alice.createChat(direct, 2)
	call := alice.mustCall(startFrame(chat, false)).Call
	bob.mustCall(acceptFrame(call))
	alice.update(wire.CallUpdateKind_CALL_UPDATE_KIND_ACCEPTED)
	bob2.mustDone(declineFrame(call))
	alice.noCallPush()
	if info := alice.mustCall(joinFrame(call)); len(info.Participants) != 2 {
		t.Fatalf("the call after a late decline: %v", info)
	}
}
