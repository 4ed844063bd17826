package callsfu

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// fakeAuth is the node's Authorizer in the tests: one stream, "live", of
// SFU call liveCall, which an admin's publish starts; admins publish and
// play, subscribers play.
type fakeAuth struct {
	sfu         *SFU
	admins      map[string]Peer // by token
	subscribers map[string]Peer // by token
}

// liveCall is the SFU call of the stream "live".
const liveCall = 42

// Authorize grants what the token's role allows.
func (a *fakeAuth) Authorize(ctx context.Context, req AuthRequest) (Grant, error) {
	if req.Token == "slow" {
		<-ctx.Done()
		return Grant{}, fmt.Errorf("session store: %w", ctx.Err())
	}
	if req.Call != "live" {
		return Grant{}, fmt.Errorf("stream %q: %w", req.Call, ErrUnknownCall)
	}
	if peer, ok := a.admins[req.Token]; ok {
		if req.Publish {
			if err := a.sfu.Start(liveCall); err != nil && CodeOf(err) != CodeCallExists {
				return Grant{}, err
			}
		}
		return Grant{Call: liveCall, Peer: peer, ICEServers: []webrtc.ICEServer{
			{URLs: []string{"turn:turn.example.net?transport=tcp"}, Username: "u", Credential: `p"w`},
		}}, nil
	}
	peer, ok := a.subscribers[req.Token]
	switch {
	case !ok:
		return Grant{}, ErrUnauthorized
	case req.Publish:
		return Grant{}, ErrForbidden
	}
	return Grant{Call: liveCall, Peer: peer}, nil
}

// whipTest is an SFU with its WHIP handler behind an httptest TLS server.
type whipTest struct {
	t   *testing.T
	sfu *SFU
	h   *WHIP
	srv *httptest.Server
}

// newWHIPTest starts an SFU and its WHIP handler on 127.0.0.1 over TLS.
func newWHIPTest(t *testing.T) *whipTest {
	return newWHIPTestTimeout(t, 0)
}

