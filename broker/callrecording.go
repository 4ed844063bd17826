package broker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// Recording a call. A participant allowed to (an admin or the owner of
// the call's group, either participant of a direct call) starts and stops
// it; the SFU (a CallMedia that is a CallRecorder) writes the files and
// says when the recording stopped, however it did (a stop, the call's
// end, the SFU's close), with its summary; the broker then writes the
// summary into the chat as a service message (wire.Service's
// call_recorded), durable like any message, and tells the call's audience
// that the recording stopped. The call's audience hears of the start too,
// and CallInfo says to later joiners that the call is being recorded.

// callRecording is a call's recording, from its start request until the
// SFU says it stopped. Its fields but mu's are guarded by callTable.mu.
type callRecording struct {
	by     storage.UserID
	device storage.DeviceID
	on     bool     // the SFU started it (CallInfo says so)
	stop   *Session // the session whose request stopped it, if one did

	// mu is held by the start throughout (the SFU's start and the
	// RECORDING_STARTED push): the stop's RECORDING_STOPPED, pushed under
	// it too, always follows, and a stop request waits on it for a start
	// on its way, to stop what it started.
	mu sync.Mutex
}

// recordingLocked reports whether c is being recorded, for CallInfo.
func (c *call) recordingLocked() bool { return c.rec != nil && c.rec.on }

// recorder returns the SFU's recording side, the session's participation
// in call id, and checks that the session may record it: it must be in
// the call and, in a group, an admin or the owner (a direct chat has no
// admins: either participant may).
func (s *Session) recorder(id CallID) (CallRecorder, *participant, error) {
	rec, ok := s.b.calls.media.(CallRecorder)
	if !ok {
		return nil, nil, fmt.Errorf("%w: this node does not record calls", ErrForbidden)
	}
	p, err := s.b.calls.participantOf(s, id)
	if err != nil {
		return nil, nil, err
	}
	if p.c.kind != storage.ChatDirect {
		e, _, err := s.access(p.c.chat, false)
		if err != nil {
			return nil, nil, err
		}
		e.mu.Lock()
		role, _ := e.roleLocked(s.user)
		e.mu.Unlock()
		s.b.chats.unref(e)
		if role < storage.RoleAdmin {
			return nil, nil, fmt.Errorf("%w: only a group's admins and owner record its calls", ErrForbidden)
		}
	}
	if err := s.spend(); err != nil {
		return nil, nil, err
	}
	return rec, p, nil
}

// startRecording starts recording the session's call. A call being
// recorded (or whose recording is starting) already is answered Done.
func (s *Session) startRecording(req *wire.CallRecordingStart) (*wire.Frame, error) {
	rec, p, err := s.recorder(CallID(req.Call))
	if err != nil {
		return nil, err
	}
	t, c := s.b.calls, p.c
	r := &callRecording{by: s.user, device: s.device}
	t.mu.Lock()
	switch {
	case c.ended:
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: %d", ErrUnknownCall, c.id)
	case c.rec != nil:
		t.mu.Unlock()
		return done(), nil
	}
	c.rec = r
	t.mu.Unlock()

	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := mediaCtx(context.Background())
	defer cancel()
	err = rec.StartRecording(ctx, p.key(), c.chat, func(sum CallRecordingSummary) error { return s.b.recordingStopped(c, r, sum) })
	t.mu.Lock()
	if err != nil {
		if c.rec == r {
			c.rec = nil
		}
		t.mu.Unlock()
		return nil, fmt.Errorf("broker: record call %d: %w", c.id, err)
	}
	r.on = c.rec == r // false if it stopped already
	t.mu.Unlock()
	s.b.log.Info("broker: call recording started", "call", c.id, "chat", c.chat, "user", s.user)
	s.b.recordingUpdate(c, &wire.CallUpdate{Kind: wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STARTED, User: uint64(s.user), Device: uint64(s.device)}, s)
	return done(), nil
}

// stopRecording stops recording the session's call, answering once the
// recording is announced in the chat. A call not being recorded is
// answered Done; a start on its way is waited for, and then stopped.
func (s *Session) stopRecording(req *wire.CallRecordingStop) (*wire.Frame, error) {
	rec, p, err := s.recorder(CallID(req.Call))
	if err != nil {
		return nil, err
	}
	t, c := s.b.calls, p.c
	t.mu.Lock()
	r := c.rec
	t.mu.Unlock()
	if r == nil {
		return done(), nil
	}
	r.mu.Lock() // a start on its way holds it until it is done
	r.mu.Unlock()
	t.mu.Lock()
	if c.rec != r || !r.on {
		t.mu.Unlock()
		return done(), nil // the start failed, or the recording stopped meanwhile
	}
	if r.stop == nil {
		r.stop = s
	}
	t.mu.Unlock()
	ctx, cancel := mediaCtx(context.Background())
	defer cancel()
	err = rec.StopRecording(ctx, c.id)
	if err != nil && !errors.Is(err, ErrUnknownCall) && !errors.Is(err, ErrBadRequest) {
		return nil, fmt.Errorf("broker: stop recording call %d: %w", c.id, err)
	}
	// Stopped, by this request or concurrently (another stop, the call's
	// end): the one that stopped it announces it.
	return done(), nil
}

