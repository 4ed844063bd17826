package broker_test

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
)

// floodConns is how many unauthenticated connections the flood opens.
const floodConns = 2000

// maxHonestP99 bounds the honest client's round trips while the flood is
// held: a node the flood blocked would take seconds or time out. It is
// not a latency target (typical: p50 ~1 ms, p99 ~20 ms): in `go test
// ./...` other packages' tests share the two cores, and one send among
// ~70 took 137 ms in a CI run.
const maxHonestP99 = 500 * time.Millisecond

// TestPreAuthFlood opens 2,000 connections that never authenticate, each
// holding a request stream with a partial Hello in it and trying for more
// streams, against a node in a child process, while an honest client
// sends. The node's memory grows by at most 64 MiB, and while the flood's
// connections are held the honest client's round trips stay under
// maxHonestP99 at the 99th percentile. (During the storm of handshakes itself the
// flood's TLS work shares the two cores with the node and the honest
// client; that phase is logged, not asserted: handshake cost is the
// transport's, measured by gonets bench connect.)
func TestPreAuthFlood(t *testing.T) {
	if raceOn || testing.Short() {
		t.Skip("opens 2,000 QUIC connections; too slow under -race or -short")
	}
	n := startIdleNode(t)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	alice := dialHonest(t, tr, n, 1)
	chat := alice.createChat(t, 2)
	for i := range 20 { // warm up the chat and the store
		alice.send(t, chat, uint64(i+1))
	}
	before := rssOf(t, n.cmd.Process.Pid)

	// The honest client sends 20 messages a second throughout.
	stop := make(chan struct{})
	var held atomic.Bool // set once the flood's connections are all open
	var storm, lat []time.Duration
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for cmid := uint64(100); ; cmid++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			isHeld := held.Load()
			start := time.Now()
			alice.send(t, chat, cmid)
			if isHeld {
				lat = append(lat, time.Since(start))
			} else {
				storm = append(storm, time.Since(start))
			}
		}
	})

	addr, _ := net.ResolveUDPAddr("udp", n.addr)
	var peak int64
	var mu sync.Mutex
	var conns []*quic.Conn
	var dialers sync.WaitGroup
	next := make(chan int)
	for range 4 {
		dialers.Go(func() {
			for range next {
				c := floodOne(t, tr, addr, n)
				if c != nil {
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			}
		})
	}
	for i := range floodConns {
		next <- i
		if i%250 == 249 {
			peak = max(peak, rssOf(t, n.cmd.Process.Pid))
		}
	}
	close(next)
	dialers.Wait()
	held.Store(true)
	time.Sleep(500 * time.Millisecond) // what the node holds settles
	peak = max(peak, rssOf(t, n.cmd.Process.Pid))
	time.Sleep(3 * time.Second) // the honest client sends on beside them
	peak = max(peak, rssOf(t, n.cmd.Process.Pid))
	close(stop)
	wg.Wait()
	for _, c := range conns {
		c.CloseWithError(0, "")
	}

	grew := peak - before
	slices.Sort(lat)
	slices.Sort(storm)
	p99 := lat[len(lat)*99/100]
	t.Logf("%d unauthenticated connections: node RSS %d -> %d MiB (+%d MiB)", floodConns, before>>20, peak>>20, grew>>20)
	t.Logf("honest sends while held: %d, p50 %v, p99 %v, max %v", len(lat), lat[len(lat)/2], p99, lat[len(lat)-1])
	if len(storm) > 0 {
		t.Logf("honest sends during the handshake storm: %d, p50 %v, p99 %v", len(storm), storm[len(storm)/2], storm[len(storm)*99/100])
	}
	if grew > 64<<20 {
		t.Errorf("the node grew by %d MiB under %d unauthenticated connections, want at most 64", grew>>20, floodConns)
	}
	if p99 > maxHonestP99 {
		t.Errorf("honest client's p99 %v during the flood, want at most %v", p99, maxHonestP99)
	}
}

// floodOne opens one connection as an attacker would: a request stream
// with a Hello announced at the largest size and never finished, and
// attempts at more streams. It returns the connection, or nil if the node
// turned it away.
func floodOne(t *testing.T, tr *quic.Transport, addr *net.UDPAddr, n *idleNode) *quic.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, addr, n.tls, &quic.Config{MaxIdleTimeout: time.Minute})
	if err != nil {
		return nil
	}
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		return c
	}
	buf := make([]byte, 16<<10)
	binary.BigEndian.PutUint32(buf, 16<<10-4) // a frame of 16 KiB, minus one byte sent
	st.SetWriteDeadline(time.Now().Add(time.Second))
	st.Write(buf[:len(buf)-1])
	for range 3 {
		if s, err := c.OpenStream(); err == nil {
			t.Errorf("the node granted a second stream before authentication")
			s.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			s.Write(buf)
		}
	}
	return c
}

// rssOf reads a process's resident set size from /proc.
func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// rawSession drives an authenticated session frame by frame.
type rawSession struct {
	st     *quic.Stream
	r      *wire.Reader
	nextID uint64
}

// dialHonest connects and authenticates as user.
func dialHonest(t testing.TB, tr *quic.Transport, n *idleNode, user uint64) *rawSession {
	t.Helper()
	addr, _ := net.ResolveUDPAddr("udp", n.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, addr, n.tls, &quic.Config{MaxIdleTimeout: time.Minute, KeepAlivePeriod: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseWithError(0, "") })
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := &rawSession{st: st, r: wire.NewReader(st, 0)}
	tok, _ := token.NewSigner(n.key).Sign(token.Claims{User: user, Device: 1, Expires: time.Now().Add(time.Hour)})
	if f := s.do(t, &wire.Frame{Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: tok}}}); f.GetWelcome() == nil {
		t.Fatalf("hello: %v", f)
	}
	return s
}

// do sends a request and returns its response, skipping control frames.
func (s *rawSession) do(t testing.TB, f *wire.Frame) *wire.Frame {
	s.nextID++
	f.Id = s.nextID
	b, _ := wire.AppendFrame(nil, f, 0)
	if _, err := s.st.Write(b); err != nil {
		t.Errorf("write: %v", err)
		return &wire.Frame{}
	}
	for {
		var r wire.Frame
		if err := s.r.Read(&r); err != nil {
			t.Errorf("read: %v", err)
			return &wire.Frame{}
		}
		if r.Id == f.Id {
			return &r
		}
	}
}

func (s *rawSession) createChat(t testing.TB, peer uint64) uint64 {
	r := s.do(t, &wire.Frame{Body: &wire.Frame_CreateChat{CreateChat: &wire.CreateChat{Kind: direct, Members: []uint64{peer}}}})
	if r.GetChat() == nil {
		t.Fatalf("create chat: %v", r)
	}
	return r.GetChat().Chat
}

func (s *rawSession) send(t testing.TB, chat, cmid uint64) {
	r := s.do(t, &wire.Frame{Body: &wire.Frame_Send{Send: &wire.Send{Chat: chat, ClientMsgId: cmid, Body: []byte("honest")}}})
	if r.GetAck() == nil {
		t.Errorf("send %d: %v", cmid, r)
	}
}
