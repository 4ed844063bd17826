package client

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
)

// LiveStream is a channel's live stream as the node announces it in the
// channel: a SERVICE message when it starts (there is something to play
// over WHEP from then on) and another when it ends.
type LiveStream struct {
	// Ended is false for the start, true for the end.
	Ended bool
	// Started pairs a stream's start and end.
	Started time.Time
	// User and Device publish the stream.
	User, Device uint64
	// Duration and Reason are the end's.
	Duration time.Duration
	Reason   wire.LiveEndReason
}

// LiveStreamOf decodes a live stream's start or end, a SERVICE message.
func LiveStreamOf(m Message) (LiveStream, error) {
	if m.Kind != wire.MsgKind_MSG_KIND_SERVICE {
		return LiveStream{}, fmt.Errorf("client: message %d/%d is %v, not a service message", m.Chat, m.Seq, m.Kind)
	}
	var s wire.Service
	if err := proto.Unmarshal(m.Body, &s); err != nil {
		return LiveStream{}, fmt.Errorf("client: service message %d/%d: %w", m.Chat, m.Seq, err)
	}
	ls, ended := s.GetLiveStarted(), false
	if ls == nil {
		ls, ended = s.GetLiveEnded(), true
	}
	if ls == nil {
		return LiveStream{}, fmt.Errorf("client: service message %d/%d announces no live stream", m.Chat, m.Seq)
	}
	return LiveStream{
		Ended: ended, Started: fromMicros(ls.GetStartedUs()), User: ls.GetUser(), Device: ls.GetDevice(),
		Duration: time.Duration(ls.GetDurationMs()) * time.Millisecond, Reason: ls.GetReason(),
	}, nil
}
