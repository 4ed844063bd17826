package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// TestAnnounceLive: a stream's start and end go into the channel as
// service messages from the node's device, sent as the admin who
// publishes, or as the owner once that admin has left; a retry writes
// nothing twice; a note without a chat is refused.
func TestAnnounceLive(t *testing.T) {
	st, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b, err := New(st, &token.Verifier{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	ctx := context.Background()
	const owner, admin = 1, 2
	ch, err := st.CreateChat(ctx, storage.ChatSpec{Kind: storage.ChatChannel, Creator: owner})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddMember(ctx, ch.ID, admin, storage.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	started := time.UnixMicro(1_800_000_000_000_123)
	start := LiveNote{Chat: ch.ID, User: admin, Device: 7, Started: started}
	for range 2 { // the second is a retry
		if err := b.AnnounceLive(start); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.RemoveMember(ctx, ch.ID, admin); err != nil {
		t.Fatal(err)
	}
	end := start
	end.Ended, end.Reason = started.Add(90*time.Second), wire.LiveEndReason_LIVE_END_REASON_LOST
	if err := b.AnnounceLive(end); err != nil {
		t.Fatal(err)
	}
	if err := b.AnnounceLive(LiveNote{User: admin, Started: started}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("a note without a chat: %v, want ErrBadRequest", err)
	}

	var recs []storage.Record
	var notes []*wire.Service
	if _, err := st.ReadLatest(ch.ID, 10, func(r *storage.Record) error {
		if r.Kind != storage.MsgService {
			return nil
		}
		s := &wire.Service{}
		if err := proto.Unmarshal(r.Body, s); err != nil {
			return err
		}
		recs, notes = append(recs, *r), append(notes, s)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(notes) != 2 {
		t.Fatalf("%d service messages, want the start and the end", len(notes))
	}
	for i, want := range []storage.UserID{admin, owner} {
		if recs[i].Sender != want || recs[i].Device != storage.DeviceNode {
			t.Errorf("note %d sent by %d from device %d, want %d from the node's", i, recs[i].Sender, recs[i].Device, want)
		}
	}
	if recs[0].ClientMsgID == recs[1].ClientMsgID || recs[0].ClientMsgID&liveMsgBit == 0 {
		t.Errorf("client message ids %#x and %#x: want distinct, with the live bit", recs[0].ClientMsgID, recs[1].ClientMsgID)
	}
	s := notes[0].GetLiveStarted()
	if s == nil || s.GetStartedUs() != started.UnixMicro() || s.GetUser() != admin || s.GetDevice() != 7 || s.GetDurationMs() != 0 {
		t.Errorf("live_started %v", notes[0])
	}
	e := notes[1].GetLiveEnded()
	if e == nil || e.GetStartedUs() != started.UnixMicro() || e.GetUser() != admin || e.GetDurationMs() != 90_000 ||
		e.GetReason() != wire.LiveEndReason_LIVE_END_REASON_LOST {
		t.Errorf("live_ended %v", notes[1])
	}
}
