package callsfu

import (
	"slices"
	"testing"
	"time"
)

func TestSourceRestart(t *testing.T) {
	for _, c := range []struct {
		name    string
		restart func(s *simulcast) // what the publisher's layer 0 does
	}{
		{"new SSRC", func(s *simulcast) {
			s.ssrc[0], s.seq[0], s.ts[0] = 0x5eed, 20, 123_456
		}},
		{"new SSRC, numbers going on", func(s *simulcast) { s.ssrc[0] = 0x5eed }},
		{"sequence back a little, new timestamps", func(s *simulcast) {
			s.seq[0] -= 30
			s.ts[0] = 3_000_000_000
		}},
		{"sequence back far", func(s *simulcast) { s.seq[0] -= 20000 }},
		{"sequence forward, new timestamps", func(s *simulcast) {
			s.seq[0] += 10
			s.ts[0] += 1 << 31
		}},
		{"sequence forward far", func(s *simulcast) { s.seq[0] += 20000 }},
		{"timestamps across the wrap", func(s *simulcast) { s.ts[0] = 4_294_000_000 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSimulcast(t, 2, 64)
			r0, r1 := &recorder{}, &recorder{}
			d0 := s.u.subscribe(r0, 1, 96)
			d0.setMaxLayer(0)
			s.u.subscribe(r1, 2, 96)
			s.frame(0, 1)
			s.frames(31) // past the throttle of the subscribes' requests
			s.takePLIs()
			before := r0.take()
			c.restart(s)
			// Frames of the restarted layer until its keyframe: nothing of
			// them goes out, and the subscriber's keyframe is asked for.
			s.frames(3)
			if got := r0.take(); len(got) != 0 {
				t.Fatalf("sent %d packets of the restarted stream before its keyframe: %+v", len(got), got)
			}
			if plis := s.takePLIs(); !slices.Contains(plis, 0) {
				t.Errorf("keyframe requests %v, want one of layer 0", plis)
			}
			s.frame(0)
			s.frames(2)
			after := r0.take()
			if len(after) != 6 || !after[0].keyframe {
				t.Fatalf("sent %+v after the restart, want its keyframe and 5 more packets", after)
			}
			all := append(before, after...)
			checkContinuous(t, all)
			// The timestamps go on by the time that passed: 4 frames of 33 ms.
			if step := after[0].ts - before[len(before)-1].ts; step != 4*2970 {
				t.Errorf("timestamp step at the restart = %d, want %d", step, 4*2970)
			}
			if st := s.u.counters(); st.restarts != 1 {
				t.Errorf("restarts = %d, want 1", st.restarts)
			}
			// Layer 1's subscriber never noticed.
			checkContinuous(t, r1.take())
			// NACKs across the restart resend the packets as sent.
			s.clock.advance(nackRepeatWindow)
			var seqs []uint16
			for _, p := range all[len(all)-12:] {
				seqs = append(seqs, p.seq)
			}
			d0.nack(seqs)
			if got := r0.take(); !slices.Equal(got, all[len(all)-12:]) {
				t.Errorf("resent\n%+v\nwant\n%+v", got, all[len(all)-12:])
			}
		})
	}
}

func TestRestartWhileMuted(t *testing.T) {
	s := newSimulcast(t, 1, 0)
	r := &recorder{}
	d := s.u.subscribe(r, 1, 96)
	s.frame(0)
	s.frames(3)
	d.setMuted(true)
	s.frames(3)
	s.ssrc[0], s.seq[0], s.ts[0] = 77, 9, 1_000
	s.frames(3)
	d.setMuted(false)
	s.frame(0)
	got := r.take()
	checkContinuous(t, got)
	if len(got) != 10 {
		t.Fatalf("sent %d packets, want 10", len(got))
	}
	if step := got[8].ts - got[7].ts; step != 7*2970 {
		t.Errorf("timestamp step at the unmute = %d, want %d (7 frames of 33 ms)", step, 7*2970)
	}
}

