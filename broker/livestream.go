package broker

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// LiveNote is a channel's live stream starting or ending, which the node
// announces in the channel (AnnounceLive).
type LiveNote struct {
	Chat storage.ChatID
	// User and Device publish the stream.
	User   storage.UserID
	Device storage.DeviceID
	// Started is when the stream started; it pairs a stream's start and
	// end, and no two streams of a channel may share it.
	Started time.Time
	// Ended is zero for the stream's start; for its end, when it ended,
	// and Reason why.
	Ended  time.Time
	Reason wire.LiveEndReason
}

// liveMsgBit marks the client message ids of live stream notes, which the
// node's own device sends: call records' ids (call ids) are below 2^63.
const liveMsgBit = 1 << 63

// liveMsgID is the client message id of a note: its stream's start in
// Unix microseconds, times two, plus one for the end. A retry cannot write
// a note twice within the store's deduplication window.
func liveMsgID(n LiveNote) uint64 {
	id := uint64(n.Started.UnixMicro())<<1 | liveMsgBit
	if !n.Ended.IsZero() {
		id |= 1
	}
	return id
}

// liveBody is a note's service message body.
func liveBody(n LiveNote) *wire.Service {
	ls := &wire.LiveStream{StartedUs: n.Started.UnixMicro(), User: uint64(n.User), Device: uint64(n.Device)}
	if n.Ended.IsZero() {
		return &wire.Service{Event: &wire.Service_LiveStarted{LiveStarted: ls}}
	}
	ls.DurationMs = uint64(max(0, n.Ended.Sub(n.Started)) / time.Millisecond)
	ls.Reason = n.Reason
	return &wire.Service{Event: &wire.Service_LiveEnded{LiveEnded: ls}}
}

// AnnounceLive writes a live stream's start or end into its channel as a
// service message (wire.Service's live_started or live_ended), delivered
// like any post, so that the channel's subscribers online learn that
// there is something to play, and those offline find it when they sync.
// It is sent as the user who publishes or, when that user may no longer
// post in the channel (left it, or is an admin no more), as its owner,
// from the node's own device. It blocks until the store has the note.
func (b *Broker) AnnounceLive(n LiveNote) error {
	if n.Chat == 0 || n.Started.IsZero() {
		return fmt.Errorf("%w: a live stream note without a chat or a start", ErrBadRequest)
	}
	body, err := proto.Marshal(liveBody(n))
	if err != nil {
		return fmt.Errorf("broker: live stream note: %w", err)
	}
	sender := n.User
	for try := 0; try < 2; try++ {
		m := storage.Message{
			Chat: n.Chat, Sender: sender, Device: storage.DeviceNode, ClientMsgID: liveMsgID(n),
			Kind: storage.MsgService, Body: body,
		}
		e := b.chats.pin(n.Chat)
		_, err = b.commit(work, e, m, nil)
		b.unpin(e)
		if try == 1 || !(errors.Is(err, storage.ErrNotMember) || errors.Is(err, storage.ErrNotAllowed)) {
			break
		}
		chat, cerr := b.st.Chat(n.Chat)
		if cerr != nil || chat.Creator == sender {
			break
		}
		sender = chat.Creator
	}
	if err != nil {
		return fmt.Errorf("broker: announce live stream in chat %d: %w", n.Chat, err)
	}
	return nil
}