// newWHIPTestTimeout is newWHIPTest with a WHIPOptions.RequestTimeout.
func newWHIPTestTimeout(t *testing.T, timeout time.Duration) *whipTest {
	s := newTestSFU(t, Options{})
	auth := &fakeAuth{
		sfu:         s,
		admins:      map[string]Peer{"admin": {1, 1}, "admin2": {2, 1}},
		subscribers: map[string]Peer{"sub1": {10, 1}, "sub2": {11, 1}},
	}
	h, err := NewWHIP(s, WHIPOptions{Authorizer: auth, Logger: s.log, RequestTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return &whipTest{t: t, sfu: s, h: h, srv: srv}
}

// response is what the test reads of an HTTP response.
type response struct {
	status int
	header http.Header
	body   string
}

// code returns the stable code of a refusal's JSON body.
func (r response) code() string {
	var e whipError
	_ = json.Unmarshal([]byte(r.body), &e)
	return e.Code
}

// do sends a request to the handler.
func (w *whipTest) do(method, path, token, contentType, body string, header ...string) response {
	w.t.Helper()
	url := path
	if !strings.HasPrefix(path, "https://") {
		url = w.srv.URL + path
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		w.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := w.srv.Client().Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// state describes the call and the handler's sessions, to show that a
// refusal changed nothing.
func (w *whipTest) state() string {
	w.h.mu.Lock()
	sessions := len(w.h.sessions)
	w.h.mu.Unlock()
	r, err := w.sfu.room(liveCall)
	if err != nil {
		return fmt.Sprintf("no call, %d sessions", sessions)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var peers, tracks []string
	for seat := range r.participants {
		if seat.player {
			peers = append(peers, seat.peer.String()+" (player)")
		} else {
			peers = append(peers, seat.peer.String())
		}
	}
	for id := range r.tracks {
		tracks = append(tracks, id)
	}
	slices.Sort(peers)
	slices.Sort(tracks)
	return fmt.Sprintf("peers %v publishers %d tracks %v, %d sessions", peers, len(r.publishers), tracks, sessions)
}

// newClient returns a test client that signals over HTTP instead of
// through a Participant.
func newClient(t *testing.T, name string, tag byte) *testPeer {
	c := &testPeer{
		t: t, name: name, tag: tag, level: 127,
		ready: make(chan struct{}), received: make(map[string]*receivedTrack), stop: make(chan struct{}),
	}
	close(c.ready)
	t.Cleanup(c.close)
	return c
}

// gatheredOffer creates pc's offer and returns it with every candidate in it.
func gatheredOffer(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return pc.LocalDescription().SDP
}

// publishWHIP publishes audio and video with WHIP as token, without
// trickle, and starts sending. It returns the client and the session URL.
func (w *whipTest) publishWHIP(token string, tag byte) (*testPeer, string) {
	t := w.t
	t.Helper()
	c := newClient(t, "encoder-"+token, tag)
	if err := c.addTracks(nil); err != nil {
		t.Fatal(err)
	}
	c.pub.OnICECandidate(func(*webrtc.ICECandidate) {}) // the offer carries them
	resp := w.do("POST", "/whip/live", token, "application/sdp", gatheredOffer(t, c.pub))
	if resp.status != http.StatusCreated {
		t.Fatalf("WHIP POST: %d %s", resp.status, resp.body)
	}
	w.checkCreated(resp, "/whip/live/")
	if links := resp.header.Values("Link"); len(links) != 1 ||
		links[0] != `<turn:turn.example.net?transport=tcp>; rel="ice-server"; username="u"; credential="p\"w"; credential-type="password"` {
		t.Errorf("Link headers %q", links)
	}
	err := c.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: resp.body})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range c.sending {
		c.readRTCP(st)
	}
	c.startSending()
	return c, resp.header.Get("Location")
}

// checkCreated checks the headers of a 201 and that its answer carries the
// SFU's candidates.
func (w *whipTest) checkCreated(resp response, prefix string) {
	w.t.Helper()
	loc := resp.header.Get("Location")
	if !strings.HasPrefix(loc, prefix) || len(loc) < len(prefix)+20 {
		w.t.Errorf("Location %q, want %s and a random id", loc, prefix)
	}
	if ct := resp.header.Get("Content-Type"); ct != "application/sdp" {
		w.t.Errorf("Content-Type %q", ct)
	}
	if tag := resp.header.Get("ETag"); len(tag) < 3 || tag[0] != '"' {
		w.t.Errorf("ETag %q", tag)
	}
	if !strings.Contains(resp.body, "a=candidate:") {
		w.t.Errorf("the answer carries no candidate:\n%s", resp.body)
	}
}

// player is a WHEP client.
type player struct {
	*testPeer
	session string
	ssrcs   []uint32 // of the SFU's answer
	state   chan webrtc.PeerConnectionState
}

// playWHEP plays the stream as token with a recvonly audio and video offer.
// With trickle it posts the offer before gathering and sends its
// candidates with PATCH, each of which must be accepted.
func (w *whipTest) playWHEP(token string, trickle bool) *player {
	t := w.t
	t.Helper()
	c := newClient(t, "player-"+token, 0)
	pc, err := newTestAPI(t, peerOptions{}, TargetSubscriber).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	c.sub = pc
	pl := &player{testPeer: c, state: make(chan webrtc.PeerConnectionState, 16)}
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		select {
		case pl.state <- s:
		default:
		}
	})
	pc.OnTrack(c.onTrack)
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		_, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		if err != nil {
			t.Fatal(err)
		}
	}
	var offer string
	var mu sync.Mutex
	var cands []string
	gathered := make(chan struct{})
	if trickle {
		pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
			if cand == nil {
				close(gathered)
				return
			}
			mu.Lock()
			cands = append(cands, cand.ToJSON().Candidate)
			mu.Unlock()
		})
		o, err := pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.SetLocalDescription(o); err != nil {
			t.Fatal(err)
		}
		offer = o.SDP
	} else {
		offer = gatheredOffer(t, pc)
	}
	resp := w.do("POST", "/whep/live", token, "application/sdp", offer)
	if resp.status != http.StatusCreated {
		t.Fatalf("WHEP POST: %d %s", resp.status, resp.body)
	}
	w.checkCreated(resp, "/whep/live/")
	pl.session = resp.header.Get("Location")
	pl.ssrcs = answerSSRCs(t, resp.body)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: resp.body}); err != nil {
		t.Fatal(err)
	}
	if trickle {
		<-gathered
		ufrag, pwd := offerUfrag(offer), iceAttr(t, offer, "ice-pwd")
		mu.Lock()
		defer mu.Unlock()
		if len(cands) == 0 {
			t.Fatal("the player gathered no candidate")
		}
		for _, cand := range cands {
			frag := "a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:" + pwd + "\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=" + cand + "\r\n"
			r := w.do("PATCH", pl.session, token, "application/trickle-ice-sdpfrag", frag, "If-Match", resp.header.Get("ETag"))
			if r.status != http.StatusNoContent {
				t.Fatalf("trickle PATCH: %d %s", r.status, r.body)
			}
		}
	}
	return pl
}

