package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// The stream scenario's goal (issue 11): one live stream holds for 500
// WHEP viewers, with less than 0.1% loss, and keeps up: a p99 forwarding
// delay of at most a second. Loss alone cannot tell: packets a late
// viewer has not read yet are neither lost nor received.
const (
	streamGoalViewers = 500
	streamGoalLoss    = 0.001
	streamGoalDelay   = time.Second
)

// whepJoiners is how many viewers start playing at once, over all parts.
const whepJoiners = 8

// whepRequest bounds each WHIP or WHEP request; notLiveWait is how long a
// viewer retries a stream not live yet (its publisher's tracks not yet
// up).
const (
	whepRequest = 15 * time.Second
	notLiveWait = 10 * time.Second
)

// whepClient returns the HTTP client the bench's WHIP publisher and WHEP
// players talk to the node's public listener with: the node's TLS
// configuration (its certificate pinned), HTTP/2 when the node offers it.
func whepClient(t *target) *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: t.tls.Clone(), ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 16,
			TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: whepRequest},
		Timeout: whepRequest + 5*time.Second,
	}
}

// postSDP posts an offer to a WHIP or WHEP endpoint as user (device 1)
// and returns the answer and the session's URL. A stream not live yet
// (409 not_live) is asked again for up to notLiveWait.
func postSDP(ctx context.Context, hc *http.Client, t *target, path string, user uint64, offer string) (answer, session string, err error) {
	deadline := time.Now().Add(notLiveWait)
	for {
		answer, session, code, err := postSDPOnce(ctx, hc, t, path, user, offer)
		if err == nil || code != "not_live" || time.Now().After(deadline) {
			return answer, session, err
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return "", "", ctx.Err()
		}
	}
}

func postSDPOnce(ctx context.Context, hc *http.Client, t *target, path string, user uint64, offer string) (answer, session, code string, err error) {
	ctx, cancel := context.WithTimeout(ctx, whepRequest)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.publicURL+path, strings.NewReader(offer))
	if err != nil {
		return "", "", "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+t.token(user, 1))
	resp, err := hc.Do(req)
	if err != nil {
		return "", "", "", fmt.Errorf("bench: POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", "", "", fmt.Errorf("bench: POST %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusCreated {
		var refusal struct{ Code, Message string }
		_ = json.Unmarshal(body, &refusal)
		return "", "", refusal.Code, fmt.Errorf("bench: POST %s: %s: %s %s", path, resp.Status, refusal.Code, refusal.Message)
	}
	return string(body), resp.Header.Get("Location"), "", nil
}

// deleteSession ends a WHIP or WHEP session (its URL, or its path on the
// public listener, as the node's Location gives it), waiting up to 5 s.
func deleteSession(hc *http.Client, t *target, session string) {
	if session == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := session
	if !strings.Contains(session, "://") {
		url = t.publicURL + session // a path, as the node gives it
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, url, nil)
	if err != nil {
		return
	}
	if resp, err := hc.Do(req); err == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}
}

// whepPlayer is one viewer of the stream: a pion PeerConnection that
// receives audio and video, offered to the node's WHEP endpoint, as a
// browser player's is.
type whepPlayer struct {
	name    string // for errors
	user    uint64
	sub     callSubscriber
	session string // the WHEP session's URL path

	failure atomic.Pointer[error] // the first thing that went wrong
}

func (v *whepPlayer) subscriber() *callSubscriber { return &v.sub }
func (v *whepPlayer) publisher() *callPublisher   { return nil }

// fail keeps the viewer's first failure.
func (v *whepPlayer) fail(err error) { v.failure.CompareAndSwap(nil, &err) }

// err returns the viewer's first failure, or nil.
func (v *whepPlayer) err() error {
	if e := v.failure.Load(); e != nil {
		return fmt.Errorf("bench: %s: %w", v.name, *e)
	}
	return nil
}

// firstFrame returns when the viewer received the last packet of its
// first video frame, Unix ns, 0 before.
func (v *whepPlayer) firstFrame() int64 { return v.sub.firstFrame.Load() }

// play offers a receive-only PeerConnection (audio, video) to the node's
// WHEP endpoint of channel and applies its answer.
func (v *whepPlayer) play(ctx context.Context, api *webrtc.API, hc *http.Client, t *target, channel uint64, wg *sync.WaitGroup) error {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	v.sub.mu.Lock()
	v.sub.pc = pc
	v.sub.mu.Unlock()
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return err
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) { v.sub.onTrack(tr, recv, wg) })
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed {
			v.fail(errors.New("the playing PeerConnection failed"))
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	sdpOffer, err := gathered(pc, offer)
	if err != nil {
		return err
	}
	answer, session, err := postSDP(ctx, hc, t, "/whep/"+strconv.FormatUint(channel, 10), v.user, sdpOffer)
	if err != nil {
		return fmt.Errorf("bench: %s: %w", v.name, err)
	}
	v.session = session
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("bench: %s: the node's answer: %w", v.name, err)
	}
	return nil
}