// recordingStopped is r's done: it announces the recording in the chat
// and then, while the call runs, tells its audience (but the session
// that stopped it) that the recording stopped. It returns the
// announcement's error: the media side keeps the recording to announce
// again.
func (b *Broker) recordingStopped(c *call, r *callRecording, sum CallRecordingSummary) error {
	t := b.calls
	t.mu.Lock()
	if c.rec == r {
		c.rec = nil
	}
	ended, stop := c.ended, r.stop
	t.mu.Unlock()
	err := b.AnnounceRecording(sum)
	if err != nil {
		b.log.Warn("broker: call recording not announced", "call", c.id, "chat", c.chat, "dir", sum.Dir, "err", err)
	}
	if ended {
		return err // CallUpdate ENDED says it all
	}
	u := &wire.CallUpdate{Kind: wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STOPPED}
	if stop != nil {
		u.User, u.Device = uint64(stop.user), uint64(stop.device)
	}
	r.mu.Lock() // after the start's push
	defer r.mu.Unlock()
	b.recordingUpdate(c, u, stop)
	return err
}

// recordingUpdate pushes a RECORDING_STARTED or RECORDING_STOPPED update
// to c's audience but except. Unlike most updates it is needed, queued
// like ENDED past a Resync: a participant must know it is recorded.
func (b *Broker) recordingUpdate(c *call, u *wire.CallUpdate, except *Session) {
	u.Call, u.Chat = uint64(c.id), uint64(c.chat)
	b.pushUsers(b.calls.audienceOf(c), except, &wire.Frame{Body: &wire.Frame_CallUpdate{CallUpdate: u}}, true)
}

// recordedNote is sum's announcement, the body of a service message.
func recordedNote(sum CallRecordingSummary) *wire.Service {
	n := &wire.CallRecorded{
		Call: uint64(sum.Call), StartedBy: uint64(sum.By), StartedUs: sum.Started.UnixMicro(),
		DurationMs: uint64(max(0, sum.Stopped.Sub(sum.Started)) / time.Millisecond), Recovered: sum.Recovered,
	}
	for _, f := range sum.Files {
		n.Bytes += uint64(max(0, f.Bytes))
		n.Files = append(n.Files, &wire.CallRecordedFile{
			Name: f.Name, User: uint64(f.User), Device: uint64(f.Device), Track: wire.CallTrack(f.Kind), Codec: f.Codec,
			OffsetMs: uint64(max(0, f.Offset) / time.Millisecond), DurationMs: uint64(max(0, f.Duration) / time.Millisecond),
			Bytes: uint64(max(0, f.Bytes)), Error: f.Error,
		})
	}
	return &wire.Service{Event: &wire.Service_CallRecorded{CallRecorded: n}}
}

// recordingMsgID is the client message id of sum's announcement: a hash
// of its directory, so that announcing it again (a retry, a recovery)
// cannot write it twice within the store's deduplication window.
func recordingMsgID(sum CallRecordingSummary) uint64 {
	h := fnv.New64a()
	h.Write([]byte("gonets recording "))
	h.Write([]byte(sum.Dir))
	return h.Sum64() | 1
}

// AnnounceRecording writes the summary of a call's recording into its
// chat as a service message (wire.Service's call_recorded), delivered like
// any message, so that members offline now find it when they sync. It is
// sent as the user who started the recording or, when that user has left
// the chat, as any member, from the node's own device. The node calls it
// when a recording stops, and at start for each recording a crash cut
// short, once its files are recovered.
func (b *Broker) AnnounceRecording(sum CallRecordingSummary) error {
	if sum.Chat == 0 {
		return fmt.Errorf("%w: recording %q names no chat", ErrBadRequest, sum.Dir)
	}
	body, err := proto.Marshal(recordedNote(sum))
	if err != nil {
		return fmt.Errorf("broker: recording note: %w", err)
	}
	sender := sum.By
	for try := 0; try < 2; try++ {
		m := storage.Message{
			Chat: sum.Chat, Sender: sender, Device: storage.DeviceNode, ClientMsgID: recordingMsgID(sum),
			Kind: storage.MsgService, Body: body,
		}
		e := b.chats.pin(sum.Chat)
		_, err = b.commit(work, e, m, nil)
		b.unpin(e)
		if !errors.Is(err, storage.ErrNotMember) || try == 1 {
			break
		}
		ms, merr := b.st.Members(sum.Chat, 0, 1)
		if merr != nil || len(ms) == 0 {
			break
		}
		sender = ms[0].User
	}
	if err != nil {
		return fmt.Errorf("broker: announce recording %q in chat %d: %w", sum.Dir, sum.Chat, err)
	}
	b.log.Info("broker: call recording announced", "call", sum.Call, "chat", sum.Chat, "dir", sum.Dir,
		"files", len(sum.Files), "recovered", sum.Recovered)
	return nil
}