// iceAttr returns an ICE attribute of an SDP, session or first media level.
func iceAttr(t *testing.T, s, key string) string {
	t.Helper()
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		t.Fatal(err)
	}
	if v, ok := d.Attribute(key); ok {
		return v
	}
	if v, ok := d.MediaDescriptions[0].Attribute(key); ok {
		return v
	}
	t.Fatalf("no %s in %s", key, s)
	return ""
}

// answerSSRCs returns the SSRCs an answer announces (a=ssrc).
func answerSSRCs(t *testing.T, answer string) []uint32 {
	t.Helper()
	var d sdp.SessionDescription
	if err := d.UnmarshalString(answer); err != nil {
		t.Fatal(err)
	}
	var ssrcs []uint32
	for _, m := range d.MediaDescriptions {
		for _, a := range m.Attributes {
			if a.Key != "ssrc" {
				continue
			}
			n, err := strconv.ParseUint(strings.Fields(a.Value)[0], 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(ssrcs, uint32(n)) {
				ssrcs = append(ssrcs, uint32(n))
			}
		}
	}
	return ssrcs
}

// playing reports whether the player receives at least n packets of two
// tracks, each on an SSRC of the SFU's answer and not the encoder's.
func (pl *player) playing(n int64, encoder *testPeer) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if len(pl.received) != 2 {
		return false
	}
	for _, rt := range pl.received {
		if rt.packets.Load() < n || rt.badSSRC.Load() != 0 || !slices.Contains(pl.ssrcs, rt.ssrc) {
			return false
		}
		for _, st := range encoder.sending {
			if uint32(st.sender.GetParameters().Encodings[0].SSRC) == rt.ssrc {
				return false
			}
		}
	}
	return true
}

