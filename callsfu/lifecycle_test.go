package callsfu

import (
	"net/http"
	"strings"
	"testing"
)

// TestPlayBesidePublish: a device that publishes a stream with WHIP may
// play it with WHEP as the same peer: the player does not replace the
// encoder. A second player of that peer replaces the first player only, and
// a second publish of it replaces the first publish.
func TestPlayBesidePublish(t *testing.T) {
	w := newWHIPTest(t)
	encoder, session := w.publishWHIP("admin", 1)
	waitFor(t, "the encoder's two tracks", func() bool { return strings.Contains(w.state(), "tracks [1.1.0 1.1.1]") })

	first := w.playWHEP("admin", false)
	waitFor(t, "the encoder's own player playing", func() bool { return first.playing(10, encoder) })
	if got, want := w.state(), "peers [1.1 1.1 (player)] publishers 1 tracks [1.1.0 1.1.1], 2 sessions"; got != want {
		t.Fatalf("after the encoder's play: %s, want %s", got, want)
	}

	second := w.playWHEP("admin", false)
	waitFor(t, "the second player playing", func() bool { return second.playing(10, encoder) })
	if r := w.do("DELETE", first.session, "", "", ""); r.status != http.StatusNotFound {
		t.Errorf("DELETE of the replaced player's session: %d %s", r.status, r.body)
	}
	if got, want := w.state(), "peers [1.1 1.1 (player)] publishers 1 tracks [1.1.0 1.1.1], 2 sessions"; got != want {
		t.Errorf("after the second play: %s, want %s", got, want)
	}

	_, again := w.publishWHIP("admin", 2)
	if r := w.do("DELETE", session, "", "", ""); r.status != http.StatusNotFound {
		t.Errorf("DELETE of the replaced publish's session: %d %s", r.status, r.body)
	}
	if r := w.do("DELETE", again, "", "", ""); r.status != http.StatusOK {
		t.Errorf("DELETE of the new publish's session: %d %s", r.status, r.body)
	}
	waitFor(t, "the call to end", func() bool { return w.state() == "no call, 0 sessions" })
}
