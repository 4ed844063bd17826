package broker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// recordingMedia is the fake SFU with recording: a recording runs from
// StartRecording until StopRecording or the call's End, each of which
// calls its done with a summary of one file, as the SFU does.
type recordingMedia struct {
	*brokertest.CallMedia
	// gate, when set, holds each StartRecording until it is closed,
	// after a send on entered.
	gate, entered chan struct{}

	mu     sync.Mutex // guards the following
	fail   error
	starts int
	recs   map[broker.CallID]fakeRecording
}

type fakeRecording struct {
	by      broker.CallParticipant
	chat    storage.ChatID
	started time.Time
	done    func(broker.CallRecordingSummary) error
}

func newRecordingMedia() *recordingMedia {
	return &recordingMedia{CallMedia: brokertest.NewCallMedia(), recs: make(map[broker.CallID]fakeRecording)}
}

func (m *recordingMedia) StartRecording(_ context.Context, by broker.CallParticipant, chat storage.ChatID, done func(broker.CallRecordingSummary) error) error {
	if m.gate != nil {
		m.entered <- struct{}{}
		<-m.gate
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.fail != nil:
		return m.fail
	case m.recs[by.Call].done != nil:
		return fmt.Errorf("%w: recorded already", broker.ErrBadRequest)
	}
	m.starts++
	m.recs[by.Call] = fakeRecording{by: by, chat: chat, started: time.Now(), done: done}
	return nil
}

func (m *recordingMedia) StopRecording(_ context.Context, call broker.CallID) error {
	if !m.stop(call) {
		return fmt.Errorf("%w: not recorded", broker.ErrBadRequest)
	}
	return nil
}

// End ends the room, and with it its recording.
func (m *recordingMedia) End(ctx context.Context, call broker.CallID) error {
	err := m.CallMedia.End(ctx, call)
	m.stop(call)
	return err
}

// stop ends call's recording, if one runs, calling its done.
func (m *recordingMedia) stop(call broker.CallID) bool {
	m.mu.Lock()
	r, ok := m.recs[call]
	delete(m.recs, call)
	m.mu.Unlock()
	if !ok {
		return false
	}
	dir := fmt.Sprintf("%d/1", call)
	r.done(broker.CallRecordingSummary{
		Call: call, Chat: r.chat, By: r.by.User, Dir: dir, Started: r.started, Stopped: r.started.Add(1500 * time.Millisecond),
		Files: []broker.CallRecordedFile{{
			Name: dir + "/1.1_audio-0.ogg", User: r.by.User, Device: r.by.Device, Kind: broker.CallTrackAudio, Codec: "opus",
			Offset: 20 * time.Millisecond, Duration: 1480 * time.Millisecond, Bytes: 4321,
		}},
	})
	return true
}

func recordingStartFrame(call uint64) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_CallRecordingStart{CallRecordingStart: &wire.CallRecordingStart{Call: call}}}
}

func recordingStopFrame(call uint64) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_CallRecordingStop{CallRecordingStop: &wire.CallRecordingStop{Call: call}}}
}

// recorded waits for the Deliver of a recording's announcement and
// decodes it.
func (c *wireClient) recorded() (*wire.Message, *wire.CallRecorded) {
	c.t.Helper()
	f := c.pushOf("recording", func(f *wire.Frame) bool {
		return f.GetDeliver().GetMessage().GetKind() == wire.MsgKind_MSG_KIND_SERVICE
	})
	m := f.GetDeliver().GetMessage()
	var s wire.Service
	if err := proto.Unmarshal(m.Body, &s); err != nil || s.GetCallRecorded() == nil {
		c.t.Fatalf("service message %v: %v", &s, err)
	}
	return m, s.GetCallRecorded()
}

// TestCallRecordingFailedStart: a start the SFU refuses changes nothing
// (no push, CallInfo says the call is not recorded); the next start
// records, the others hear so, a joiner's CallInfo says so, a second
// start is answered Done without reaching the SFU, and a member who is
// not an admin is refused, in a group, as is one not in the call.
func TestCallRecordingFailedStart(t *testing.T) {
	media := newRecordingMedia()
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{Calls: media}})
	alice, bob, carol := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1)), dial(t, n, n.Token(t, 3, 1))
	chat := alice.createChat(group, 2, 3) // alice owns it
	call := alice.mustCall(startFrame(chat, true)).Call
	bob.mustCall(acceptFrame(call))

	if code := errCode(t, carol.do(recordingStartFrame(call))); code != wire.ErrorCode_ERROR_CODE_FORBIDDEN {
		t.Fatalf("a start by a member not in the call: %v", code)
	}
	if code := errCode(t, bob.do(recordingStartFrame(call))); code != wire.ErrorCode_ERROR_CODE_FORBIDDEN {
		t.Fatalf("a start by a member who is not an admin: %v", code)
	}
	media.mu.Lock()
	media.fail = errors.New("disk gone")
	media.mu.Unlock()
	if code := errCode(t, alice.do(recordingStartFrame(call))); code != wire.ErrorCode_ERROR_CODE_INTERNAL {
		t.Fatalf("a start the SFU failed: %v", code)
	}
	if info := carol.mustCall(joinFrame(call)); info.Recording {
		t.Fatal("CallInfo says a failed recording runs")
	}
	bob.pushOf("carol's ACCEPTED", func(f *wire.Frame) bool { // pushes keep their order
		if f.GetCallUpdate().GetKind() == wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STARTED {
			t.Fatal("bob told of a recording that failed to start")
		}
		return f.GetCallUpdate().GetKind() == wire.CallUpdateKind_CALL_UPDATE_KIND_ACCEPTED && f.GetCallUpdate().GetUser() == 3
	})
	media.mu.Lock()
	media.fail = nil
	media.mu.Unlock()

	alice.mustDone(recordingStartFrame(call))
	for _, c := range []*wireClient{bob, carol} {
		if u := c.update(wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STARTED); u.User != 1 || u.Device != 1 || u.Chat != chat {
			t.Fatalf("started: %v", u)
		}
	}
	alice.mustDone(recordingStartFrame(call))
	media.mu.Lock()
	starts := media.starts
	media.mu.Unlock()
	if starts != 1 {
		t.Fatalf("the SFU started %d recordings, want 1", starts)
	}
	carol.mustDone(leaveFrame(call))
	if info := carol.mustCall(joinFrame(call)); !info.Recording {
		t.Fatal("CallInfo does not say the call is recorded")
	}

	alice.mustDone(recordingStopFrame(call))
	m, r := bob.recorded()
	if m.Sender != 1 || m.Device != uint64(storage.DeviceNode) || r.Call != call || r.StartedBy != 1 || r.DurationMs != 1500 || r.Bytes != 4321 ||
		len(r.Files) != 1 || r.Files[0].Track != wire.CallTrack_CALL_TRACK_AUDIO || r.Files[0].OffsetMs != 20 {
		t.Fatalf("announcement %v: %v", m, r)
	}
	if u := bob.update(wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STOPPED); u.User != 1 {
		t.Fatalf("stopped: %v", u)
	}
	alice.mustDone(recordingStopFrame(call)) // not recorded: Done
}

