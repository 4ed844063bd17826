package callsfu

import (
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// newTestSFU starts an SFU on an ephemeral loopback port, closed at the end
// of the test, after which no goroutine of the test may be left.
func newTestSFU(t *testing.T, o Options) *SFU {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if o.ListenAddr == "" {
		o.ListenAddr = "127.0.0.1:0"
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// TestOneToOneCall: two participants each publish audio and video and each
// receives the other's two tracks, on SSRCs of the SFU's own.
func TestOneToOneCall(t *testing.T) {
	s := newTestSFU(t, Options{})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	alice := joinPeer(t, s, 1, Peer{1, 1}, 'a', peerOptions{})

	bob := joinPeer(t, s, 1, Peer{2, 1}, 'b', peerOptions{})

	for _, c := range []*testPeer{alice, bob} {
		if err := c.publish(); err != nil {
			t.Fatalf("%s publish: %v", c.name, err)
		}
	}
	waitFor(t, "both tracks announced both ways", func() bool {
		return len(alice.publishedBy(bob.part.Peer())) == 2 && len(bob.publishedBy(alice.part.Peer())) == 2
	})
	check := func(sub, pub *testPeer) {
		t.Helper()
		ids := sub.publishedBy(pub.part.Peer())
		waitFor(t, sub.name+" receiving "+pub.name, func() bool { return sub.flowing(20, ids...) })
		sent := map[uint32]bool{}
		for _, st := range pub.sending {
			for _, e := range st.sender.GetParameters().Encodings {
				sent[uint32(e.SSRC)] = true
			}
		}
		for _, id := range ids {
			rt := sub.track(id)
			if sent[rt.ssrc] {
				t.Errorf("%s got %s on the publisher's SSRC %d", sub.name, id, rt.ssrc)
			}
			if n := rt.badSSRC.Load(); n > 0 {
				t.Errorf("%s got %d packets of %s off its SSRC %d", sub.name, n, id, rt.ssrc)
			}
			if tag := byte(rt.lastTag.Load() >> 8); tag != pub.tag {
				t.Errorf("%s got %s tagged %q, want %q", sub.name, id, tag, pub.tag)
			}
		}
	}
	check(alice, bob)
	check(bob, alice)
}

// testWriter sends the SFU's logs to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}