// TestWHIPPublishWHEPPlay: an encoder publishes with WHIP, two players play
// with WHEP (one trickling its candidates) and receive its audio and video
// on the SFU's SSRCs; the encoder's DELETE ends the stream, and the players
// are removed, their connections closed and their sessions gone.
func TestWHIPPublishWHEPPlay(t *testing.T) {
	w := newWHIPTest(t)
	encoder, session := w.publishWHIP("admin", 1)
	waitFor(t, "the encoder's two tracks", func() bool {
		r, err := w.sfu.room(liveCall)
		if err != nil {
			return false
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.tracks) == 2
	})
	p1 := w.playWHEP("sub1", false)
	p2 := w.playWHEP("sub2", true)
	waitFor(t, "both players playing", func() bool { return p1.playing(20, encoder) && p2.playing(20, encoder) })

	if r := w.do("DELETE", session, "admin", "", ""); r.status != http.StatusOK {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	for _, pl := range []*player{p1, p2} {
		waitFor(t, pl.name+"'s connection closed", func() bool {
			select {
			case s := <-pl.state:
				return s == webrtc.PeerConnectionStateClosed || s == webrtc.PeerConnectionStateFailed
			default:
				return false
			}
		})
		if r := w.do("DELETE", pl.session, "", "", ""); r.status != http.StatusNotFound || r.code() != whipUnknownSession {
			t.Errorf("DELETE of an ended player's session: %d %s", r.status, r.body)
		}
	}
	if r := w.do("DELETE", session, "admin", "", ""); r.status != http.StatusNotFound {
		t.Errorf("second DELETE: %d %s", r.status, r.body)
	}
	waitFor(t, "the call to end", func() bool { return w.state() == "no call, 0 sessions" })
}

// TestWHIPRefusals: each refusal answers its status and code and changes
// nothing of the call: a player still plays, no session is added.
func TestWHIPRefusals(t *testing.T) {
	w := newWHIPTest(t)
	if r := w.do("POST", "/whep/live", "sub1", "application/sdp", recvonlyOffer(t)); r.status != http.StatusNotFound ||
		r.code() != whipUnknownCall {
		t.Errorf("WHEP before the call: %d %s", r.status, r.body)
	}
	encoder, session := w.publishWHIP("admin", 1)
	waitFor(t, "the encoder's two tracks", func() bool { return strings.Contains(w.state(), "publishers 1 tracks [1.1.0 1.1.1]") })
	pl := w.playWHEP("sub1", false)
	waitFor(t, "the player playing", func() bool { return pl.playing(10, encoder) })
	before := w.state()
	sendOffer := func() string {
		c := newClient(t, "second", 2)
		if err := c.addTracks(nil); err != nil {
			t.Fatal(err)
		}
		c.pub.OnICECandidate(func(*webrtc.ICECandidate) {})
		return gatheredOffer(t, c.pub)
	}()
	big := strings.Repeat("a=x:y\r\n", maxSDPBody/7+1)
	f := func(name string, r response, status int, code string) {
		t.Helper()
		if r.status != status || r.code() != code {
			t.Errorf("%s: %d %s, want %d %s", name, r.status, r.body, status, code)
		}
		if r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS header", name)
		}
		if after := w.state(); after != before {
			t.Errorf("%s changed the call: %s, was %s", name, after, before)
		}
	}
	f("second publisher", w.do("POST", "/whip/live", "admin2", "application/sdp", sendOffer), 409, whipTooManyPublishers)
	f("bad SDP", w.do("POST", "/whip/live", "admin2", "application/sdp", "v=0\r\nnonsense"), 400, whipBadSDP)
	f("bad WHEP SDP", w.do("POST", "/whep/live", "sub2", "application/sdp", "v=0\r\n"), 400, whipBadSDP)
	f("WHEP offer that sends", w.do("POST", "/whep/live", "sub2", "application/sdp", sendOffer), 400, whipBadSDP)
	f("no token", w.do("POST", "/whip/live", "", "application/sdp", sendOffer), 401, whipUnauthorized)
	f("a subscriber publishing", w.do("POST", "/whip/live", "sub2", "application/sdp", sendOffer), 403, whipForbidden)
	f("unknown call", w.do("POST", "/whip/other", "admin2", "application/sdp", sendOffer), 404, whipUnknownCall)
	f("bad path", w.do("POST", "/whip/a%20b", "admin2", "application/sdp", sendOffer), 404, whipNotFound)
	f("JSON offer", w.do("POST", "/whip/live", "admin2", "application/json", sendOffer), 415, whipUnsupportedMediaType)
	f("large offer", w.do("POST", "/whip/live", "admin2", "application/sdp", big), 413, whipTooLarge)
	f("GET", w.do("GET", "/whip/live", "admin2", "", ""), 405, whipMethodNotAllowed)
	f("unknown session", w.do("DELETE", "/whip/live/AAAAAAAAAAAAAAAAAAAAAA", "admin", "", ""), 404, whipUnknownSession)
	f("session of another path", w.do("DELETE", strings.Replace(session, "/whip/", "/whep/", 1), "admin", "", ""),
		404, whipUnknownSession)
	frag := func(ufrag string) string {
		return "a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:x\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n" +
			"a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
	}
	ufrag := iceAttr(t, encoder.pub.LocalDescription().SDP, "ice-ufrag")
	f("ICE restart", w.do("PATCH", session, "admin", "application/trickle-ice-sdpfrag", frag("new")), 422, whipICERestart)
	f("stale ETag", w.do("PATCH", session, "admin", "application/trickle-ice-sdpfrag", frag(ufrag), "If-Match", `"old"`),
		412, whipPreconditionFailed)
	f("SDP PATCH", w.do("PATCH", session, "admin", "application/sdp", frag(ufrag)), 415, whipUnsupportedMediaType)
	f("bad fragment", w.do("PATCH", session, "admin", "application/trickle-ice-sdpfrag", "a=candidate:1 2\r\n"),
		400, whipBadCandidate)
	if r := w.do("PATCH", session, "admin", "application/trickle-ice-sdpfrag", frag(ufrag)); r.status != http.StatusNoContent {
		t.Errorf("trickle PATCH: %d %s", r.status, r.body)
	}

	r := w.do("OPTIONS", "/whip/live", "", "", "", "Origin", "https://obs.example", "Access-Control-Request-Method", "POST")
	if r.status != http.StatusOK || r.header.Get("Accept-Post") != "application/sdp" ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("OPTIONS of the endpoint: %d %v", r.status, r.header)
	}
	r = w.do("OPTIONS", session, "", "", "")
	if r.status != http.StatusOK || r.header.Get("Accept-Patch") != "application/trickle-ice-sdpfrag" ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "DELETE") {
		t.Errorf("OPTIONS of the session: %d %v", r.status, r.header)
	}
	n := pl.track(pl.publishedTrackIDs()[0]).packets.Load()
	waitFor(t, "the player still playing", func() bool { return pl.track(pl.publishedTrackIDs()[0]).packets.Load() > n+10 })
}

