package broker_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
	"github.com/gonets/gonets/storage/storagetest"
)

// failingRig starts a node whose WAL and probe syncs fail while fail is
// set (the store recovering quickly once it is cleared), with alice and
// bob in a group where one message was delivered.
func failingRig(t *testing.T) (fail *atomic.Bool, n *brokertest.Node, alice, bob *wireClient, chat uint64) {
	fail, sopts := failingStorage()
	n = brokertest.Start(t, brokertest.Options{Storage: sopts})
	alice = dial(t, n, n.Token(t, 1, 1))
	bob = dial(t, n, n.Token(t, 2, 1))
	chat = alice.createChat(group, 2)
	alice.mustAck(chat, 1, "before")
	if m := bob.push().GetDeliver().GetMessage(); m.GetSeq() != 1 {
		t.Fatalf("bob got %v", m)
	}
	return fail, n, alice, bob, chat
}

// failingStorage returns store options whose WAL and probe syncs fail
// while fail is set, the store recovering quickly once it is cleared.
func failingStorage() (fail *atomic.Bool, o storage.Options) {
	fail = new(atomic.Bool)
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !fail.Load() || !(strings.HasSuffix(op.Path, ".log") || strings.HasSuffix(op.Path, ".tmp")) {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return errorfs.ErrInjected
		}
		return nil
	}))
	return fail, storage.Options{FS: fs, RecoverMinDelay: 10 * time.Millisecond, RecoverMaxDelay: 50 * time.Millisecond}
}

// After the store fails mid-send and recovers, the chat's pushes flow
// again: a send that failed (whose record may come back from the WAL)
// must not leave the chat's fan-out waiting for its seq.
func TestPushesFlowAfterStoreRecovery(t *testing.T) {
	fail, n, alice, bob, chat := failingRig(t)
	fail.Store(true)
	r := alice.do(&wire.Frame{Body: &wire.Frame_Send{Send: &wire.Send{Chat: chat, ClientMsgId: 2, Body: []byte("during")}}})
	if got := errCode(t, r); got != wire.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("send on a failing disk: %v", got)
	}
	fail.Store(false)
	storagetest.WaitFor(t, "the store to recover", func() bool { return n.Store().Healthy() })
	// The failed send's record may be back from the WAL; either way the
	// next message reaches bob, and so does the failed one's retry.
	var seqs []uint64
	for cmid := uint64(2); cmid <= 4; cmid++ {
		a := alice.mustAck(chat, cmid, "after")
		if !a.Duplicate {
			seqs = append(seqs, a.Seq)
		}
	}
	for _, want := range seqs {
		if m := bob.push().GetDeliver().GetMessage(); m.GetSeq() != want {
			t.Fatalf("bob got %v, want seq %d", m, want)
		}
	}
}

// A read of the chat while the store is failed sees the last view, which
// lacks the seq of the failed send; the store's recovery may bring that
// record back from the WAL. The read must not fix the chat's publish
// order at the view's seq, or every later push waits for one that no
// append will publish.
func TestPushesFlowAfterReadDuringFailure(t *testing.T) {
	fail, n, alice, bob, chat := failingRig(t)
	fail.Store(true) // the store fails, and cannot recover until fail is cleared
	r := alice.do(&wire.Frame{Body: &wire.Frame_Send{Send: &wire.Send{Chat: chat, ClientMsgId: 2, Body: []byte("during")}}})
	if got := errCode(t, r); got != wire.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("send on a failing disk: %v", got)
	}
	if h := bob.do(&wire.Frame{Body: &wire.Frame_History{History: &wire.HistoryRequest{Chat: chat, FromSeq: 1}}}).GetHistoryResult(); h.GetLastSeq() != 1 {
		t.Fatalf("history during the failure: %v", h)
	}
	fail.Store(false)
	storagetest.WaitFor(t, "the store to recover", func() bool { return n.Store().Healthy() })
	a := alice.mustAck(chat, 3, "after")
	if c, err := n.Store().Chat(storage.ChatID(chat)); err != nil || c.LastSeq != a.Seq {
		t.Fatalf("chat %v, %v after ack %v", c, err, a)
	}
	if m := bob.push().GetDeliver().GetMessage(); m.GetSeq() != a.Seq {
		t.Fatalf("bob got %v, want seq %d", m, a.Seq)
	}
	t.Logf("the failed send's record came back: %v", a.Seq == 3)
}
