package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
)

// StartRecording starts recording call, which this device is in: every
// participant's audio and video, into files on the node, until
// StopRecording or the call's end; then the recording is announced in the
// chat (a SERVICE message, see CallRecordedOf). Allowed to an admin or the
// owner of a group, and to either participant of a call in a direct chat;
// others are refused FORBIDDEN. The others hear of it (an EventCallUpdate
// of kind RECORDING_STARTED). Starting a call being recorded already
// does nothing.
func (c *Client) StartRecording(ctx context.Context, call uint64) error {
	return c.done(ctx, &wire.Frame{Body: &wire.Frame_CallRecordingStart{CallRecordingStart: &wire.CallRecordingStart{Call: call}}}, false)
}

// StopRecording stops recording call, with the same rights as
// StartRecording, and returns once the recording is announced in the
// chat. The others hear of it (RECORDING_STOPPED). Stopping a call not
// being recorded does nothing.
func (c *Client) StopRecording(ctx context.Context, call uint64) error {
	return c.done(ctx, &wire.Frame{Body: &wire.Frame_CallRecordingStop{CallRecordingStop: &wire.CallRecordingStop{Call: call}}}, false)
}

// CallRecorded is a call's recording, as the node announces it in the
// chat once it stopped.
type CallRecorded struct {
	Call uint64
	// StartedBy is the user who started the recording.
	StartedBy uint64
	Started   time.Time
	Duration  time.Duration
	// Bytes is the size of every file together.
	Bytes uint64
	// Recovered: the node died while recording and finished the files
	// when it started again (up to what had reached its disk).
	Recovered bool
	Files     []RecordedFile
}

// RecordedFile is one recorded track's file on the node: Opus in Ogg, or
// VP8 in IVF.
type RecordedFile struct {
	// Name is its path under the node's recordings directory.
	Name         string
	User, Device uint64
	// Track is CALL_TRACK_AUDIO or CALL_TRACK_VIDEO; Codec "opus" or
	// "vp8".
	Track wire.CallTrack
	Codec string
	// Offset is where the file starts after the recording's start.
	Offset, Duration time.Duration
	Bytes            uint64
	// Error is the write error that ended the file early, if any.
	Error string
}

// CallRecordedOf decodes a recording's announcement, a SERVICE message.
func CallRecordedOf(m Message) (CallRecorded, error) {
	if m.Kind != wire.MsgKind_MSG_KIND_SERVICE {
		return CallRecorded{}, fmt.Errorf("client: message %d/%d is %v, not a service message", m.Chat, m.Seq, m.Kind)
	}
	var s wire.Service
	if err := proto.Unmarshal(m.Body, &s); err != nil {
		return CallRecorded{}, fmt.Errorf("client: service message %d/%d: %w", m.Chat, m.Seq, err)
	}
	r := s.GetCallRecorded()
	if r == nil {
		return CallRecorded{}, fmt.Errorf("client: service message %d/%d announces no recording", m.Chat, m.Seq)
	}
	out := CallRecorded{
		Call: r.GetCall(), StartedBy: r.GetStartedBy(), Started: fromMicros(r.GetStartedUs()),
		Duration: time.Duration(r.GetDurationMs()) * time.Millisecond, Bytes: r.GetBytes(), Recovered: r.GetRecovered(),
	}
	for _, f := range r.GetFiles() {
		out.Files = append(out.Files, RecordedFile{
			Name: f.GetName(), User: f.GetUser(), Device: f.GetDevice(), Track: f.GetTrack(), Codec: f.GetCodec(),
			Offset: time.Duration(f.GetOffsetMs()) * time.Millisecond, Duration: time.Duration(f.GetDurationMs()) * time.Millisecond,
			Bytes: f.GetBytes(), Error: f.GetError(),
		})
	}
	return out, nil
}
