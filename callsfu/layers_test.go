package callsfu

import (
	"errors"
	"strings"
	"testing"
)

func TestParseOfferLayerLimit(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
	video := func(rids ...string) string {
		s := "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\n"
		for _, r := range rids {
			s += "a=rid:" + r + " send\r\n"
		}
		return s + "a=rid:z recv\r\n" // a layer received: not one sent
	}
	if o, err := parseOffer(head + video("q", "h", "f")); err != nil || len(o.rids["1"]) != 3 {
		t.Errorf("3 layers: %v, rids %v", err, o.rids)
	}
	_, err := parseOffer(head + video("q", "h", "f", "x"))
	if err == nil || !strings.Contains(err.Error(), "4 simulcast layers") {
		t.Errorf("4 layers: %v, want a refusal naming the 4 layers", err)
	}
}

func TestPublishRefusesFourLayers(t *testing.T) {
	s := newTestSFU(t, Options{})
	if err := s.Start(10); err != nil {
		t.Fatal(err)
	}
	alice := joinPeer(t, s, 10, Peer{1, 1}, 'a', peerOptions{})
	err := alice.publish("q", "h", "f", "x")
	if !errors.Is(err, ErrBadSDP) || CodeOf(err) != CodeBadSDP {
		t.Fatalf("publish of 4 layers: %v, want ErrBadSDP", err)
	}
	// Nothing changed: no publisher PeerConnection, nothing published.
	alice.part.mu.Lock()
	pub, published := alice.part.pub, len(alice.part.published)
	alice.part.mu.Unlock()
	if pub != nil || published != 0 {
		t.Errorf("after the refusal: publisher %v, %d tracks published", pub != nil, published)
	}
	// The same offer as a WHIP publisher's.
	offer, err := alice.pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.JoinPublisher(10, Peer{3, 1}, offer.SDP, nil); CodeOf(err) != CodeBadSDP {
		t.Errorf("WHIP publish of 4 layers: %v, want ErrBadSDP", err)
	}
}
