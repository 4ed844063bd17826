package callsfu

import (
	"sync/atomic"
	"testing"
)

// maxSwitchFrames bounds the frames (10 ms each) from the link slowing to
// the switch: the estimate's reaction to the loss reports (0.5–1 s seen)
// and a keyframe interval.
const maxSwitchFrames = 250

// TestLayerSwitchOnSlowLink: a subscriber on the medium layer whose link
// drops to 300 kbit/s (what is beyond it lost, as on a congested link) is
// moved to the low layer by its bandwidth estimate, and the move costs it
// no frames beyond what the link itself loses: the SFU sends the medium
// layer up to the low layer's keyframe and the low layer from it, with no
// hole between, within maxSwitchFrames of the link slowing; the subscriber
// then receives the low layer with little loss. What the SFU sent is read
// off the link (linkLog), since the congested link may lose the switch's
// keyframe, its resend, and the medium frames before it, and a receiver
// starved of CPU under -race loses more.
func TestLayerSwitchOnSlowLink(t *testing.T) {
	const keyEvery = 25 // a keyframe every 250 ms of the 100 frames a second
	s := newTestSFU(t, Options{})
	if err := s.Start(41); err != nil {
		t.Fatal(err)
	}
	// Low ~150, medium ~430, high ~900 kbit/s with their headers.
	alice := joinPeer(t, s, 41, Peer{1, 1}, 'a', peerOptions{keyEvery: keyEvery, videoBytes: []int{150, 500, 1100}})
	var link atomic.Int64
	var sent linkLog
	bob := joinPeer(t, s, 41, Peer{2, 1}, 'b', peerOptions{linkIn: &link, linkLog: &sent})
	if err := alice.publish("q", "h", "f"); err != nil {
		t.Fatal(err)
	}
	var video string
	waitFor(t, "alice's video announced", func() bool {
		return bob.sawEvent(func(e Event) bool {
			video = e.Track.ID
			return e.Kind == EventTrackPublished && e.Track.Kind == KindVideo
		})
	})
	// The estimate starts at 1 Mbit/s: room for the medium layer.
	waitFor(t, "bob on the medium layer", func() bool {
		rt := bob.track(video)
		return rt != nil && rt.lastTag.Load()&0xff == 1
	})
	link.Store(300_000)
	rt := bob.track(video)
	var from int // index in rt.frames of the first low-layer packet after the medium layer
	waitFor(t, "bob moved to the low layer and received a second of it", func() bool {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		from = -1
		for i := len(rt.frames) - 1; i > 0; i-- {
			if rt.frames[i].layer == 0 && rt.frames[i-1].layer == 1 {
				from = i
				break
			}
		}
		return from > 0 && len(rt.frames)-from > 100
	})
	rt.mu.Lock()
	frames := append([]seenFrame(nil), rt.frames...)
	rt.mu.Unlock()
	// What bob received around the switch: the last medium frame before
	// it and the earliest low frame after it (a resend may come late).
	last, first := frames[from-1], frames[from]
	for _, f := range frames[from:] {
		if int16(f.frame-first.frame) < 0 {
			first = f
		}
	}
	// What the SFU sent, from what reached the link (the congested link
	// may lose the switch's keyframe and its resend, and the medium
	// frames before it): its stream is numbered without gaps, one packet
	// a frame, and the layers differ in size. Back from the earliest low
	// frame bob got, low-sized packets are low frames of the frames
	// before it; the low run's first packet is where the SFU switched.
	sizes := sent.sizes()
	lowMax := 40 + (150+500)/2 // headers and tag, then half way to a medium payload
	start, startSeq := first.frame, first.seq
	for {
		n, ok := sizes[startSeq-1]
		if !ok || n > lowMax {
			break
		}
		start, startSeq = start-1, startSeq-1
	}
	if n, ok := sizes[startSeq-1]; !ok || n <= lowMax {
		t.Fatalf("no medium packet on the link before the low layer's first (seq %d): the link saw the switch only partly", startSeq)
	}
	// The medium run before it: the last medium frame the SFU sent.
	mediumEnd := last.frame + (startSeq - 1 - last.seq)
	key := start - start%keyEvery
	if start != key {
		t.Errorf("the SFU starts the low layer at frame %d, %d frames past its keyframe %d", start, start-key, key)
	}
	// Each layer is forwarded by its own goroutine: under load the low
	// keyframe may overtake the medium frame or two before it, which the
	// switch then drops.
	if gap := int(int16(start - mediumEnd)); gap < 0 || gap > 3 {
		t.Errorf("the SFU's last medium frame %d, then low from %d: a hole of %d frames at the switch", mediumEnd, start, gap-1)
	}
	// And the switch comes soon after the link slows: the estimate needs
	// the loss reports of a few hundred milliseconds, then the low
	// layer's next keyframe is at most keyEvery frames away.
	sent.mu.Lock()
	slowed, lost := sent.pkts[0].seq, 0
	for _, p := range sent.pkts {
		if p.lost {
			lost++
		}
	}
	sent.mu.Unlock()
	if took := int(int16(startSeq - slowed)); took > maxSwitchFrames {
		t.Errorf("the switch came %d frames after the link slowed, want at most %d", took, maxSwitchFrames)
	}
	// After the switch the low layer fits the link: frames arrive in order,
	// without gaps beyond a few lost to the link's last congestion (a lost
	// packet is resent from the ring, so it may come later out of order).
	got := make(map[uint16]bool)
	for _, f := range frames[from:] {
		if f.layer != 0 {
			t.Fatalf("frame %d of layer %d after the switch to the low layer", f.frame, f.layer)
		}
		got[f.frame] = true
	}
	missing, end := 0, frames[len(frames)-1].frame
	for f := first.frame; f != end && int16(end-f) > 0; f++ {
		if !got[f] {
			missing++
		}
	}
	if span := int(int16(end - first.frame)); missing > span/10 {
		t.Errorf("%d of the %d low-layer frames after the switch missing", missing, span)
	}
	t.Logf("switch %d frames after the link slowed (which lost %d video packets): the SFU sent medium to frame %d, low from frame %d; bob got medium to %d, low from %d; %d of %d low frames missing after it; estimate %d",
		int16(startSeq-slowed), lost, mediumEnd, start, last.frame, first.frame, missing, int(end-first.frame), bob.part.estimate.Load())
	if est := bob.part.estimate.Load(); est >= 540_000 {
		t.Errorf("bob's estimate %d, want below the medium layer's 540,000", est)
	}
}
