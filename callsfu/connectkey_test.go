package callsfu

import "testing"

// TestSubscriberStartsAtKeyframe: a subscriber that joins a call whose
// video has a keyframe every second, and at once on a PLI (as an encoder
// does: the SFU asks for one when the subscriber binds, before its DTLS is
// up), gets, as its first video packet, a keyframe: what the SFU forwarded to it before its DTLS was up never
// left (pion drops it without an error), so the track starts again at a
// keyframe once the subscriber is connected.
func TestSubscriberStartsAtKeyframe(t *testing.T) {
	s := newTestSFU(t, Options{})
	if err := s.Start(43); err != nil {
		t.Fatal(err)
	}
	alice := joinPeer(t, s, 43, Peer{1, 1}, 'a', peerOptions{keyEvery: 100, keyOnPLI: true})
	if err := alice.publish(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		bob := joinPeer(t, s, 43, Peer{2, uint64(i + 1)}, 'b', peerOptions{})
		var video string
		waitFor(t, "alice's video announced", func() bool {
			return bob.sawEvent(func(e Event) bool {
				video = e.Track.ID
				return e.Kind == EventTrackPublished && e.Track.Kind == KindVideo
			})
		})
		waitFor(t, "bob receiving alice's video", func() bool {
			rt := bob.track(video)
			if rt == nil {
				return false
			}
			rt.mu.Lock()
			defer rt.mu.Unlock()
			return len(rt.frames) > 0
		})
		rt := bob.track(video)
		rt.mu.Lock()
		first := rt.frames[0]
		rt.mu.Unlock()
		if !first.key {
			t.Errorf("join %d: the first video packet (frame %d) is not a keyframe", i, first.frame)
		}
		bob.close()
	}
}
