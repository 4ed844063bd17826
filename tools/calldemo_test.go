package tools

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/gonets/gonets/storage"
)

// TestCallDemoPage checks how the public listener serves the call demo:
// its three files with their types, the Content-Security-Policy and the
// other headers that keep the page to itself, a revalidation answered 304,
// HEAD, a refusal of other methods and paths, and no demo with calls off.
func TestCallDemoPage(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := startStreamNode(t, testConfig(t))
	do := func(method, path string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, s.base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	for _, f := range []struct{ path, contentType, has string }{
		{"/calls/demo", "text/html; charset=utf-8", `<script src="/calls/demo/demo.js" defer></script>`},
		{"/calls/demo/demo.js", "text/javascript; charset=utf-8", "method: 'DELETE'"},
		{"/calls/demo/demo.css", "text/css; charset=utf-8", "video {"},
	} {
		resp, body := do("GET", f.path, nil)
		h := resp.Header
		if resp.StatusCode != http.StatusOK || h.Get("Content-Type") != f.contentType || !strings.Contains(body, f.has) {
			t.Errorf("GET %s: %d %q, body has %q: %v", f.path, resp.StatusCode, h.Get("Content-Type"), f.has, strings.Contains(body, f.has))
		}
		if h.Get("Content-Security-Policy") != callDemoCSP || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("Referrer-Policy") != "no-referrer" || h.Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s: headers %v", f.path, h)
		}
		etag := h.Get("ETag")
		if resp, _ := do("GET", f.path, map[string]string{"If-None-Match": etag}); etag == "" || resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s If-None-Match %s: %d", f.path, etag, resp.StatusCode)
		}
		if resp, body := do("HEAD", f.path, nil); resp.StatusCode != http.StatusOK || body != "" ||
			resp.Header.Get("Content-Length") != strconv.Itoa(len(callDemoBody(t, f.path))) {
			t.Errorf("HEAD %s: %d, Content-Length %s, body %q", f.path, resp.StatusCode, resp.Header.Get("Content-Length"), body)
		}
	}
	// Nothing on the page is loaded from elsewhere.
	for _, path := range []string{"/calls/demo", "/calls/demo/demo.js", "/calls/demo/demo.css"} {
		if b := callDemoBody(t, path); bytes.Contains(b, []byte("http://")) || bytes.Contains(b, []byte("https://")) {
			t.Errorf("%s names another origin", path)
		}
	}
	if resp, body := do("POST", "/calls/demo", nil); resp.StatusCode != http.StatusMethodNotAllowed ||
		resp.Header.Get("Allow") != "GET, HEAD" || !strings.Contains(body, `"code":"method_not_allowed"`) {
		t.Errorf("POST /calls/demo: %d %s", resp.StatusCode, body)
	}
	for _, path := range []string{"/calls/demo/", "/calls/demo/index.html", "/calls/demo/demo.js/x", "/calls/demox"} {
		if resp, body := do("GET", path, nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"code":"not_found"`) {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
		}
	}
	s.stop()

	cfg := testConfig(t)
	cfg.Calls.Enabled = false
	s = startStreamNode(t, cfg)
	if resp, body := do("GET", "/calls/demo", nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"code":"not_found"`) {
		t.Errorf("GET /calls/demo with calls off: %d %s", resp.StatusCode, body)
	}
	s.stop()
}

// callDemoBody returns the embedded body served at path.
func callDemoBody(t *testing.T, path string) []byte {
	t.Helper()
	d, err := newCallDemo()
	if err != nil {
		t.Fatal(err)
	}
	f, ok := d.files[path]
	if !ok {
		t.Fatalf("no demo file at %s", path)
	}
	return f.body
}