// TestCallRecordingEndsWithCall: in a direct chat either participant
// records; the call's end stops the recording, announced in the chat
// before the call's record, with no RECORDING_STOPPED (ENDED says it);
// on a node whose media does not record, a start is FORBIDDEN.
func TestCallRecordingEndsWithCall(t *testing.T) {
	media := newRecordingMedia()
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{Calls: media}})
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(direct, 2)
	call := alice.mustCall(startFrame(chat, false)).Call
	bob.mustCall(acceptFrame(call))
	bob.mustDone(recordingStartFrame(call))
	if u := alice.update(wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STARTED); u.User != 2 {
		t.Fatalf("started: %v", u)
	}
	alice.mustDone(hangUpFrame(call))
	f := bob.pushOf("the chat's next message", func(f *wire.Frame) bool { return f.GetDeliver() != nil })
	if k := f.GetDeliver().GetMessage().GetKind(); k != wire.MsgKind_MSG_KIND_SERVICE || f.GetDeliver().GetMessage().GetSender() != 2 {
		t.Fatalf("first message after the end: %v, want bob's recording", f.GetDeliver().GetMessage())
	}
	bob.callRecord()
	bob.pushOf("ENDED", func(f *wire.Frame) bool {
		if f.GetCallUpdate().GetKind() == wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STOPPED {
			t.Fatal("RECORDING_STOPPED after the call ended")
		}
		return f.GetCallUpdate().GetKind() == wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED
	})

	plain, _ := callNode(t, 0)
	alice = dial(t, plain, plain.Token(t, 1, 1))
	chat = alice.createChat(direct, 2)
	call = alice.mustCall(startFrame(chat, false)).Call
	if code := errCode(t, alice.do(recordingStartFrame(call))); code != wire.ErrorCode_ERROR_CODE_FORBIDDEN {
		t.Fatalf("a start on a node that records nothing: %v", code)
	}
}

// TestCallRecordingStopWaitsForStart: a stop that comes while the start
// is still with the SFU waits for it and then stops the recording: both
// are answered Done, the recording is announced, and the others hear
// RECORDING_STOPPED after RECORDING_STARTED.
func TestCallRecordingStopWaitsForStart(t *testing.T) {
	media := newRecordingMedia()
	media.gate, media.entered = make(chan struct{}), make(chan struct{}, 1)
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{Calls: media}})
	alice, bob := dial(t, n, n.Token(t, 1, 1)), dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(direct, 2)
	call := alice.mustCall(startFrame(chat, false)).Call
	bob.mustCall(acceptFrame(call))

	started, stopped := make(chan *wire.Frame, 1), make(chan *wire.Frame, 1)
	go func() { started <- alice.do(recordingStartFrame(call)) }()
	<-media.entered
	go func() { stopped <- bob.do(recordingStopFrame(call)) }()
	select {
	case f := <-stopped:
		t.Fatalf("the stop answered %v with the start on its way", f)
	case <-time.After(100 * time.Millisecond):
	}
	close(media.gate)
	if f := <-started; f.GetDone() == nil {
		t.Fatalf("start: %v", f)
	}
	if f := <-stopped; f.GetDone() == nil {
		t.Fatalf("stop: %v", f)
	}
	if m, r := alice.recorded(); m.Sender != 1 || r.Call != call {
		t.Fatalf("announcement %v: %v", m, r)
	}
	media.mu.Lock()
	running := len(media.recs)
	media.mu.Unlock()
	if running != 0 {
		t.Fatalf("%d recordings run after the stop", running)
	}
	if u := alice.pushOf("RECORDING_STOPPED", func(f *wire.Frame) bool {
		if f.GetCallUpdate().GetKind() == wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STARTED {
			t.Fatal("alice told of her own start")
		}
		return f.GetCallUpdate().GetKind() == wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STOPPED
	}).GetCallUpdate(); u.User != 2 {
		t.Fatalf("stopped: %v", u)
	}
	if u := bob.update(wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STARTED); u.User != 1 {
		t.Fatalf("started: %v", u)
	}
}
