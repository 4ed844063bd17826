package callsfu

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// failingListener fails its first Accept as a process out of file
// descriptors does.
type failingListener struct {
	net.Listener
	failed atomic.Bool
}

func (l *failingListener) Accept() (net.Conn, error) {
	if !l.failed.Swap(true) {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// TestICETCPAcceptError: an Accept error that is not the listener's
// closing (EMFILE, say) does not reach pion's TCP mux, whose accept loop
// would stop for good on it and leave the SFU without ICE-TCP: the next
// connection is accepted.
func TestICETCPAcceptError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	set := metrics.NewSet()
	m := &sfuMetrics{tcpRefusedCap: set.NewCounter("cap_total"), tcpRefusedBind: set.NewCounter("bind_total"),
		tcpDropped: set.NewCounter("dropped_total"), tcpStalled: set.NewCounter("stalled_total")}
	l := newTCPMediaListener(&failingListener{Listener: ln}, m)
	defer l.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	got := make(chan accepted, 1)
	go func() {
		c, err := l.Accept()
		got <- accepted{c, err}
	}()
	select {
	case a := <-got:
		if a.err != nil {
			t.Fatalf("Accept: %v, want the connection after the failure", a.err)
		}
		a.c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return")
	}
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept of a closed listener: %v, want net.ErrClosed", err)
	}
}
