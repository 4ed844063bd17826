package callsfu

import (
	"slices"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// checkContinuous fails unless got is one stream as a subscriber must see
// it: each sequence number one more than the last (mod 2^16), timestamps
// never going back, and the source layer changing only at a keyframe.
func checkContinuous(t *testing.T, got []sent) {
	t.Helper()
	for i := 1; i < len(got); i++ {
		prev, p := got[i-1], got[i]
		if p.seq != prev.seq+1 {
			t.Fatalf("packet %d: seq %d after %d", i, p.seq, prev.seq)
		}
		if int32(p.ts-prev.ts) < 0 {
			t.Fatalf("packet %d: timestamp %d after %d", i, p.ts, prev.ts)
		}
		if p.layer != prev.layer && !p.keyframe {
			t.Fatalf("packet %d: layer %d → %d on a packet that is not a keyframe", i, prev.layer, p.layer)
		}
	}
}

// layers returns the source layer of each packet, runs collapsed.
func layers(got []sent) []int {
	var ls []int
	for _, p := range got {
		if len(ls) == 0 || ls[len(ls)-1] != p.layer {
			ls = append(ls, p.layer)
		}
	}
	return ls
}

func TestLayerSwitch(t *testing.T) {
	for _, c := range []struct {
		name       string
		from, to   int
		keysBefore []int // keyframes sent after setMaxLayer(to) before the target's
	}{
		{"down 2 to 0", 2, 0, []int{2}},
		{"up 0 to 2", 0, 2, []int{0, 1}},
		{"down 2 to 1", 2, 1, []int{0}},
		{"up 1 to 2", 1, 2, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSimulcast(t, 3, 0)
			s.frame()
			r := &recorder{}
			d := s.u.subscribe(r, 1, 96)
			d.setMaxLayer(c.from)
			s.frame(0, 1, 2)
			s.frames(31) // past the throttle of the subscribe's request
			s.takePLIs()
			d.setMaxLayer(c.to)
			if got := s.takePLIs(); !slices.Equal(got, []int{c.to}) {
				t.Errorf("keyframe requests = %v, want [%d]", got, c.to)
			}
			s.frame(c.keysBefore...)
			s.frame()
			if d.currentLayer() != c.from {
				t.Fatalf("switched to %d before the target's keyframe", d.currentLayer())
			}
			s.frame(c.to)
			s.frame()
			if d.currentLayer() != c.to {
				t.Fatalf("currentLayer = %d after the keyframe, want %d", d.currentLayer(), c.to)
			}
			got := r.take()
			checkContinuous(t, got)
			if ls := layers(got); !slices.Equal(ls, []int{c.from, c.to}) {
				t.Errorf("layers sent %v, want [%d %d]", ls, c.from, c.to)
			}
		})
	}
}

func TestSwitchTimestampContinues(t *testing.T) {
	s := newSimulcast(t, 2, 0)
	s.frame()
	r := &recorder{}
	d := s.u.subscribe(r, 1, 96)
	d.setMaxLayer(0)
	s.frame(0)
	d.setMaxLayer(1)
	s.stopped[0] = true
	s.frame(1) // one frame interval (33 ms = 2970 ticks) later
	got := r.take()
	if len(got) != 4 || got[2].layer != 1 {
		t.Fatalf("sent %+v, want 2 packets of layer 0 then 2 of layer 1", got)
	}
	if step := got[2].ts - got[1].ts; step != 2970 {
		t.Errorf("timestamp step at the switch = %d, want 2970 (33 ms at 90 kHz)", step)
	}
}

func TestFallbackWhenLayerStops(t *testing.T) {
	s := newSimulcast(t, 3, 0)
	s.frame()
	r := &recorder{}
	d := s.u.subscribe(r, 1, 96)
	s.frame(0, 1, 2)
	if d.currentLayer() != 2 {
		t.Fatalf("currentLayer = %d, want 2", d.currentLayer())
	}
	s.frames(31)
	s.takePLIs()
	s.stopped[2] = true
	s.frames(40) // 1.3 s: layer 2 counts as stopped after 1 s
	if got := s.u.receiving(); got != 0b011 {
		t.Fatalf("receiving = %03b, want 011", got)
	}
	if got := s.takePLIs(); !slices.Contains(got, 1) {
		t.Errorf("keyframe requests %v, want one for layer 1", got)
	}
	s.frame(1)
	if d.currentLayer() != 1 {
		t.Fatalf("currentLayer = %d after layer 2 stopped, want 1", d.currentLayer())
	}
	s.stopped[2] = false
	s.frame()
	s.frame(2)
	if d.currentLayer() != 2 {
		t.Fatalf("currentLayer = %d after layer 2 came back, want 2", d.currentLayer())
	}
	got := r.take()
	checkContinuous(t, got)
	if ls := layers(got); !slices.Equal(ls, []int{2, 1, 2}) {
		t.Errorf("layers sent %v, want [2 1 2]", ls)
	}
}

