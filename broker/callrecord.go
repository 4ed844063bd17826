package broker

import (
	"context"
	"errors"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// finishCall does what follows a call's end outside the lock: the SFU
// closes its room, the call record goes into the chat, and then the
// call's audience but except hears of the end (a client told of it finds
// the record in the chat). A call discarded before anyone was rung (a
// zero reason) only closes its room. ctx bounds the SFU's part.
func (b *Broker) finishCall(ctx context.Context, end *endedCall, except *Session) {
	b.endMedia(ctx, end.id)
	if end.reason == 0 {
		return
	}
	b.writeCallRecord(end)
	b.pushUsers(end.audience, except, &wire.Frame{Body: &wire.Frame_CallUpdate{CallUpdate: &wire.CallUpdate{
		Call: uint64(end.id), Chat: uint64(end.chat), Kind: wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED, Reason: end.reason,
	}}}, true)
	b.calls.ended.Inc()
	if end.answered.IsZero() {
		b.calls.missed.Inc()
	}
}

// endMedia closes the call's room, logging a refusal.
func (b *Broker) endMedia(ctx context.Context, id CallID) {
	ctx, cancel := mediaCtx(ctx)
	defer cancel()
	if err := b.calls.media.End(ctx, id); err != nil {
		b.log.Debug("broker: call media end", "call", id, "err", err)
	}
}

// callRecord is the body of end's record.
func callRecord(end *endedCall) *wire.CallRecord {
	r := &wire.CallRecord{
		Call: uint64(end.id), Caller: uint64(end.caller), Video: end.video, StartedUs: end.started.UnixMicro(),
		Missed: end.answered.IsZero(), Reason: end.reason,
	}
	if !r.Missed {
		r.DurationMs = uint64(max(0, end.at.Sub(end.answered)) / time.Millisecond)
	}
	for _, u := range end.joined {
		r.Joined = append(r.Joined, uint64(u))
	}
	return r
}

// writeCallRecord appends end's record to its chat through the durable
// path, delivered like any message, so that members offline during the
// call find it when they sync. It is sent as the caller, or, when the
// caller has left the chat, as the first of those who joined still in it,
// or else as any member (the record's body names the caller), from the
// node's own device, with the call's id as its client message id: a
// retry cannot write it twice.
func (b *Broker) writeCallRecord(end *endedCall) {
	body, err := proto.Marshal(callRecord(end))
	if err != nil {
		b.log.Error("broker: call record not encodable", "call", end.id, "err", err)
		return
	}
	senders := end.joined // the caller first
	for i := 0; i < len(senders); i++ {
		sender := senders[i]
		m := storage.Message{
			Chat: end.chat, Sender: sender, Device: storage.DeviceNode, ClientMsgID: uint64(end.id),
			Kind: storage.MsgCall, Body: body,
		}
		e := b.chats.pin(end.chat)
		_, err = b.commit(work, e, m, nil)
		b.unpin(e)
		if !errors.Is(err, storage.ErrNotMember) {
			break
		}
		if i == len(end.joined)-1 { // none of them is a member now
			if ms, merr := b.st.Members(end.chat, 0, 1); merr == nil && len(ms) > 0 {
				senders = append(slices.Clip(senders), ms[0].User)
			}
		}
	}
	if err != nil {
		b.log.Warn("broker: call record not written", "call", end.id, "chat", end.chat, "err", err)
	}
}