// chromiumPath is where Debian's chromium package puts the browser, which
// .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// TestCallDemoBrowser drives the call demo in headless Chromium, with its
// fake camera and microphone, against a node, and checks that frames
// arrive both ways:
//
//   - browser to node: the page publishes its camera and microphone into
//     channel A over WHIP; the test plays channel A over WHEP with pion and
//     must receive Opus and a VP8 keyframe, whose header it reads;
//   - node to browser: the test publishes into channel B over WHIP what it
//     receives (the browser's own VP8 and Opus, relayed by Go, keyframe
//     requests passed back), and the page plays channel B over WHEP and
//     must decode frames (its getStats framesDecoded).
//
// Then the page's Stop sends its DELETE, and channel A is no longer
// playable. It skips without Chromium at /usr/bin/chromium.
func TestCallDemoBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no Chromium at %s: the call demo's browser test needs it (.ci/run installs it: apt-get install chromium)", chromiumPath)
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := startStreamNode(t, testConfig(t))
	defer s.stop()
	const browserUser, relayUser = 1, 2
	chanA := callDemoChannel(t, s, browserUser, relayUser)
	chanB := callDemoChannel(t, s, relayUser, browserUser)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx, closeBrowser := newChromium(t, ctx)
	defer closeBrowser()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.base+"/calls/demo#token="+s.token(browserUser)+"&channel="+chanA),
		chromedp.WaitVisible(chromedp.CSS("#publish")),
	); err != nil {
		t.Fatalf("load the demo: %v", err)
	}
	p := &demoPage{t: t, ctx: ctx}
	if !p.bool(`window.isSecureContext && document.getElementById('channel').value === '` + chanA + `' && location.hash === ''`) {
		t.Fatal("the page is not a secure context, or did not take the channel from its fragment and drop the fragment")
	}
	p.checkLinkParsing()

	p.click("#publish")
	p.waitFor("the page's publish to be live and send frames", func() bool {
		return p.text("pub-state") == "live" && p.number("pub-frames") > 0 && p.number("pub-audio") > 0
	})
	// The relay publishes only now: a publisher that sends nothing for
	// calls.silence_timeout is removed.
	relay := startCallDemoRelay(t, s, chanB, s.token(relayUser))
	defer relay.close()
	relay.play(chanA, s.token(relayUser))
	waitUntil(t, "a VP8 keyframe and Opus from the browser", func() bool {
		return relay.keyframes.Load() > 0 && relay.audio.Load() >= 10
	})
	w, h := relay.size()
	if w == 0 || h == 0 || w > 640 || h > 480 || w*3 != h*4 {
		t.Errorf("the browser's keyframe is %dx%d, want the fake camera's 4:3, at most the 640x480 asked for", w, h)
	}

	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#channel"), chanB)); err != nil {
		t.Fatal(err)
	}
	// The relay's tracks reach channel B's room with their first packets;
	// until then the page's play is refused not_live, and it plays again.
	p.click("#play")
	p.waitFor("the page to decode frames of the stream the test publishes", func() bool {
		if st := p.text("play-state"); strings.HasPrefix(st, "error: not_live") {
			p.click("#play")
		} else if strings.HasPrefix(st, "error") {
			t.Fatalf("play: %s", st)
		}
		return p.number("play-frames") > 0 && p.text("play-size") != "-"
	})
	t.Logf("the test received %d VP8 keyframes (%dx%d), %d video and %d audio packets from the browser; the browser sent %d frames and decoded %d (%s) of the relay's",
		relay.keyframes.Load(), w, h, relay.video.Load(), relay.audio.Load(), p.number("pub-frames"), p.number("play-frames"), p.text("play-size"))

	p.click("#unpublish")
	p.waitFor("the page's DELETE", func() bool { return p.text("pub-state") == "stopped" })
	probe := newStreamPeer(t)
	if _, err := probe.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer := offerOf(t, probe)
	if status, body, code := s.post("/whep/"+chanA, s.token(relayUser), offer); code != "not_live" && code != "unknown_call" {
		t.Errorf("WHEP play of channel A after the page's DELETE: %d %s, want not_live or unknown_call", status, body)
	}
	_ = probe.GracefulClose()
	closeBrowser()
}