func TestSelectLayer(t *testing.T) {
	for _, c := range []struct {
		avail    uint8
		maxLayer int
		want     int
	}{
		{0b111, 2, 2},
		{0b111, 0, 0},
		{0b011, 2, 1},
		{0b001, 2, 0},
		{0b101, 1, 0},
		{0b100, 0, 2}, // nothing at or below: the lowest above
		{0b110, 0, 1},
		{0b000, 1, 1}, // nothing yet: the wanted one
	} {
		if got := selectLayer(c.avail, c.maxLayer); got != c.want {
			t.Errorf("selectLayer(%03b, %d) = %d, want %d", c.avail, c.maxLayer, got, c.want)
		}
	}
}

func TestNACKResend(t *testing.T) {
	s := newSimulcast(t, 2, 64)
	r := &recorder{}
	d := s.u.subscribe(r, 1, 96)
	d.setMaxLayer(0)
	s.frame(0, 1)
	s.frame()
	d.setMaxLayer(1)
	s.frame(1)
	s.frame()
	orig := r.take()
	if ls := layers(orig); !slices.Equal(ls, []int{0, 1}) {
		t.Fatalf("layers sent %v, want [0 1]", ls)
	}
	// Ask again for every packet sent, in the subscriber's numbers, plus one
	// never sent.
	var seqs []uint16
	for _, p := range orig {
		seqs = append(seqs, p.seq)
	}
	d.nack(append(seqs, orig[len(orig)-1].seq+1))
	if got := r.take(); !slices.Equal(got, orig) {
		t.Errorf("resent\n%+v\nwant\n%+v", got, orig)
	}
	// The same through NACK pairs: the first packet and the third (once
	// the window in which a resent packet is not resent again has passed).
	s.clock.advance(nackRepeatWindow)
	d.nackPairs([]rtcp.NackPair{{PacketID: orig[0].seq, LostPackets: 0b10}})
	if got := r.take(); !slices.Equal(got, []sent{orig[0], orig[2]}) {
		t.Errorf("resent from pairs %+v, want packets 0 and 2", got)
	}
	// Push the first packets out of the 64-packet rings.
	for range 40 {
		s.frame()
	}
	r.take()
	before := s.u.counters()
	d.nack([]uint16{orig[0].seq, orig[len(orig)-1].seq})
	got := r.take()
	if len(got) != 0 {
		t.Errorf("resent %+v, packets gone from the ring", got)
	}
	if after := s.u.counters(); after.resendMissed-before.resendMissed != 2 {
		t.Errorf("resendMissed grew by %d, want 2", after.resendMissed-before.resendMissed)
	}
}

func TestMuteUnmute(t *testing.T) {
	for _, c := range []struct {
		name  string
		kind  trackKind
		audio bool
	}{
		{"video", kindVideo, false},
		{"audio", kindAudio, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSimulcast(t, 1, 0)
			if c.audio {
				s.u = newUpTrack(upTrackConfig{kind: kindAudio, mimeType: "audio/opus", onPLI: s.onPLI, now: s.clock.Now})
			}
			r := &recorder{}
			d := s.u.subscribe(r, 1, 111)
			s.frame(0)
			s.frame()
			d.setMuted(true)
			d.setMuted(true)
			s.frame(0)
			s.frame()
			if got := r.take(); len(got) != 4 {
				t.Fatalf("sent %d packets, want the 4 before the mute", len(got))
			}
			d.nack([]uint16{0})
			if got := r.take(); len(got) != 0 {
				t.Fatalf("muted downTrack resent %d packets", len(got))
			}
			s.frames(30)
			s.takePLIs()
			d.setMuted(false)
			wantPLI := []int{0}
			if c.audio {
				wantPLI = nil
			}
			if got := s.takePLIs(); !slices.Equal(got, wantPLI) {
				t.Errorf("keyframe requests at unmute = %v, want %v", got, wantPLI)
			}
			s.frame()
			s.frame(0)
			got := r.take()
			want := 2
			if c.audio {
				want = 4 // audio resumes at once
			}
			if len(got) != want {
				t.Fatalf("after unmute sent %d packets, want %d", len(got), want)
			}
			if !c.audio && !got[0].keyframe {
				t.Errorf("video resumed on a packet that is not a keyframe")
			}
			r.pkts = nil
			d.setMuted(true)
			d.setMuted(false)
			s.frame(0)
			got = r.take()
			checkContinuous(t, got)
		})
	}
}

