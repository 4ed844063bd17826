//go:build !race

// The allocation checks and the benchmark are left out of -race builds: the
// race detector's instrumentation allocates, and its timings mean nothing.

package callsfu

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// discard is a subscriber's writer that drops every packet.
type discard struct{}

func (discard) WriteRTP(_ *rtp.Header, payload []byte) (int, error) { return len(payload), nil }

// videoSource produces a publisher's VP8 packets of about 1,200 bytes into
// one reused buffer, as a reader goroutine does: a keyframe first, then
// frames of 4 packets 33 ms apart.
type videoSource struct {
	buf     []byte
	seq     uint16
	ts      uint32
	n       int
	arrival time.Time
	key     bool // the next frame is a keyframe
}

// newVideoSource returns a source whose packets' header is 16 bytes (with an
// audio-level-sized extension, as browsers send some) plus 1,184 of payload.
func newVideoSource(tb testing.TB) *videoSource {
	return &videoSource{buf: rtpPacket(tb, 0, 0, false, vp8Payload(0, 0, true, true, 1184)), arrival: t0}
}

// next rewrites the buffer into the next packet and returns it.
func (v *videoSource) next() []byte {
	first := v.n%4 == 0
	if first && v.n > 0 {
		v.ts += 3000
		v.arrival = v.arrival.Add(33 * time.Millisecond)
	}
	binary.BigEndian.PutUint16(v.buf[2:], v.seq)
	binary.BigEndian.PutUint32(v.buf[4:], v.ts)
	v.buf[1] = 96
	if v.n%4 == 3 {
		v.buf[1] |= 0x80 // marker on a frame's last packet
	}
	payload := v.buf[20:]
	payload[0], payload[1] = 0, 0
	if first {
		payload[0] = 0x10 // S=1
		payload[1] = 0x11 // interframe
		if v.n == 0 || v.key {
			payload[1] = 0x10
			v.key = false
		}
	}
	v.seq++
	v.n++
	return v.buf
}

// forwardFixture is an upTrack with subs subscribers on its one layer, its
// ring full of packets as large as the source's (so slots have grown).
func forwardFixture(tb testing.TB, subs int, w rtpWriter) (*upTrack, *videoSource, []*downTrack) {
	tb.Helper()
	u := newUpTrack(upTrackConfig{kind: kindVideo, mimeType: "video/VP8", onPLI: func(int) {}})
	ds := make([]*downTrack, subs)
	for i := range ds {
		ds[i] = u.subscribe(w, uint32(i+1), 96)
	}
	src := newVideoSource(tb)
	for range 2 * u.layers[0].ring.size() {
		if err := u.receive(0, src.next(), src.arrival); err != nil {
			tb.Fatal(err)
		}
	}
	return u, src, ds
}

func TestForwardAllocatesNothing(t *testing.T) {
	for _, subs := range []int{1, 10} {
		u, src, _ := forwardFixture(t, subs, discard{})
		before := u.counters().forwarded
		allocs := testing.AllocsPerRun(1000, func() {
			if err := u.receive(0, src.next(), src.arrival); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%d subscribers: %v allocations per packet, want 0", subs, allocs)
		}
		if got := u.counters().forwarded - before; got != uint64(1001*subs) {
			t.Errorf("%d subscribers: forwarded %d, want %d", subs, got, 1001*subs)
		}
	}
}

func TestRestartAllocatesNothing(t *testing.T) {
	u, src, _ := forwardFixture(t, 10, discard{})
	before := u.counters()
	// Every 100 packets the publisher's encoder restarts on a new SSRC and
	// sends a keyframe 20 packets later: the subscribers wait for it.
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		switch i++; i % 100 {
		case 0:
			binary.BigEndian.PutUint32(src.buf[8:], uint32(i))
		case 20:
			src.key = true
		}
		if err := u.receive(0, src.next(), src.arrival); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per packet, want 0", allocs)
	}
	after := u.counters()
	if got := after.restarts - before.restarts; got != 10 {
		t.Errorf("restarts %d, want 10", got)
	}
	if fwd := after.forwarded - before.forwarded; fwd >= 1001*10 || fwd < 700*10 {
		t.Errorf("forwarded %d, want fewer than %d (none between a restart and its keyframe)", fwd, 1001*10)
	}
}

func TestNACKAllocatesNothing(t *testing.T) {
	u, _, ds := forwardFixture(t, 2, discard{})
	clock := newFakeClock()
	u.cfg.now = clock.Now
	d := ds[0]
	last := uint16(d.lastOut)
	seqs := []uint16{last, last - 1, last - 5, last - 100}
	before := u.counters()
	// Every call past the repeat window: resent until the budget is spent,
	// then refused; repeats within the window on every other call.
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		if i++; i%2 == 0 {
			clock.advance(nackRepeatWindow)
		}
		d.nack(seqs)
	})
	if allocs != 0 {
		t.Errorf("nack: %v allocations per call, want 0", allocs)
	}
	after := u.counters()
	resent, refused, repeated := after.resent-before.resent, after.resendRefused-before.resendRefused, after.resendRepeated-before.resendRepeated
	if resent != nackBurst || resent+refused+repeated != 1001*4 || repeated == 0 {
		t.Errorf("resent %d refused %d repeated %d, want %d resent of %d", resent, refused, repeated, nackBurst, 1001*4)
	}
}

func TestSpeakerObserveAllocatesNothing(t *testing.T) {
	sp := newSpeakerDetector().add("a")
	at := t0
	allocs := testing.AllocsPerRun(1000, func() {
		at = at.Add(20 * time.Millisecond)
		sp.observe(30, at)
	})
	if allocs != 0 {
		t.Errorf("observe: %v allocations per packet, want 0", allocs)
	}
}

// BenchmarkForward measures one publisher's video packets (about 1,200
// bytes) forwarded to N subscribers whose writers discard them. One op is
// one packet received; fwd/s is packets written to subscribers per second
// of the one core the benchmark runs on.
func BenchmarkForward(b *testing.B) {
	for _, subs := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			u, src, _ := forwardFixture(b, subs, discard{})
			pkt := src.next()
			b.SetBytes(int64(len(pkt) * subs))
			b.ReportAllocs()
			before := u.counters().forwarded
			for b.Loop() {
				if err := u.receive(0, src.next(), src.arrival); err != nil {
					b.Fatal(err)
				}
			}
			fwd := float64(u.counters().forwarded - before)
			if secs := b.Elapsed().Seconds(); secs > 0 {
				b.ReportMetric(fwd/secs, "fwd/s")
				b.ReportMetric(b.Elapsed().Seconds()*1e9/fwd, "ns/fwd")
			}
		})
	}
}