// callDemoChannel creates a channel of owner with member as a subscriber
// and returns its id.
func callDemoChannel(t *testing.T, s *streamNode, owner, member uint64) string {
	t.Helper()
	ctx := context.Background()
	ch, err := s.n.store.CreateChat(ctx, storage.ChatSpec{Kind: storage.ChatChannel, Creator: storage.UserID(owner)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.n.store.AddMember(ctx, ch.ID, storage.UserID(member), storage.RoleSubscriber); err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(uint64(ch.ID), 10)
}

// newChromium starts headless Chromium with fake media devices, a fresh
// profile, and the node's self-signed certificate accepted, and returns a
// tab's context and a func that closes the browser and waits for it.
func newChromium(t *testing.T, ctx context.Context) (context.Context, func()) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		// The node's test certificate is self-signed: tests only.
		chromedp.Flag("ignore-certificate-errors", true),
		// The node and its media listen on 127.0.0.1: Chromium gathers its
		// loopback candidates only when allowed, and shows its addresses,
		// not mDNS names, which the node does not resolve.
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tctx, cancelTab := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		if e, ok := ev.(*runtime.EventConsoleAPICalled); ok {
			var b strings.Builder
			for _, a := range e.Args {
				b.WriteString(" ")
				b.Write(a.Value)
			}
			t.Logf("page console.%s:%s", e.Type, b.String())
		}
	}))
	if err := chromedp.Do(tctx); err != nil {
		cancelTab()
		cancelAlloc()
		t.Fatalf("start Chromium: %v", err)
	}
	var once sync.Once
	return tctx, func() {
		once.Do(func() {
			cancelTab()
			cancelAlloc()
		})
	}
}

// demoPage reads and drives the demo in a tab.
type demoPage struct {
	t   *testing.T
	ctx context.Context
}

// evalPage evaluates a JavaScript expression in p's page.
func evalPage[T any](p *demoPage, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (p *demoPage) bool(expr string) bool {
	p.t.Helper()
	return evalPage[bool](p, expr)
}

// text returns the text of the element of id.
func (p *demoPage) text(id string) string {
	p.t.Helper()
	return evalPage[string](p, `document.getElementById('`+id+`').textContent`)
}

// number returns the number the element of id shows.
func (p *demoPage) number(id string) int {
	p.t.Helper()
	n, err := strconv.Atoi(p.text(id))
	if err != nil {
		p.t.Fatalf("#%s: %v", id, err)
	}
	return n
}

func (p *demoPage) click(sel string) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		p.t.Fatalf("click %s: %v", sel, err)
	}
}

// waitFor polls cond until it holds, or fails the test with the page's
// states after 20 s.
func (p *demoPage) waitFor(what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s: publish %q (%s frames), play %q (%s frames)", what,
				p.text("pub-state"), p.text("pub-frames"), p.text("play-state"), p.text("play-frames"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkLinkParsing checks the page's parser of WHIP's Link header (RFC
// 9725 section 4.6), which the node's answers do not exercise: it sends no
// ICE servers today.
func (p *demoPage) checkLinkParsing() {
	p.t.Helper()
	got := evalPage[string](p, `JSON.stringify(iceServers('<stun:stun.example.net>; rel="ice-server", '+
		'<turn:turn.example.net?transport=udp>; rel="ice-server"; username="u;1"; credential="p\\"w"; credential-type="password", '+
		'<https://example.net/x>; rel="next"'))`)
	want := `[{"urls":"stun:stun.example.net"},{"urls":"turn:turn.example.net?transport=udp","username":"u;1","credential":"p\"w"}]`
	if got != want {
		p.t.Errorf("iceServers(Link) = %s, want %s", got, want)
	}
}

// callDemoRelay is the Go side of the browser test: a WHIP publisher into
// one channel that sends what a WHEP player of another channel receives.
type callDemoRelay struct {
	t       *testing.T
	s       *streamNode
	out     *webrtc.PeerConnection // publishes into the relay's channel
	video   atomic.Int64           // VP8 packets received
	audio   atomic.Int64           // Opus packets received
	vTrack  *webrtc.TrackLocalStaticRTP
	aTrack  *webrtc.TrackLocalStaticRTP
	vSender *webrtc.RTPSender

	keyframes atomic.Int64
	mu        sync.Mutex // guards the following
	w, h      int        // of the last keyframe
	in        *webrtc.PeerConnection
	videoSSRC uint32 // of the track in played

	wg sync.WaitGroup
}

// startCallDemoRelay publishes a VP8 and an Opus track into channel with
// tok; they carry nothing until play.
func startCallDemoRelay(t *testing.T, s *streamNode, channel, tok string) *callDemoRelay {
	t.Helper()
	r := &callDemoRelay{t: t, s: s, out: newStreamPeer(t)}
	var err error
	r.vTrack, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "relay")
	if err != nil {
		t.Fatal(err)
	}
	r.aTrack, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "relay")
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []*webrtc.TrackLocalStaticRTP{r.aTrack, r.vTrack} {
		x, err := r.out.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			t.Fatal(err)
		}
		if tr == r.vTrack {
			r.vSender = x.Sender()
		}
	}
	status, body, _ := s.post("/whip/"+channel, tok, offerOf(t, r.out))
	if status != http.StatusCreated {
		t.Fatalf("the relay's WHIP publish: %d %s", status, body)
	}
	answer(t, r.out, body)
	// Keyframe requests of the relay's players go to the browser.
	r.wg.Go(func() {
		for {
			pkts, _, err := r.vSender.ReadRTCP()
			if err != nil {
				return
			}
			for _, pkt := range pkts {
				switch pkt.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					r.requestKeyframe()
				}
			}
		}
	})
	return r
}