func TestNoRestartWithoutJump(t *testing.T) {
	s := newSimulcast(t, 1, 64)
	r := &recorder{}
	s.u.subscribe(r, 1, 96)
	s.frame(0)
	s.frames(10)
	// A pause of 10 s whose timestamps keep the time (a sender that stops
	// while its camera is off), a reordered packet, a gap within the ring.
	s.clock.advance(10 * time.Second)
	s.ts[0] += 10 * 90000
	s.frames(2)
	seq := s.seq[0]
	s.seq[0] += 40
	s.frames(2)
	pkt := rtpPacket(t, seq+3, s.ts[0]-3000, false, vp8Payload(0, seq+3, false, false, 100))
	if err := s.u.receive(0, pkt, s.clock.Now()); err != nil {
		t.Fatal(err)
	}
	// A stale packet, too late for the ring's window of 64.
	pkt = rtpPacket(t, seq-100, s.ts[0]-40*3000, false, vp8Payload(0, seq-100, false, false, 100))
	if err := s.u.receive(0, pkt, s.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if st := s.u.counters(); st.restarts != 0 || st.late != 1 {
		t.Errorf("restarts %d late %d, want 0, 1", st.restarts, st.late)
	}
	if got := r.take(); len(got) != 2*15+1 {
		t.Errorf("sent %d packets, want %d", len(got), 2*15+1)
	}
}

func TestStaleSSRCDropped(t *testing.T) {
	s := newSimulcast(t, 1, 0)
	r := &recorder{}
	s.u.subscribe(r, 1, 96)
	s.frame(0)
	s.ssrc[0] = 0x5eed
	s.frame(0)
	// A straggler of the old SSRC, retransmitted by the sender.
	pkt := rtpPacket(t, s.seq[0]-5, s.ts[0]-6000, false, vp8Payload(0, s.seq[0]-5, false, false, 100))
	if err := s.u.receive(0, pkt, s.clock.Now()); err != nil {
		t.Fatal(err)
	}
	s.frame()
	st := s.u.counters()
	if st.restarts != 1 || st.late != 1 {
		t.Errorf("restarts %d late %d, want 1, 1", st.restarts, st.late)
	}
	got := r.take()
	checkContinuous(t, got)
	if len(got) != 6 {
		t.Errorf("sent %d packets, want 6", len(got))
	}
}

func TestWrapsAreNoRestart(t *testing.T) {
	// The source's timestamps and sequence numbers wrap (2^32, 2^16) in the
	// same frames, across a layer switch and a mute: one stream, no
	// restart, every packet resendable.
	s := newSimulcast(t, 2, 64)
	s.ts[0], s.ts[1] = 1<<32-4*3000, 1<<32-5*3000
	s.seq[0], s.seq[1] = 1<<16-7, 1<<16-3
	r := &recorder{}
	d := s.u.subscribe(r, 1, 96)
	d.setMaxLayer(0)
	s.frame(0, 1)
	s.frames(5)
	d.setMaxLayer(1)
	s.frame(1)
	s.frames(2)
	d.setMuted(true)
	s.frames(2)
	d.setMuted(false)
	s.frame(1)
	got := r.take()
	checkContinuous(t, got)
	if ls := layers(got); !slices.Equal(ls, []int{0, 1}) || len(got) != 22 {
		t.Fatalf("sent %d packets of layers %v, want 22 of [0 1]", len(got), ls)
	}
	if st := s.u.counters(); st.restarts != 0 {
		t.Errorf("restarts = %d, want 0", st.restarts)
	}
	s.clock.advance(nackRepeatWindow)
	var seqs []uint16
	for _, p := range got {
		seqs = append(seqs, p.seq)
	}
	d.nack(seqs)
	if re := r.take(); !slices.Equal(re, got) {
		t.Errorf("resent\n%+v\nwant\n%+v", re, got)
	}
}

// TestStaleRunDropped: after a restart on the same SSRC (new sequence
// numbers and timestamps), a straggler of the run before it (reordered, or
// retransmitted by the sender) is dropped as late, as one of an old SSRC
// is, not taken for one more restart that would stop every subscriber
// until another keyframe.
func TestStaleRunDropped(t *testing.T) {
	for _, c := range []struct {
		name    string
		restart func(s *simulcast)
	}{
		{"sequence back a little, new timestamps", func(s *simulcast) {
			s.seq[0] -= 30
			s.ts[0] = 3_000_000_000
		}},
		{"sequence forward far", func(s *simulcast) { s.seq[0] += 20000 }},
		{"sequence forward, new timestamps", func(s *simulcast) {
			s.seq[0] += 10
			s.ts[0] += 1 << 31
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSimulcast(t, 1, 64)
			r := &recorder{}
			s.u.subscribe(r, 1, 96)
			s.frame(0)
			s.frames(3)
			oldSeq, oldTS := s.seq[0], s.ts[0]
			c.restart(s)
			s.frame(0)
			s.frame()
			// A straggler of the run before, then the new run goes on.
			pkt := rtpPacket(t, oldSeq-3, oldTS-3000, false, vp8Payload(0, oldSeq-3, false, false, 100))
			if err := s.u.receive(0, pkt, s.clock.Now()); err != nil {
				t.Fatal(err)
			}
			s.frames(2)
			st := s.u.counters()
			if st.restarts != 1 || st.late != 1 {
				t.Errorf("restarts %d late %d, want 1, 1", st.restarts, st.late)
			}
			got := r.take()
			checkContinuous(t, got)
			if len(got) != 16 {
				t.Errorf("sent %d packets, want 16", len(got))
			}
		})
	}
}

// TestSecondRestartSoon: a second restart on the same SSRC soon after the
// first, its timestamps going on, is a restart, not a straggler of the run
// before the first: its sequence numbers fit neither run.
func TestSecondRestartSoon(t *testing.T) {
	s := newSimulcast(t, 1, 64)
	r := &recorder{}
	s.u.subscribe(r, 1, 96)
	s.frame(0)
	s.frames(3)
	s.seq[0] += 20000
	s.frame(0)
	s.frame()
	s.seq[0] += 20000
	s.frame(0)
	s.frames(2)
	if st := s.u.counters(); st.restarts != 2 || st.late != 0 {
		t.Errorf("restarts %d late %d, want 2, 0", st.restarts, st.late)
	}
	got := r.take()
	checkContinuous(t, got)
	if len(got) != 18 {
		t.Errorf("sent %d packets, want 18", len(got))
	}
}