// waitPlaying waits up to limit until the viewer has received a whole
// video frame and audio.
func (v *whepPlayer) waitPlaying(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for v.firstFrame() == 0 || v.sub.flowing() < 2 {
		if err := v.err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			state := "no PeerConnection"
			if pc := v.sub.conn(); pc != nil {
				state = fmt.Sprintf("PeerConnection %s, ICE %s", pc.ConnectionState(), pc.ICEConnectionState())
			}
			return fmt.Errorf("bench: %s not playing after %v: receiving %d of 2 tracks, a frame: %v; %s", v.name, limit, v.sub.flowing(), v.firstFrame() != 0, state)
		}
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// stopPlayers ends the viewers' WHEP sessions, 16 at a time, and closes
// their PeerConnections.
func stopPlayers(players []*whepPlayer, hc *http.Client, t *target) {
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(16, len(players)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(players) {
					return
				}
				deleteSession(hc, t, players[i].session)
				players[i].sub.close()
			}
		})
	}
	wg.Wait()
}

// streamSource is the stream scenario's publisher, in the coordinating
// process: the channel's owner (user 1), whose session makes the channel
// and adds the viewers, and a pion WHIP encoder that sends the synthetic
// camera (three simulcast layers) and microphone of callPublisher.
type streamSource struct {
	t       *target
	f       *fleet
	channel uint64
	hc      *http.Client
	pub     *callPublisher
	session string // the WHIP session's URL path

	window    callWindow
	stop      chan struct{}
	wg        sync.WaitGroup
	connected chan struct{}
	failure   atomic.Pointer[error]
	closeOnce sync.Once
}

// startStream makes the channel with viewers members, publishes into it
// over WHIP and waits until the publisher is connected.
func startStream(ctx context.Context, t *target, viewers int) (*streamSource, error) {
	if t.publicURL == "" {
		return nil, errors.New("bench: stream needs the node's public HTTPS listener: with --server, give its address with --public")
	}
	s := &streamSource{t: t, hc: whepClient(t), stop: make(chan struct{}), connected: make(chan struct{})}
	fail := func(err error) (*streamSource, error) {
		s.close()
		return nil, err
	}
	var err error
	if s.f, err = dialFleet(ctx, t, []uint64{1}, func(int, client.Event) {}); err != nil {
		return fail(err)
	}
	owner := s.f.clients[0]
	info, err := owner.CreateChat(ctx, wire.ChatKind_CHAT_KIND_CHANNEL, nil, "bench stream")
	if err != nil {
		return fail(fmt.Errorf("bench: the stream's channel: %w", err))
	}
	s.channel = info.Chat
	members := userRange(2, viewers)
	for i := 0; i < len(members); i += 1000 {
		if err := owner.AddMembers(ctx, s.channel, members[i:min(i+1000, len(members))]); err != nil {
			return fail(fmt.Errorf("bench: the stream's viewers: %w", err))
		}
	}
	api, err := newCallAPI()
	if err != nil {
		return fail(err)
	}
	if s.pub, err = newCallPublisher(api, "live"); err != nil {
		return fail(err)
	}
	var once sync.Once
	s.pub.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			once.Do(func() { close(s.connected) })
		case webrtc.PeerConnectionStateFailed:
			err := errors.New("bench: the WHIP publisher's PeerConnection failed")
			s.failure.CompareAndSwap(nil, &err)
		}
	})
	err = s.pub.offer(func(offer string) (string, error) {
		answer, session, err := postSDP(ctx, s.hc, t, "/whip/"+strconv.FormatUint(s.channel, 10), 1, offer)
		s.session = session
		return answer, err
	})
	if err != nil {
		return fail(fmt.Errorf("bench: publish: %w", err))
	}
	s.pub.readRTCP(&s.wg)
	s.wg.Go(func() { s.pub.send(s.stop, 0, s.window.open) })
	select {
	case <-s.connected:
	case <-time.After(20 * time.Second):
		return fail(errors.New("bench: the WHIP publisher did not connect in 20 s"))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	return s, nil
}

// err returns the publisher's failure, or nil.
func (s *streamSource) err() error {
	if e := s.failure.Load(); e != nil {
		return *e
	}
	return nil
}

// close ends the WHIP session, stops the sender, closes the
// PeerConnection and the owner's session, and waits for their
// goroutines. Later calls do nothing.
func (s *streamSource) close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		deleteSession(s.hc, s.t, s.session)
		if s.pub != nil {
			s.pub.pc.Close()
		}
		s.wg.Wait()
		if s.f != nil {
			s.f.close()
		}
		s.hc.CloseIdleConnections()
	})
}