// requestKeyframe sends a PLI for the video track the relay plays.
func (r *callDemoRelay) requestKeyframe() {
	r.mu.Lock()
	in, ssrc := r.in, r.videoSSRC
	r.mu.Unlock()
	if in != nil && ssrc != 0 {
		_ = in.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	}
}

// play plays channel with tok, once it is live, and relays what it
// receives.
func (r *callDemoRelay) play(channel, tok string) {
	r.t.Helper()
	in := newStreamPeer(r.t)
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := in.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			r.t.Fatal(err)
		}
	}
	in.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		video := tr.Kind() == webrtc.RTPCodecTypeVideo
		if video {
			r.mu.Lock()
			r.videoSSRC = uint32(tr.SSRC())
			r.mu.Unlock()
		}
		r.wg.Go(func() {
			var asked time.Time
			for {
				p, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				if video {
					r.video.Add(1)
					r.keyframe(p)
					// As a browser does, ask until a keyframe comes: the
					// one the stream started with went out before this
					// player joined.
					if r.keyframes.Load() == 0 && time.Since(asked) > 500*time.Millisecond {
						asked = time.Now()
						r.requestKeyframe()
					}
					_ = r.vTrack.WriteRTP(p)
				} else {
					r.audio.Add(1)
					_ = r.aTrack.WriteRTP(p)
				}
			}
		})
	})
	r.mu.Lock()
	r.in = in
	r.mu.Unlock()
	offer := offerOf(r.t, in)
	waitUntil(r.t, "the browser's stream to be live", func() bool {
		status, body, code := r.s.post("/whep/"+channel, tok, offer)
		switch {
		case status == http.StatusCreated:
			answer(r.t, in, body)
			return true
		case code != "not_live":
			r.t.Fatalf("the relay's WHEP play: %d %s", status, body)
		}
		return false
	})
}

// keyframe counts p if it starts a VP8 keyframe (RFC 7741 section 4.3;
// RFC 6386 section 9.1) and keeps its size.
func (r *callDemoRelay) keyframe(p *rtp.Packet) {
	var vp8 codecs.VP8Packet
	if _, err := vp8.Unmarshal(p.Payload); err != nil || vp8.S != 1 || vp8.PID != 0 {
		return
	}
	w, h, err := vp8KeyframeSize(vp8.Payload)
	if err != nil {
		return
	}
	r.mu.Lock()
	r.w, r.h = w, h
	r.mu.Unlock()
	r.keyframes.Add(1)
}

// vp8KeyframeSize returns the size of the keyframe a VP8 frame starts
// with, or an error for an interframe or a frame too short.
func vp8KeyframeSize(b []byte) (w, h int, err error) {
	switch {
	case len(b) < 10:
		return 0, 0, errors.New("shorter than a keyframe's header")
	case b[0]&1 != 0:
		return 0, 0, errors.New("an interframe")
	case b[3] != 0x9d || b[4] != 0x01 || b[5] != 0x2a:
		return 0, 0, fmt.Errorf("start code %x, want 9d012a", b[3:6])
	}
	return int(b[6]) | int(b[7]&0x3f)<<8, int(b[8]) | int(b[9]&0x3f)<<8, nil
}

// size returns the size of the last keyframe received.
func (r *callDemoRelay) size() (w, h int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.w, r.h
}

// close closes both PeerConnections and waits for the relay's goroutines.
func (r *callDemoRelay) close() {
	r.mu.Lock()
	in := r.in
	r.mu.Unlock()
	if in != nil {
		_ = in.GracefulClose()
	}
	_ = r.out.GracefulClose()
	r.wg.Wait()
}
