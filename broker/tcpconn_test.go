package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/wire"
)

// smallBuffers shrinks a socket's buffers before it connects, so that a
// write of a few hundred KiB blocks until the peer reads.
func smallBuffers(_, _ string, c syscall.RawConn) error {
	var err error
	c.Control(func(fd uintptr) {
		err = errors.Join(syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<10),
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10))
	})
	return err
}

// tlsConnPair returns the two ends of a TLS connection over TCP on
// 127.0.0.1 with small socket buffers (smallBuffers): the node's and the
// client's. Both close when the test ends.
func tlsConnPair(t *testing.T) (server, client *tls.Conn) {
	t.Helper()
	serverTLS, clientTLS := tcpTLS(t)
	lc := net.ListenConfig{Control: smallBuffers}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan *tls.Conn, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		tc := tls.Server(raw, serverTLS)
		if tc.Handshake() != nil {
			raw.Close()
			accepted <- nil
			return
		}
		accepted <- tc
	}()
	d := tls.Dialer{NetDialer: &net.Dialer{Control: smallBuffers}, Config: clientTLS}
	nc, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	stc := <-accepted
	if stc == nil {
		t.Fatal("server handshake failed")
	}
	t.Cleanup(func() { stc.NetConn().Close() })
	return stc, nc.(*tls.Conn)
}

// A close with a code while a write is in progress waits for the write,
// then still tells the client why: the Error frame follows what the write
// carried. (Skipping the frame whenever the write lock was held lost the
// reason of a session displaced just as its Welcome went out.)
func TestTCPCloseAfterWriteInProgress(t *testing.T) {
	stc, nc := tlsConnPair(t)
	closing := make(chan struct{})
	conn := &tcpConn{c: stc, raw: stc.NetConn(), cancel: func() { close(closing) }, timeout: 10 * time.Second}
	big, err := wire.AppendFrame(nil, &wire.Frame{Id: 1, Body: &wire.Frame_Error{Error: &wire.Error{Message: string(make([]byte, 256<<10))}}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() { _, err := conn.Write(big); wrote <- err }()
	// The write holds the lock until the client reads.
	for conn.wmu.TryLock() {
		conn.wmu.Unlock()
	}
	closed := make(chan struct{})
	go func() {
		conn.Close(wire.ErrorCode_ERROR_CODE_UNAVAILABLE, "displaced")
		close(closed)
	}()
	<-closing // Close has begun, the write still blocked
	r := wire.NewReader(nc, 0)
	var f wire.Frame
	if err := r.Read(&f); err != nil || f.Id != 1 {
		t.Fatalf("the write in progress: %v (frame id %d)", err, f.Id)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("the write in progress failed: %v", err)
	}
	f.Reset()
	if err := r.Read(&f); err != nil || f.GetError().GetCode() != wire.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("after the write: %v, %v; want Error UNAVAILABLE", &f, err)
	}
	nc.Close()
	<-closed
}
