package broker

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/wire"
)

// tlsPair returns the node's side of a TLS connection over TCP with
// small socket buffers, listed for heartbeats, and the client's side.
func tlsPair(t *testing.T) (*tcpConn, *tls.Conn) {
	t.Helper()
	stc, client := tlsConnPair(t)
	conn := &tcpConn{c: stc, raw: stc.NetConn(), cancel: func() {}, timeout: 10 * time.Second, beats: newHeartbeats(time.Second)}
	conn.wantHeartbeats()
	conn.noteWrite()
	if conn.listed.Load() != listed {
		t.Fatal("not listed after its first write")
	}
	return conn, client
}

// A heartbeat is not written while the socket holds unacknowledged
// bytes: a client whose network stalls with a full buffer is neither
// closed for it nor does it hold the sweep (the first cut gave such a
// heartbeat 100 ms, then closed the session).
func TestHeartbeatSkipsFullSocket(t *testing.T) {
	conn, client := tlsPair(t)
	big, err := wire.AppendFrame(nil, &wire.Frame{Id: 1, Body: &wire.Frame_Error{Error: &wire.Error{Message: string(make([]byte, 256<<10))}}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A write the client does not read yet: its bytes sit unacknowledged
	// in the node's socket. It goes around the write lock (as a finished
	// write's bytes would still sit there with the lock free).
	go conn.c.Write(big)
	deadline := time.Now().Add(5 * time.Second)
	for unacked(conn.raw) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if unacked(conn.raw) == 0 {
		t.Fatal("no unacknowledged bytes while a 256 KiB write is blocked")
	}
	skipped := make(chan bool, 1)
	start := time.Now()
	go func() { skipped <- !conn.heartbeat(5, 10*time.Second) }()
	select {
	case ok := <-skipped:
		if !ok {
			t.Fatal("heartbeat written into a full socket")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("heartbeat blocked on a full socket")
	}
	// The client reads the big frame; its bytes are then acknowledged.
	r := wire.NewReader(client, 0)
	var f wire.Frame
	if err := r.Read(&f); err != nil || f.Id != 1 {
		t.Fatalf("the big frame: %v (id %d)", err, f.Id)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("heartbeat held up the writer")
	}
	deadline = time.Now().Add(5 * time.Second)
	for unacked(conn.raw) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !conn.heartbeat(6, time.Second) {
		t.Fatal("no heartbeat once everything was acknowledged")
	}
	f.Reset()
	if err := r.Read(&f); err != nil || f.GetPing() == nil || f.Id != 0 {
		t.Fatalf("want a heartbeat (Ping, id 0), got %v, %v", &f, err)
	}
}

// Closing a connection takes it off the list at once: a sweep during
// the close's linger writes no heartbeat into it and does not cut the
// linger short by closing the socket.
func TestHeartbeatNotDuringCloseLinger(t *testing.T) {
	conn, client := tlsPair(t)
	closed := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		conn.Close(wire.ErrorCode_ERROR_CODE_UNAVAILABLE, "bye")
		closed <- time.Since(start)
	}()
	r := wire.NewReader(client, 0)
	var f wire.Frame
	if err := r.Read(&f); err != nil || f.GetError() == nil {
		t.Fatalf("want the Error frame, got %v, %v", &f, err)
	}
	// Close now lingers for the client to close; the client does not.
	if conn.listed.Load() != delisted {
		t.Fatal("still listed while closing")
	}
	if conn.heartbeat(100, time.Second) {
		t.Fatal("heartbeat written into a closing connection")
	}
	if d := <-closed; d < closeLinger/2 {
		t.Fatalf("close returned after %v, cut short; its linger is %v", d, closeLinger)
	}
}