// publishedTrackIDs returns the IDs of the tracks the client receives.
func (c *testPeer) publishedTrackIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for id := range c.received {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// recvonlyOffer returns a player's offer with every candidate.
func recvonlyOffer(t *testing.T) string {
	pc, err := newTestAPI(t, peerOptions{}, TargetSubscriber).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	return gatheredOffer(t, pc)
}

// TestWHEPNotLive: a player of a call in which nothing is published yet is
// refused with not_live, and the call is as it was.
func TestWHEPNotLive(t *testing.T) {
	w := newWHIPTest(t)
	if err := w.sfu.Start(liveCall); err != nil {
		t.Fatal(err)
	}
	before := w.state()
	r := w.do("POST", "/whep/live", "sub1", "application/sdp", recvonlyOffer(t))
	if r.status != http.StatusConflict || r.code() != whipNotLive {
		t.Errorf("WHEP of a call not live: %d %s", r.status, r.body)
	}
	if after := w.state(); after != before {
		t.Errorf("the refusal changed the call: %s, was %s", after, before)
	}
}

// TestWHIPSessionsEndWithTheSFU: closing the SFU removes every session.
func TestWHIPSessionsEndWithTheSFU(t *testing.T) {
	w := newWHIPTest(t)
	encoder, _ := w.publishWHIP("admin", 1)
	waitFor(t, "the encoder's two tracks", func() bool { return strings.Contains(w.state(), "tracks [1.1.0 1.1.1]") })
	pl := w.playWHEP("sub1", false)
	waitFor(t, "the player playing", func() bool { return pl.playing(5, encoder) })
	if err := w.sfu.Close(); err != nil {
		t.Fatal(err)
	}
	w.h.mu.Lock()
	n := len(w.h.sessions)
	w.h.mu.Unlock()
	if n != 0 {
		t.Errorf("%d sessions after Close", n)
	}
	if r := w.do("POST", "/whip/live", "admin", "application/sdp", recvonlyOffer(t)); r.status != http.StatusServiceUnavailable ||
		r.code() != whipClosed {
		t.Errorf("POST after Close: %d %s", r.status, r.body)
	}
}

func TestSplitWHIPPath(t *testing.T) {
	f := func(path string, publish bool, call, id string, ok bool) {
		t.Helper()
		gp, gc, gi, gok := splitWHIPPath(path)
		if gp != publish || gc != call || gi != id || gok != ok {
			t.Errorf("%q: %v %q %q %v, want %v %q %q %v", path, gp, gc, gi, gok, publish, call, id, ok)
		}
	}
	f("/whip/live", true, "live", "", true)
	f("/whep/live", false, "live", "", true)
	f("/whip/live/abc-_", true, "live", "abc-_", true)
	f("/whip/", false, "", "", false)
	f("/whip/live/", false, "", "", false)
	f("/whip/live/a/b", false, "", "", false)
	f("/whip/li ve", false, "", "", false)
	f("/whap/live", false, "", "", false)
	f("/whip/"+strings.Repeat("x", 129), false, "", "", false)
}

func TestParseSDPFrag(t *testing.T) {
	const c1 = "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"
	f, err := parseSDPFrag("a=ice-ufrag:uf\r\na=ice-pwd:pw\r\n" + c1 + "\r\nm=audio 9 RTP/AVP 0\r\n" + c1 +
		"\r\na=mid:0\r\nm=video 9 RTP/AVP 0\r\na=mid:v\r\n" + c1 + "\r\na=end-of-candidates\r\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []Candidate{
		{Candidate: c1[2:], SDPMid: "", SDPMLineIndex: 0},
		{Candidate: c1[2:], SDPMid: "0", SDPMLineIndex: 0},
		{Candidate: c1[2:], SDPMid: "v", SDPMLineIndex: 1},
	}
	if f.ufrag != "uf" || !slices.Equal(f.candidates, want) {
		t.Errorf("got %q %+v, want uf %+v", f.ufrag, f.candidates, want)
	}
	for _, bad := range []string{"a=candidate:1 1 udp\r\n", "hello\r\n", strings.Repeat(c1+"\r\n", maxFragCandidates+1)} {
		if _, err := parseSDPFrag(bad); err == nil {
			t.Errorf("%.40q parsed", bad)
		}
	}
}

func FuzzParseSDPFrag(f *testing.F) {
	f.Add("a=ice-ufrag:uf\r\na=ice-pwd:pw\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n")
	f.Add("a=end-of-candidates\n")
	f.Add("m=\na=mid:\na=candidate:")
	f.Fuzz(func(t *testing.T, body string) {
		frag, err := parseSDPFrag(body)
		if err != nil {
			return
		}
		if len(frag.candidates) > maxFragCandidates {
			t.Errorf("%d candidates", len(frag.candidates))
		}
		for _, c := range frag.candidates {
			if !strings.HasPrefix(c.Candidate, "candidate:") {
				t.Errorf("candidate %q", c.Candidate)
			}
		}
	})
}

// TestWHIPEncoderRestart: an encoder that publishes again without its
// DELETE (OBS restarted) replaces its first session; the player of the
// first stream is removed and plays the new one by asking again.
func TestWHIPEncoderRestart(t *testing.T) {
	w := newWHIPTest(t)
	first, session := w.publishWHIP("admin", 1)
	waitFor(t, "the first stream's tracks", func() bool { return strings.Contains(w.state(), "tracks [1.1.0 1.1.1]") })
	pl := w.playWHEP("sub1", false)
	waitFor(t, "the player playing", func() bool { return pl.playing(5, first) })

	second, _ := w.publishWHIP("admin", 2)
	waitFor(t, "the first player's connection closed", func() bool {
		select {
		case s := <-pl.state:
			return s == webrtc.PeerConnectionStateClosed
		default:
			return false
		}
	})
	if r := w.do("DELETE", session, "admin", "", ""); r.status != http.StatusNotFound {
		t.Errorf("DELETE of the replaced session: %d %s", r.status, r.body)
	}
	waitFor(t, "the second stream's tracks", func() bool {
		return strings.Contains(w.state(), "peers [1.1] publishers 1 tracks [1.1.0 1.1.1], 1 sessions")
	})
	again := w.playWHEP("sub1", false)
	waitFor(t, "the player playing the new stream", func() bool {
		if !again.playing(5, second) {
			return false
		}
		for _, id := range again.publishedTrackIDs() {
			if again.track(id).lastTag.Load()>>8 != 2 {
				return false
			}
		}
		return true
	})
}

// TestWHIPRequestTimeout: an Authorizer that outlasts the request's
// deadline is answered 503 timeout, within the deadline and its grace.
func TestWHIPRequestTimeout(t *testing.T) {
	w := newWHIPTestTimeout(t, 200*time.Millisecond)
	start := time.Now()
	r := w.do("POST", "/whip/live", "slow", "application/sdp", "v=0\r\n")
	if r.status != http.StatusServiceUnavailable || r.code() != whipTimeout {
		t.Errorf("a slow Authorizer: %d %s", r.status, r.body)
	}
	if d := time.Since(start); d > 200*time.Millisecond+writeGrace {
		t.Errorf("answered after %v", d)
	}
	if got := w.state(); got != "no call, 0 sessions" {
		t.Errorf("the timeout changed something: %s", got)
	}
}