func TestMuteKeepsSequenceAndTime(t *testing.T) {
	s := newSimulcast(t, 1, 0)
	r := &recorder{}
	d := s.u.subscribe(r, 1, 96)
	s.frame(0)
	d.setMuted(true)
	for range 30 { // about a second muted
		s.frame()
	}
	d.setMuted(false)
	s.frame(0)
	got := r.take()
	checkContinuous(t, got)
	if len(got) != 4 {
		t.Fatalf("sent %d packets, want 4", len(got))
	}
	// Same layer: the timestamps keep the source's spacing, 31 frames.
	if step := got[2].ts - got[1].ts; step != 31*3000 {
		t.Errorf("timestamp step over the mute = %d, want %d", step, 31*3000)
	}
}

func TestDuplicateAndLateDropped(t *testing.T) {
	u := newUpTrack(upTrackConfig{kind: kindVideo, mimeType: "video/VP8", ringSize: 16})
	r := &recorder{}
	d := u.subscribe(r, 1, 96)
	recv := func(seq uint16, key bool) {
		t.Helper()
		if err := u.receive(0, rtpPacket(t, seq, uint32(seq)*10, false, vp8Payload(0, seq, true, key, 50)), t0); err != nil {
			t.Fatal(err)
		}
	}
	recv(100, true)
	for seq := uint16(101); seq <= 120; seq++ {
		if seq != 110 {
			recv(seq, false)
		}
	}
	recv(120, false) // duplicate
	recv(110, false) // reordered, within the window of 16: forwarded
	recv(110, false) // duplicate of a reordered one
	recv(104, false) // older than the window: dropped
	got := r.take()
	if len(got) != 21 {
		t.Fatalf("sent %d packets, want 21", len(got))
	}
	last := got[len(got)-1]
	if last.srcSeq != 110 || last.seq != got[0].seq+10 {
		t.Errorf("reordered packet went out as %d (source %d), want %d", last.seq, last.srcSeq, got[0].seq+10)
	}
	st := u.counters()
	if st.duplicates != 2 || st.late != 1 {
		t.Errorf("duplicates %d late %d, want 2, 1", st.duplicates, st.late)
	}
	d.nack([]uint16{got[0].seq + 10})
	if re := r.take(); len(re) != 1 || re[0].srcSeq != 110 {
		t.Errorf("resent %+v, want source 110", re)
	}
}

func TestSequenceWraparound(t *testing.T) {
	for _, c := range []struct {
		name  string
		start uint16 // the source's first sequence number
	}{
		{"source wraps", 65530},
		{"output wraps after a switch", 65533},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSimulcast(t, 2, 32)
			s.seq[0], s.seq[1] = c.start, 30000
			r := &recorder{}
			d := s.u.subscribe(r, 1, 96)
			d.setMaxLayer(0)
			s.frame(0)
			s.frame()
			d.setMaxLayer(1)
			s.frame(1)
			for range 4 {
				s.frame()
			}
			got := r.take()
			checkContinuous(t, got)
			if got[0].seq != c.start || len(got) != 16 {
				t.Fatalf("sent %d packets from seq %d, want 16 from %d", len(got), got[0].seq, c.start)
			}
			var seqs []uint16
			for _, p := range got {
				seqs = append(seqs, p.seq)
			}
			d.nack(seqs)
			if re := r.take(); !slices.Equal(re, got) {
				t.Errorf("resent across the wrap\n%+v\nwant\n%+v", re, got)
			}
		})
	}
}

func TestKeyframeRequestThrottled(t *testing.T) {
	s := newSimulcast(t, 2, 0)
	s.frame() // the clock is now t0+33ms
	r := &recorder{}
	d := s.u.subscribe(r, 1, 96) // requests layer 1 at t0+33ms
	s.frame(0, 1)
	for _, step := range []struct {
		advance time.Duration
		want    []int
	}{
		{0, nil},
		{500 * time.Millisecond, nil},
		{466 * time.Millisecond, nil},
		{time.Millisecond, []int{1}},
		{100 * time.Millisecond, nil},
		{time.Second, []int{1}},
	} {
		s.clock.advance(step.advance)
		s.takePLIs()
		d.keyframeRequest()
		d.keyframeRequest()
		if got := s.takePLIs(); !slices.Equal(got, step.want) {
			t.Errorf("at %v: requests %v, want %v", s.clock.Now().Sub(t0), got, step.want)
		}
	}
	// Layer 0 has its own budget.
	d.setMaxLayer(0)
	if got := s.takePLIs(); !slices.Equal(got, []int{0}) {
		t.Errorf("switch to layer 0 requested %v, want [0]", got)
	}
	if st := s.u.counters(); st.pliThrottled == 0 {
		t.Error("pliThrottled = 0")
	}
}
