package broker_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
	"github.com/gonets/gonets/storage/storagetest"
)

// stuckRig is a node with a short write timeout, a writer (alice), a
// member who reads everything (fast) and one who never reads its push
// stream (stuck), all in one group.
type stuckRig struct {
	n                  *brokertest.Node
	alice, fast, stuck *wireClient
	chat               uint64
	body               []byte
}

func newStuckRig(t *testing.T, writeTimeout time.Duration) *stuckRig {
	t.Helper()
	n := brokertest.Start(t, brokertest.Options{
		Broker:  broker.Options{SendRate: 1e6, WriteTimeout: writeTimeout},
		Storage: storage.Options{MaxBodyBytes: 32 << 10},
	})
	r := &stuckRig{n: n, body: bytes.Repeat([]byte("x"), 32<<10)}
	r.alice = dial(t, n, n.Token(t, 1, 1))
	r.fast = dial(t, n, n.Token(t, 2, 1))
	r.stuck = dialRaw(t, n)
	if r.stuck.do(&wire.Frame{Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: n.Token(t, 3, 1)}}}).GetWelcome() == nil {
		t.Fatal("stuck: no welcome")
	}
	r.chat = r.alice.createChat(group, 2, 3)
	return r
}

// fill sends msgs messages, more than the stuck member's stream window
// holds, checking that the fast member gets every one.
func (r *stuckRig) fill(t *testing.T, from, msgs int) {
	t.Helper()
	for i := from; i < from+msgs; i++ {
		r.alice.mustAck(r.chat, uint64(i+1), string(r.body))
		if m := r.fast.push().GetDeliver().GetMessage(); m.Seq != uint64(i+1) {
			t.Fatalf("fast reader got seq %d, want %d", m.Seq, i+1)
		}
	}
}

// A session whose push stream stops moving is closed after WriteTimeout,
// the reason counted, while the chat's other members are served.
func TestPushTimeoutClosesStuckSession(t *testing.T) {
	r := newStuckRig(t, 300*time.Millisecond)
	// 48 × 32 KiB = 1.5 MiB: past the client's stream window (512 KiB);
	// the outbox (4 MiB) takes the rest, so the writer blocks in a write.
	r.fill(t, 0, 48)
	if !r.stuck.closed() {
		t.Fatal("the stuck session is still open")
	}
	storagetest.WaitFor(t, "the push timeout counted", func() bool {
		return metricValue(t, r.n.Broker(), `gonets_broker_session_closes_total{reason="push_timeout"}`) == 1
	})
	r.fill(t, 48, 4) // the others are served on
}

// A session that stops reading its responses is closed too.
func TestResponseTimeoutClosesStuckSession(t *testing.T) {
	r := newStuckRig(t, 300*time.Millisecond)
	r.fill(t, 0, 10) // 320 KiB: the pushes fit the stuck member's window
	// Ask for history pages (320 KiB each) without reading any answer.
	for range 4 {
		r.stuck.send(&wire.Frame{Body: &wire.Frame_History{History: &wire.HistoryRequest{Chat: r.chat, FromSeq: 1, Limit: 10}}})
	}
	if !r.stuck.closed() {
		t.Fatal("a session that reads no responses is still open")
	}
	storagetest.WaitFor(t, "the response timeout counted", func() bool {
		return metricValue(t, r.n.Broker(), `gonets_broker_session_closes_total{reason="response_timeout"}`) == 1
	})
}

// GoingAway reaches a session whose push stream is stuck, and a shutdown
// does not wait on the stuck writer beyond its drain.
func TestGoingAwayPassesStuckPushes(t *testing.T) {
	r := newStuckRig(t, time.Hour)
	r.fill(t, 0, 48)
	r.stuck.readResponses()
	b := r.n.Broker()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		done <- b.Shutdown(ctx)
	}()
	if f := r.stuck.control(); f.GetGoingAway() == nil {
		t.Fatalf("want GoingAway, got %v", f)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown waits on a stuck writer")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Shutdown with a 500 ms drain took %v", d)
	}
}
