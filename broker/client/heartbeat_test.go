package client_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
)

// requests returns how many requests the node has handled.
func requests(t *testing.T, n *brokertest.Node) float64 {
	t.Helper()
	var buf bytes.Buffer
	n.Broker().Metrics().WritePrometheus(&buf)
	for line := range bytes.SplitSeq(buf.Bytes(), []byte("\n")) {
		var v float64
		if k, _ := fmt.Sscanf(string(line), "gonets_broker_requests_total %g", &v); k == 1 {
			return v
		}
	}
	t.Fatal("no gonets_broker_requests_total")
	return 0
}

// Over TCP the node's heartbeats keep an idle client connected without
// its pinging; with them off the client pings by itself.
func TestTCPIdleClientHearsHeartbeats(t *testing.T) {
	o := client.Options{Via: client.TransportTCP, KeepAlive: time.Second, IdleTimeout: 3 * time.Second}
	for _, c := range []struct {
		beat   time.Duration
		pinged bool
	}{{time.Second, false}, {-1, true}} {
		t.Run(fmt.Sprintf("heartbeat=%v", c.beat), func(t *testing.T) {
			n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{TCPHeartbeat: c.beat}})
			alice := dial(t, n, "", 1, 1, o)
			waitFor(t, alice, client.EventConnected)
			before := requests(t, n)
			// Past the idle timeout, and past the ping (after 2 s of
			// silence) twice over.
			deadline := time.After(4500 * time.Millisecond)
			for done := false; !done; {
				select {
				case ev := <-alice.Events():
					t.Fatalf("event %v while idle", ev.Kind)
				case <-deadline:
					done = true
				}
			}
			if pinged := requests(t, n) > before; pinged != c.pinged {
				t.Fatalf("client pinged: %v, want %v", pinged, c.pinged)
			}
			if alice.Transport() != client.TransportTCP {
				t.Fatalf("transport %v", alice.Transport())
			}
		})
	}
}
