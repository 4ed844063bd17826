//go:build !race

// Not under -race: pion swaps a simulcast layer's stream on a new SSRC
// (RTPReceiver.receiveForRid) without synchronising with the reader of
// the old one, which the race detector reports in pion's own code.

package callsfu

import (
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func countStacks(sub string) int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), sub)
}

// TestSSRCChangeKeepsOneReader: a simulcast publisher whose layers change
// SSRC (same mid and rid) makes pion fire OnTrack again for the same
// TrackRemote; onTrack started a second reader on each layer each time,
// which broke the one-reader-per-layer rule of upTrack.receive.
func TestSSRCChangeKeepsOneReader(t *testing.T) {
	s := newTestSFU(t, Options{})
	if err := s.Start(10); err != nil {
		t.Fatal(err)
	}
	var xor atomic.Uint32
	alice := joinPeer(t, s, 10, Peer{1, 1}, 'a', peerOptions{ssrcXor: &xor})
	bob := joinPeer(t, s, 10, Peer{2, 1}, 'b', peerOptions{})
	if err := alice.publish("q", "h", "f"); err != nil {
		t.Fatal(err)
	}
	var video Track
	waitFor(t, "alice's video announced", func() bool {
		return bob.sawEvent(func(e Event) bool {
			if e.Kind == EventTrackPublished && e.Track.Kind == KindVideo {
				video = e.Track
				return true
			}
			return false
		})
	})
	waitFor(t, "video flowing", func() bool { return bob.flowing(20, video.ID) })
	before := countStacks("(*publishedTrack).readRTP")
	for i := uint32(1); i <= 3; i++ {
		xor.Store(i * 0x1000)
		time.Sleep(500 * time.Millisecond)
	}
	after := countStacks("(*publishedTrack).readRTP")
	t.Logf("readRTP goroutines: %d before the SSRC changes, %d after", before, after)
	if after > before {
		t.Errorf("readRTP goroutines grew from %d to %d: a layer has more than one reader", before, after)
	}
}
