package callsfu

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// nackFixture is a one-layer video track with a subscriber that has been sent
// frames frames (2 packets each), and the sequence numbers it saw.
func nackFixture(t *testing.T, frames int) (*simulcast, *recorder, *downTrack, []uint16) {
	t.Helper()
	s := newSimulcast(t, 1, 1024)
	r := &recorder{}
	d := s.u.subscribe(r, 1, 96)
	s.frame(0)
	s.frames(frames - 1)
	var seqs []uint16
	for _, p := range r.take() {
		seqs = append(seqs, p.seq)
	}
	if len(seqs) != 2*frames {
		t.Fatalf("sent %d packets, want %d", len(seqs), 2*frames)
	}
	return s, r, d, seqs
}

func TestNACKRepeatNotResent(t *testing.T) {
	s, r, d, seqs := nackFixture(t, 10)
	lost := seqs[5]
	d.nack([]uint16{lost, lost})
	s.clock.advance(nackRepeatWindow - time.Millisecond)
	d.nack([]uint16{lost})
	if got := r.take(); len(got) != 1 || got[0].seq != lost {
		t.Fatalf("resent %+v, want seq %d once within %v", got, lost, nackRepeatWindow)
	}
	if st := s.u.counters(); st.resent != 1 || st.resendRepeated != 2 {
		t.Errorf("resent %d repeated %d, want 1, 2", st.resent, st.resendRepeated)
	}
	// Once the window has passed the subscriber may have lost the resend too.
	s.clock.advance(time.Millisecond)
	d.nack([]uint16{lost})
	if got := r.take(); len(got) != 1 || got[0].seq != lost {
		t.Errorf("after %v: resent %+v, want seq %d again", nackRepeatWindow, got, lost)
	}
	// NACK pairs go through the same check.
	d.nackPairs([]rtcp.NackPair{{PacketID: lost}})
	if got := r.take(); len(got) != 0 {
		t.Errorf("pair NACK right after a resend: resent %+v", got)
	}
}

func TestNACKBudget(t *testing.T) {
	s, r, d, seqs := nackFixture(t, 100) // 200 packets sent
	// A subscriber NACKing every packet it got, over and over, each time
	// past the repeat window: the node resends the burst, then nothing
	// more until more packets have gone out.
	for range 10 {
		s.clock.advance(nackRepeatWindow)
		d.nack(seqs)
	}
	if got := len(r.take()); got != nackBurst {
		t.Fatalf("resent %d of %d NACKed packets, want the burst of %d", got, 10*len(seqs), nackBurst)
	}
	st := s.u.counters()
	if st.resent != nackBurst || st.resendRefused != uint64(10*len(seqs)-nackBurst) {
		t.Errorf("resent %d refused %d, want %d, %d", st.resent, st.resendRefused, nackBurst, 10*len(seqs)-nackBurst)
	}
	// 40 more packets sent earn 40/nackShare resends.
	s.frames(20)
	r.take()
	s.clock.advance(nackRepeatWindow)
	d.nack(seqs)
	if got, want := len(r.take()), 40/nackShare; got != want {
		t.Errorf("after 40 more packets: resent %d, want %d", got, want)
	}
	// Packets no longer in the ring, or never sent, cost nothing.
	s.frames(100)
	r.take()
	s.clock.advance(nackRepeatWindow)
	before := s.u.counters()
	d.nack([]uint16{seqs[len(seqs)-1] + 1000})
	d.nack(seqs[:4])
	after := s.u.counters()
	if got := after.resent - before.resent; got != 4 {
		t.Errorf("resent %d of 4 after a refill, want 4 (a missed NACK spent budget)", got)
	}
	if after.resendRefused != before.resendRefused {
		t.Errorf("refused %d more", after.resendRefused-before.resendRefused)
	}
}

func TestResendRefusedMetric(t *testing.T) {
	s := newTestSFU(t, Options{})
	// An ended track's refusals (over budget and repeated) reach the
	// counter with the sweeper's next pass.
	s.retire(upTrackStats{resent: 1, resendRefused: 3, resendRepeated: 2})
	const name = "gonets_calls_resend_refused_packets_total"
	value := func() string {
		var b bytes.Buffer
		s.Metrics().WritePrometheus(&b)
		for _, l := range strings.Split(b.String(), "\n") {
			if v, ok := strings.CutPrefix(l, name+" "); ok {
				return v
			}
		}
		return ""
	}
	waitFor(t, name+" counted", func() bool { return value() == "5" })
}
