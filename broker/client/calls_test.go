package client_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// callUpdate returns c's next call update, failing on one of another kind.
func callUpdate(t *testing.T, c *client.Client, kind wire.CallUpdateKind) client.CallPush {
	t.Helper()
	ev := waitFor(t, c, client.EventCallUpdate)
	if ev.Call.Update != kind {
		t.Fatalf("call update %v, want %v", ev.Call.Update, kind)
	}
	return ev.Call
}

// TestCallRoundTrip runs a call through the SDK over each transport: a
// ring to both of the callee's devices, an accept that stops the other
// one ringing, the WebRTC relay both ways, mute, a refused second start
// and a bad offer, and a hang-up that ends the call and leaves its record
// in the chat.
func TestCallRoundTrip(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		media := brokertest.NewCallMedia()
		n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{Calls: media}})
		o := client.Options{Via: via}
		alice, bob, bob2 := dial(t, n, "", 1, 1, o), dial(t, n, "", 2, 1, o), dial(t, n, "", 2, 2, o)
		for _, c := range []*client.Client{alice, bob, bob2} {
			waitFor(t, c, client.EventConnected)
		}
		chat := directChat(t, alice, bob)

		info, err := alice.StartCall(ctxT(t), chat, true)
		if err != nil || info.Chat != chat || info.Caller != 1 || !info.Video || info.Started.IsZero() ||
			!slices.Equal(info.Participants, []client.CallPeer{{User: 1, Device: 1}}) {
			t.Fatalf("start: %+v, %v", info, err)
		}
		call := info.Call
		for _, c := range []*client.Client{bob, bob2} {
			if r := waitFor(t, c, client.EventCallRing).Call; r.Call != call || r.Chat != chat || r.User != 1 || r.Device != 1 || !r.Video {
				t.Fatalf("ring: %+v", r)
			}
		}
		_, err = bob.StartCall(ctxT(t), chat, false)
		var e *client.Error
		if !errors.Is(err, client.ErrCallRunning) || !errors.As(err, &e) || e.Call != call {
			t.Fatalf("second start: %v", err)
		}

		if info, err = bob.AcceptCall(ctxT(t), call); err != nil || len(info.Participants) != 2 {
			t.Fatalf("accept: %+v, %v", info, err)
		}
		for _, c := range []*client.Client{alice, bob2} {
			if u := callUpdate(t, c, wire.CallUpdateKind_CALL_UPDATE_KIND_ACCEPTED); u.User != 2 || u.Device != 1 {
				t.Fatalf("accepted: %+v", u)
			}
		}

		answer, err := alice.PublishOffer(ctxT(t), call, "v=0 offer")
		if err != nil || answer != "answer to v=0 offer" {
			t.Fatalf("publish: %q, %v", answer, err)
		}
		if _, err := alice.PublishOffer(ctxT(t), call, "not sdp"); !errors.Is(err, client.ErrBadSDP) {
			t.Fatalf("bad offer: %v", err)
		}
		me := broker.CallParticipant{Call: broker.CallID(call), User: 1, Device: 1}
		media.Emit(me, broker.CallEvent{Kind: broker.CallEventOffer, SDP: "v=0 sub"})
		if o := waitFor(t, alice, client.EventCallOffer).Call; o.Call != call || o.SDP != "v=0 sub" {
			t.Fatalf("subscriber offer: %+v", o)
		}
		if err := alice.AnswerSubscriber(ctxT(t), call, "v=0 sub answer"); err != nil {
			t.Fatal(err)
		}
		media.Emit(me, broker.CallEvent{Kind: broker.CallEventCandidate, PC: broker.CallPCSubscribe, Candidate: broker.ICECandidate{Candidate: "candidate:1", SDPMid: "0"}})
		if c := waitFor(t, alice, client.EventCallCandidate).Call; c.PC != wire.CallPc_CALL_PC_SUBSCRIBE || c.Candidate.Candidate != "candidate:1" || c.Candidate.SDPMid != "0" {
			t.Fatalf("node candidate: %+v", c)
		}
		if err := alice.AddCandidate(ctxT(t), call, wire.CallPc_CALL_PC_PUBLISH, client.ICECandidate{Candidate: "candidate:2", SDPMLineIndex: 1}); err != nil {
			t.Fatal(err)
		}
		media.Emit(me, broker.CallEvent{Kind: broker.CallEventSpeaker, Speaker: broker.CallParticipant{Call: broker.CallID(call), User: 2, Device: 1}})
		if s := waitFor(t, alice, client.EventCallSpeaker).Call; s.User != 2 || s.Device != 1 {
			t.Fatalf("speaker: %+v", s)
		}
		if err := alice.MuteCall(ctxT(t), call, wire.CallTrack_CALL_TRACK_AUDIO, "", true); err != nil {
			t.Fatal(err)
		}
		if u := callUpdate(t, bob, wire.CallUpdateKind_CALL_UPDATE_KIND_MUTED); u.User != 1 || u.Track != wire.CallTrack_CALL_TRACK_AUDIO || !u.Muted {
			t.Fatalf("muted: %+v", u)
		}
		if err := bob.RequestLayer(ctxT(t), call, "1.1.0", wire.CallQuality_CALL_QUALITY_MEDIUM); err != nil {
			t.Fatal(err)
		}
		if got := media.Answers(); !slices.Equal(got, []string{"v=0 sub answer"}) {
			t.Fatalf("subscriber answers %q", got)
		}

		if err := alice.HangUp(ctxT(t), call); err != nil {
			t.Fatal(err)
		}
		m := messages(t, bob, 1)[0]
		r, err := client.CallRecordOf(m)
		if err != nil || m.Kind != wire.MsgKind_MSG_KIND_CALL || m.Sender != 1 || r.Call != call || r.Caller != 1 || !r.Video ||
			r.Missed || r.Reason != wire.CallEndReason_CALL_END_REASON_HUNG_UP || !slices.Equal(r.Joined, []uint64{1, 2}) {
			t.Fatalf("call record %+v of %+v: %v", r, m, err)
		}
		if u := callUpdate(t, bob, wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED); u.EndReason != wire.CallEndReason_CALL_END_REASON_HUNG_UP {
			t.Fatalf("ended: %+v", u)
		}
		if _, err := bob.JoinCall(ctxT(t), call); !errors.Is(err, client.ErrUnknownCall) {
			t.Fatalf("join after the end: %v", err)
		}
	})
}

// TestCallsOffSDK checks the refusal of a node without calls.
func TestCallsOffSDK(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	alice := dial(t, n, "", 1, 1, client.Options{})
	if _, err := alice.StartCall(ctxT(t), 42, false); !errors.Is(err, client.ErrCallsOff) {
		t.Fatalf("start: %v", err)
	}
}
