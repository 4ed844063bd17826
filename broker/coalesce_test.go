package broker_test

import (
	"testing"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
)

// A busy session's pushes share writes within the coalescing window, and
// arrive in seq order all the same: eight members post as fast as their
// acks come, and the reader's writer, waiting out a long window after
// each write, writes many pushes at a time.
func TestCoalescingKeepsOrder(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{SendRate: 1e6, CoalesceWindow: 20 * time.Millisecond}})
	const senders, each = 8, 40
	reader := dial(t, n, n.Token(t, 1, 1))
	var members []uint64
	for u := uint64(2); u <= senders+1; u++ {
		members = append(members, u)
	}
	chat := reader.createChat(group, members...)
	writesBefore := metricValue(t, n.Broker(), "gonets_broker_push_writes_total")
	postConcurrently(t, n, chat, senders, each)
	for want := uint64(1); want <= senders*each; want++ {
		if m := reader.push().GetDeliver().GetMessage(); m.GetSeq() != want {
			t.Fatalf("delivered seq %d, want %d", m.GetSeq(), want)
		}
	}
	b := n.Broker()
	// Every message went to the reader and the seven other senders.
	deliveries := float64(senders * each * senders)
	writes := metricValue(t, b, "gonets_broker_push_writes_total") - writesBefore
	if waits := metricValue(t, b, "gonets_broker_push_coalesce_waits_total"); waits == 0 || writes > deliveries/2 {
		t.Fatalf("%v push writes for %v deliveries, %v coalescing waits: want two pushes a write or more", writes, deliveries, waits)
	}
}

// A session that is written to less often than once a window is written
// to at once: pushes spaced wider than the window never wait.
func TestCoalescingAddsNothingWhenIdle(t *testing.T) {
	const window = 30 * time.Millisecond
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{CoalesceWindow: window}})
	alice := dial(t, n, n.Token(t, 1, 1))
	bob := dial(t, n, n.Token(t, 2, 1))
	chat := alice.createChat(direct, 2)
	for i := range 5 {
		alice.mustAck(chat, uint64(i+1), "spaced")
		if m := bob.push().GetDeliver().GetMessage(); m.GetSeq() != uint64(i+1) {
			t.Fatalf("bob got %v, want seq %d", m, i+1)
		}
		time.Sleep(window + 5*time.Millisecond)
	}
	if waits := metricValue(t, n.Broker(), "gonets_broker_push_coalesce_waits_total"); waits != 0 {
		t.Fatalf("%v coalescing waits for pushes spaced wider than the window", waits)
	}
	if writes := metricValue(t, n.Broker(), "gonets_broker_push_writes_total"); writes != 5 {
		t.Fatalf("%v push writes for 5 pushes", writes)
	}
}
