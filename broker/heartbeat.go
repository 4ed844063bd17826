package broker

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gonets/gonets/broker/wire"
)

// heartbeatSweep is how often the node looks for TCP sessions due a
// heartbeat: the heartbeats due in one sweep go out together, so that
// 10,000 idle sessions wake the node once a second, not 500 times.
const heartbeatSweep = time.Second

// maxTCPHeartbeat bounds Options.TCPHeartbeat: mobile NATs forget a
// silent TCP mapping after a few minutes.
const maxTCPHeartbeat = 5 * time.Minute

// tcpUserTimeout is how long data the node wrote may go unacknowledged
// before the kernel drops the connection: with heartbeats flowing the
// kernel's keep-alives never start, so this is what notices a client
// that vanished, in the time the keep-alives took (60 s of silence, then
// four probes 15 s apart).
const tcpUserTimeout = tcpKeepAliveIdle + tcpKeepAliveCount*tcpKeepAliveInterval

// heartbeatFrame is the heartbeat: a Ping with id 0, which the client
// does not answer.
var heartbeatFrame = func() []byte {
	b, err := wire.AppendFrame(nil, &wire.Frame{Body: &wire.Frame_Ping{Ping: &wire.Ping{}}}, 0)
	if err != nil {
		panic(err)
	}
	return b
}()

// heartbeats writes a heartbeat to each TCP connection of one listener
// that the node has written nothing to for its period. Writes note the
// sweep count (two atomic operations, no clock read); a sweep compares.
type heartbeats struct {
	period int64        // sweeps of silence before a heartbeat, before the draw
	sweeps atomic.Int64 // sweeps so far

	mu    sync.Mutex // guards conns and each one's slot
	conns []*tcpConn // in no order; each knows its slot
}

func newHeartbeats(period time.Duration) *heartbeats {
	return &heartbeats{period: int64(period / heartbeatSweep)}
}

// Where a connection stands with its heartbeats (tcpConn.listed).
const (
	unlisted int32 = iota // not yet written to
	listed                // in heartbeats.conns
	delisted              // ended
)

// add registers t once the node has written to it (Welcome, or a first
// response before authentication): the client reads what comes before
// as the answer to its first frame. It draws t's period, up to a fifth
// below the configured one. A connection removed first is not added.
func (h *heartbeats) add(t *tcpConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t.listed.Load() != unlisted {
		return
	}
	t.every = h.period - rand.Int64N(h.period/5+1)
	t.wrote.Store(h.sweeps.Load())
	t.slot = len(h.conns)
	h.conns = append(h.conns, t)
	t.listed.Store(listed)
}

// remove takes t off the list for good.
func (h *heartbeats) remove(t *tcpConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t.listed.Swap(delisted) != listed {
		return
	}
	last := len(h.conns) - 1
	h.conns[t.slot] = h.conns[last]
	h.conns[t.slot].slot = t.slot
	h.conns[last] = nil
	h.conns = h.conns[:last]
	if cap(h.conns) > 64 && len(h.conns) < cap(h.conns)/4 {
		h.conns = append([]*tcpConn(nil), h.conns...) // give back what a storm left
	}
}

// due appends the connections due a heartbeat at sweep n to buf.
func (h *heartbeats) due(n int64, buf []*tcpConn) []*tcpConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range h.conns {
		if n-t.wrote.Load() >= t.every {
			buf = append(buf, t)
		}
	}
	return buf
}

// heartbeatConn is a connection that can carry heartbeats (tcpConn).
type heartbeatConn interface {
	// wantHeartbeats asks for heartbeats from the next write on, and
	// reports whether the node sends any.
	wantHeartbeats() bool
}

// agree returns the capabilities of the client's Hello (caps) that the
// node agrees to on c, for its Welcome.
func agree(c Conn, caps []string) []string {
	if hc, ok := c.(heartbeatConn); ok && slices.Contains(caps, wire.CapHeartbeat) && hc.wantHeartbeats() {
		return []string{wire.CapHeartbeat}
	}
	return nil
}

// beat sweeps l's connections once per heartbeatSweep until l closes,
// writing heartbeats to those due. The sweep writes them itself: a
// heartbeat goes only to a socket with nothing unsent or unacknowledged
// (see heartbeat), whose buffer has room, so no write blocks it.
// Sessions that outlive the listener (Shutdown's drain) get no more.
func (b *Broker) beat(l *TCPListener) {
	defer b.wg.Done()
	t := time.NewTicker(heartbeatSweep)
	defer t.Stop()
	var due []*tcpConn
	for {
		select {
		case <-l.closed:
			return
		case <-t.C:
		}
		n := l.beats.sweeps.Add(1)
		due = l.beats.due(n, due[:0])
		for _, c := range due {
			if c.heartbeat(n, b.opts.WriteTimeout) {
				b.m.heartbeats.Inc()
			}
		}
		clear(due)
	}
}

// heartbeat writes a heartbeat at sweep n and reports whether it did. It
// writes none while a write is under way, or while the socket holds bytes
// not yet acknowledged (a client whose network stalls with a full buffer
// is not closed for it: its retransmissions keep the path open, and
// TCP_USER_TIMEOUT or WriteTimeout decide, as for any write), or once the
// connection is closing. A write that fails closes the socket, which ends
// the session.
func (t *tcpConn) heartbeat(n int64, timeout time.Duration) bool {
	if !t.wmu.TryLock() {
		return false
	}
	defer t.wmu.Unlock()
	t.wrote.Store(n)
	if t.listed.Load() == delisted || unacked(t.raw) > 0 {
		return false
	}
	t.c.SetWriteDeadline(time.Now().Add(timeout))
	_, err := t.c.Write(heartbeatFrame)
	// Cleared, so that no timer fires for it later: every writer sets
	// its own deadline under the lock.
	t.c.SetWriteDeadline(time.Time{})
	if err != nil {
		t.raw.Close()
		return false
	}
	return true
}
