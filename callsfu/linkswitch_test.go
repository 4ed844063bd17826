package callsfu

import (
	"sync/atomic"
	"testing"
)

// TestLayerSwitchOnSlowLink: a subscriber on the medium layer whose link
// drops to 300 kbit/s (what is beyond it lost, as on a congested link) is
// moved to the low layer by its bandwidth estimate, and the move costs it
// at most one keyframe interval of frames: its low layer starts at a
// keyframe no more than keyEvery frames after the last medium frame it got,
// and it then receives the low layer with little loss.
func TestLayerSwitchOnSlowLink(t *testing.T) {
	const keyEvery = 25 // a keyframe every 250 ms of the 100 frames a second
	s := newTestSFU(t, Options{})
	if err := s.Start(41); err != nil {
		t.Fatal(err)
	}
	// Low ~150, medium ~430, high ~900 kbit/s with their headers.
	alice := joinPeer(t, s, 41, Peer{1, 1}, 'a', peerOptions{keyEvery: keyEvery, videoBytes: []int{150, 500, 1100}})
	var link atomic.Int64
	bob := joinPeer(t, s, 41, Peer{2, 1}, 'b', peerOptions{linkIn: &link})
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
	// The switch's keyframe may be lost on the link, and its resend too
	// (the link is congested then): the switch is at the earliest low-layer
	// frame received, which must be a keyframe (frames keyEvery apart) or
	// one of the two frames after it.
	last, first := frames[from-1], frames[from]
	for _, f := range frames[from:] {
		if int16(f.frame-first.frame) < 0 {
			first = f
		}
	}
	key := first.frame - first.frame%keyEvery
	if first.frame-key > 2 {
		t.Errorf("the low layer starts at frame %d, %d frames past its keyframe %d", first.frame, first.frame-key, key)
	}
	if gap := int(int16(key - last.frame)); gap < 0 || gap > keyEvery {
		t.Errorf("frames %d (medium) to %d (the low layer's keyframe): a gap of %d frames, want 0..%d", last.frame, key, gap, keyEvery)
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
	t.Logf("switch: medium frame %d, low from frame %d; %d of %d low frames missing after it; estimate %d",
		last.frame, first.frame, missing, int(end-first.frame), bob.part.estimate.Load())
	if est := bob.part.estimate.Load(); est >= 540_000 {
		t.Errorf("bob's estimate %d, want below the medium layer's 540,000", est)
	}
}
