package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/pion/webrtc/v4"

	"github.com/gonets/gonets/bench/result"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// The call scenario's goal (issue 11): 50 calls of 4 participants, each
// sending audio and video, with less than 0.1% loss and at most 5 µs of
// the node's CPU per forwarded packet.
const (
	callGoalCalls      = 50
	callGoalPublishers = 4
	callGoalLoss       = 0.001
	callGoalCPU        = 5.0
)

// callJoiners is how many calls are set up at once; each call's
// participants join one after another. Few, so that a join time is that
// of a join beside calls that run, not beside a crowd of handshakes.
const callJoiners = 4

// callRequest bounds each signalling request of the scenario.
const callRequest = 15 * time.Second

// callParticipant is one device in one of the scenario's calls: an SDK
// session that signals, a publishing PeerConnection when it publishes,
// and a subscribing one.
type callParticipant struct {
	name      string // for errors
	stream    string // the media stream ID of its tracks
	c         *client.Client
	api       *webrtc.API
	publishes bool
	window    *callWindow
	stop      <-chan struct{}
	wg        *sync.WaitGroup // its pion goroutines and sender

	pub       atomic.Pointer[callPublisher] // nil until it publishes; nil if it does not
	connected chan struct{}                 // closed when the publisher PeerConnection connects
	sub       callSubscriber

	failure atomic.Pointer[error] // the first thing that went wrong
}

// fail keeps the participant's first failure.
func (p *callParticipant) fail(err error) { p.failure.CompareAndSwap(nil, &err) }

// err returns the participant's first failure, or nil.
func (p *callParticipant) err() error {
	if e := p.failure.Load(); e != nil {
		return fmt.Errorf("bench: %s: %w", p.name, *e)
	}
	return nil
}

// onEvent handles the participant's call pushes, on its client's delivery
// goroutine: it answers the SFU's offers and adds its candidates.
func (p *callParticipant) onEvent(ev client.Event) {
	switch ev.Kind {
	case client.EventCallOffer:
		answer, err := p.sub.answer(p.api, ev.Call.SDP, p.wg)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), callRequest)
			err = p.c.AnswerSubscriber(ctx, ev.Call.Call, answer)
			cancel()
		}
		if err != nil {
			p.fail(fmt.Errorf("answer the SFU's offer: %w", err))
		}
	case client.EventCallCandidate:
		cand := ev.Call.Candidate
		if cand.Candidate == "" {
			return
		}
		pc := p.sub.conn()
		if pub := p.pub.Load(); ev.Call.PC == wire.CallPc_CALL_PC_PUBLISH && pub != nil {
			pc = pub.pc
		}
		if pc == nil {
			return
		}
		init := webrtc.ICECandidateInit{Candidate: cand.Candidate, SDPMid: &cand.SDPMid, SDPMLineIndex: &cand.SDPMLineIndex}
		if cand.UsernameFragment != "" {
			init.UsernameFragment = &cand.UsernameFragment
		}
		if err := pc.AddICECandidate(init); err != nil {
			p.fail(fmt.Errorf("add the SFU's candidate: %w", err))
		}
	case client.EventCallRemoved:
		p.fail(fmt.Errorf("taken out of the call: %v %s", ev.Call.Removed, ev.Call.Message))
	case client.EventDisconnected:
		p.fail(fmt.Errorf("session lost: %v", ev.Err))
	}
}

// publish offers the publishing PeerConnection in call and starts
// sending, phased by phase.
func (p *callParticipant) publish(ctx context.Context, call uint64, phase time.Duration) error {
	pub, err := newCallPublisher(p.api, p.stream)
	if err != nil {
		return err
	}
	p.pub.Store(pub)
	var once sync.Once
	pub.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			once.Do(func() { close(p.connected) })
		case webrtc.PeerConnectionStateFailed:
			p.fail(errors.New("the publishing PeerConnection failed"))
		}
	})
	err = pub.offer(func(offer string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, callRequest)
		defer cancel()
		return p.c.PublishOffer(ctx, call, offer)
	})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	pub.readRTCP(p.wg)
	p.wg.Go(func() { pub.send(p.stop, phase, p.window.open) })
	return nil
}

// in reports whether the participant is in: its publishing PeerConnection
// connected (when it publishes), and packets arriving on tracks of its
// subscribing one.
func (p *callParticipant) in(tracks int) bool {
	if p.publishes {
		select {
		case <-p.connected:
		default:
			return false
		}
	}
	return p.sub.flowing() >= tracks
}

// close closes the participant's PeerConnections.
func (p *callParticipant) close() {
	if pub := p.pub.Load(); pub != nil {
		pub.pc.Close()
	}
	p.sub.close()
}

// callRun is one run of the call scenario: its participants, call by
// call, publishers first.
type callRun struct {
	cfg    Config
	t      *target
	api    *webrtc.API
	window callWindow
	stop   chan struct{}
	wg     sync.WaitGroup
	f      *fleet
	calls  [][]*callParticipant
	all    []*callParticipant

	mu   sync.Mutex // guards the following
	join *hdrhistogram.Histogram
}

// runCall runs the call scenario: Calls group calls of Publishers
// participants that send audio and video and Subscribers that only
// receive, every participant receiving every other's media through the
// node's SFU.
func runCall(ctx context.Context, cfg Config, t *target, res *result.Result) error {
	per := cfg.Publishers + cfg.Subscribers
	res.Params = map[string]any{"calls": cfg.Calls, "publishers": cfg.Publishers, "subscribers": cfg.Subscribers,
		"duration": cfg.Duration.String(), "warmup": cfg.Warmup.String()}
	res.Goal = fmt.Sprintf("%d calls × %d participants (audio + video): loss < %.1f%% and node CPU ≤ %.0f µs per forwarded packet",
		callGoalCalls, callGoalPublishers, 100*callGoalLoss, callGoalCPU)
	api, err := newCallAPI()
	if err != nil {
		return err
	}
	r := &callRun{cfg: cfg, t: t, api: api, stop: make(chan struct{}), join: result.NewHistogram()}
	defer r.close()
	users := userRange(1, cfg.Calls*per)
	for k := range cfg.Calls {
		var ps []*callParticipant
		for j := range per {
			p := &callParticipant{name: fmt.Sprintf("call %d participant %d", k+1, j+1), stream: fmt.Sprintf("u%d", users[len(r.all)]), api: api, publishes: j < cfg.Publishers,
				window: &r.window, stop: r.stop, wg: &r.wg, connected: make(chan struct{})}
			p.sub.rx = newRxStats(&r.window)
			ps = append(ps, p)
			r.all = append(r.all, p)
		}
		r.calls = append(r.calls, ps)
	}
	if r.f, err = dialFleet(ctx, t, users, func(i int, ev client.Event) { r.all[i].onEvent(ev) }); err != nil {
		return err
	}
	for i, p := range r.all {
		p.c = r.f.clients[i]
	}
	chats, err := createChats(ctx, cfg.Calls, func(ctx context.Context, k int) (uint64, error) {
		info, err := r.f.clients[k*per].CreateChat(ctx, wire.ChatKind_CHAT_KIND_GROUP, users[k*per+1:(k+1)*per], "bench call")
		return info.Chat, err
	})
	if err != nil {
		return err
	}
	pid := t.pid()
	var rssBefore int64
	if pid != "" {
		time.Sleep(time.Second) // let the sessions' setup settle
		rssBefore, _, _ = memory(pid)
	}
	if cfg.Live != nil {
		fmt.Fprintf(cfg.Live, "\rcall     joining %d calls of %d   ", cfg.Calls, per)
	}
	var up atomic.Int64
	drops := socketDrops(pid)
	err = eachCall(ctx, cfg.Calls, callJoiners, func(ctx context.Context, k int) error {
		err := r.joinCall(ctx, k, chats[k])
		if err == nil {
			up.Add(1)
		}
		return err
	})
	if err == nil {
		err = r.waitFlowing(ctx, 30*time.Second)
	}
	if err != nil {
		dropped := ""
		if now := socketDrops(pid); pid != "" && drops >= 0 && now >= 0 {
			dropped = fmt.Sprintf("; the node's UDP sockets dropped %d datagrams meanwhile", now-drops)
		}
		return fmt.Errorf("%w (with %d of %d calls up%s%s)", err, up.Load(), cfg.Calls, dropped, r.busy())
	}
	select {
	case <-time.After(cfg.Warmup):
	case <-ctx.Done():
		return ctx.Err()
	}
	return r.measure(ctx, res, rssBefore)
}

// eachCall runs f for calls 0 .. n-1, at most at a time, and returns the
// first error; after one, no more calls start.
func eachCall(ctx context.Context, n, at int, f func(ctx context.Context, k int) error) error {
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	for range min(at, n) {
		wg.Go(func() {
			for ctx.Err() == nil && first.Load() == nil {
				k := int(next.Add(1) - 1)
				if k >= n {
					return
				}
				if err := f(ctx, k); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := first.Load(); err != nil {
		return *err
	}
	return ctx.Err()
}

// joinCall sets up call k in chat: its first participant starts it, the
// others accept it one after another; each publisher publishes at once.
// A participant's join time runs from its request until it is in (see
// in): publishing, and receiving every track of those who published
// before it.
func (r *callRun) joinCall(ctx context.Context, k int, chat uint64) error {
	var call uint64
	for j, p := range r.calls[k] {
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, callRequest)
		var err error
		if j == 0 {
			var info client.CallInfo
			info, err = p.c.StartCall(rctx, chat, true)
			call = info.Call
		} else {
			_, err = p.c.AcceptCall(rctx, call)
		}
		cancel()
		if err != nil {
			return fmt.Errorf("bench: %s: join: %w", p.name, err)
		}
		if p.publishes {
			// Phase each publisher's keyframes over the period.
			phase := time.Duration(k*r.cfg.Publishers+j) * keyframeEvery / time.Duration(r.cfg.Calls*r.cfg.Publishers)
			if err := p.publish(ctx, call, phase); err != nil {
				return fmt.Errorf("bench: %s: %w", p.name, err)
			}
		}
		tracks := 2 * min(j, r.cfg.Publishers)
		for deadline := time.Now().Add(20 * time.Second); !p.in(tracks); time.Sleep(2 * time.Millisecond) {
			if err := p.err(); err != nil {
				return err
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("bench: %s not in the call after 20 s: receiving %d of %d tracks", p.name, p.sub.flowing(), tracks)
			}
		}
		r.mu.Lock()
		r.join.RecordValue(max(1, time.Since(start).Microseconds()))
		r.mu.Unlock()
	}
	return nil
}

// busy says how busy the machine's CPUs were over the last minute, when
// it can tell: a node and pion clients that fall behind lose media and
// time out.
func (r *callRun) busy() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return fmt.Sprintf("; load average %s on %d CPUs", f[0], runtime.NumCPU())
}

// tracksOf returns how many tracks participant p should receive: audio
// and video of every publisher but itself.
func (r *callRun) tracksOf(p *callParticipant) int {
	n := 2 * r.cfg.Publishers
	if p.publishes {
		n -= 2
	}
	return n
}

// waitFlowing waits until every participant receives every track it
// should.
func (r *callRun) waitFlowing(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		waiting := 0
		var last *callParticipant
		for _, p := range r.all {
			if err := p.err(); err != nil {
				return err
			}
			if p.sub.flowing() < r.tracksOf(p) {
				waiting++
				last = p
			}
		}
		if waiting == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: after %v, %d participants do not receive every track (%s: %d of %d)", limit, waiting, last.name, last.sub.flowing(), r.tracksOf(last))
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// counts sums what every participant received.
func (r *callRun) counts() streamCounts {
	var c streamCounts
	for _, p := range r.all {
		c.add(p.sub.counts())
	}
	return c
}

// sent sums the packets the publishers wrote while the window was open.
func (r *callRun) sent() int64 {
	var n int64
	for _, p := range r.all {
		if pub := p.pub.Load(); pub != nil {
			n += pub.sentIn.Load()
		}
	}
	return n
}

// measure opens the window for cfg.Duration, printing a live line each
// second, and fills res.
func (r *callRun) measure(ctx context.Context, res *result.Result, rssBefore int64) error {
	cfg, t := r.cfg, r.t
	pid := t.pid()
	var node *procMeter
	if pid != "" {
		node = startMeter(pid, cfg.ServerCPUs)
	}
	gen := startMeter("self", cfg.ClientCPUs)
	nodeCPU := newCPUTicker(pid)
	var names []string
	for _, c := range sfuCounters {
		names = append(names, c.name)
	}
	sfu0 := t.metricValues(ctx, names...)
	nodeDrops0, genDrops0 := socketDrops(pid), socketDrops("self")
	busy0, steal0, machineErr := machineCPU()
	profiled := make(chan error, 1)
	if cfg.NodeProfile != "" && t.httpURL != "" {
		go func() { profiled <- t.profile(ctx, cfg.Duration, cfg.NodeProfile) }()
	} else {
		profiled <- nil
	}
	before := r.counts()
	begin := time.Now()
	r.window.begin.Store(begin.UnixNano())
	end := begin.Add(cfg.Duration)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastSent int64
	for now := range tick.C {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		sec := result.NewHistogram()
		var delivered int64
		for _, p := range r.all {
			delivered += p.sub.rx.take(sec)
		}
		sent := r.sent()
		s := result.Sample{T: now.Sub(begin).Seconds(), Offered: float64(sent - lastSent), Delivered: float64(delivered),
			P99: float64(sec.ValueAtQuantile(99)) / 1000, Sessions: len(r.all)}
		lastSent = sent
		res.Timeline = append(res.Timeline, s)
		if cfg.Live != nil {
			fmt.Fprintf(cfg.Live, "\rcall     %5.0fs  sent %8.0f pkts/s  forwarded %9.0f pkts/s  p99 %7.2f ms  participants %d%s   ",
				s.T, s.Offered, s.Delivered, s.P99, s.Sessions, nodeCPU.live(s.Delivered))
		}
		if !now.Before(end) {
			break
		}
	}
	stopped := time.Now()
	r.window.end.Store(stopped.UnixNano())
	after := r.counts()
	secs := stopped.Sub(begin).Seconds()
	if node != nil {
		res.Node = node.read()
	}
	res.Generator = gen.read()
	busy1, steal1, _ := machineCPU()
	nodeDrops1, genDrops1 := socketDrops(pid), socketDrops("self")
	sfu1 := t.metricValues(ctx, names...)
	if cfg.Live != nil {
		fmt.Fprintln(cfg.Live)
	}
	delay := result.NewHistogram()
	for _, p := range r.all {
		p.sub.rx.mu.Lock()
		delay.Merge(p.sub.rx.delay)
		p.sub.rx.mu.Unlock()
	}
	res.Seconds = secs
	res.Sent = r.sent()
	res.Expected = after.expected - before.expected
	res.Delivered = after.received - before.received
	res.DeliveredRatio = 1
	if res.Expected > 0 {
		res.DeliveredRatio = float64(res.Delivered) / float64(res.Expected)
	}
	res.Offered = float64(res.Sent) / secs
	res.Rate = float64(res.Delivered) / secs
	res.Latency = result.Summarize(delay)
	res.Histogram = result.Buckets(delay)
	m := res.Metrics
	m["calls"] = float64(cfg.Calls)
	m["participants"] = float64(len(r.all))
	m["published_packets_per_s"] = res.Offered
	m["forwarded_packets_per_s"] = res.Rate
	m["loss_ratio"] = max(0, 1-res.DeliveredRatio)
	m["forward_delay_p50_ms"] = res.Latency.P50
	m["forward_delay_p99_ms"] = res.Latency.P99
	r.mu.Lock()
	m["join_p50_ms"] = float64(r.join.ValueAtQuantile(50)) / 1000
	m["join_p99_ms"] = float64(r.join.ValueAtQuantile(99)) / 1000
	r.mu.Unlock()
	if after.videoStreams > 0 {
		m["video_kbit_per_s_per_subscription"] = float64(after.videoBytes) * 8 / 1000 / secs / float64(after.videoStreams)
	}
	for _, c := range sfuCounters {
		v0, ok0 := sfu0[c.name]
		v1, ok1 := sfu1[c.name]
		if ok0 && ok1 {
			m[c.metric] = (v1 - v0) / secs
		}
	}
	cpu := math.NaN()
	if res.Node != nil {
		cpu = res.Node.CPUSeconds * 1e6
		if res.Delivered > 0 {
			m["node_cpu_us_per_forwarded_packet"] = cpu / float64(res.Delivered)
		}
		if res.Node.RSSBytes > 0 && rssBefore > 0 {
			m["node_rss_per_participant_kib"] = float64(res.Node.RSSBytes-rssBefore) / 1024 / float64(len(r.all))
		}
	}
	if pid != "" && nodeDrops0 >= 0 && nodeDrops1 >= 0 {
		m["node_socket_drops"] = float64(nodeDrops1 - nodeDrops0)
	}
	if genDrops0 >= 0 && genDrops1 >= 0 {
		m["generator_socket_drops"] = float64(genDrops1 - genDrops0)
	}
	if machineErr == nil && res.Node != nil && res.Generator != nil && busy1 > busy0 {
		other := max(0, 100*((busy1-busy0).Seconds()-res.Node.CPUSeconds-res.Generator.CPUSeconds)/secs)
		steal := 100 * (steal1 - steal0).Seconds() / secs
		m["other_cpu_percent"], m["steal_percent"] = other, steal
		if other >= 10 || steal >= 10 {
			res.Notes = append(res.Notes, fmt.Sprintf("while this was measured, other processes used %.0f%% CPU and the hypervisor stole %.0f%% (100 = one core): the figures are disturbed; run again on a quiet machine", other, steal))
		}
	}
	if err := <-profiled; err != nil {
		res.Notes = append(res.Notes, "node profile: "+err.Error())
	} else if cfg.NodeProfile != "" && t.httpURL != "" {
		res.Notes = append(res.Notes, "node CPU profile of the measured window: "+cfg.NodeProfile)
	}
	var lost int
	for _, p := range r.all {
		if err := p.err(); err != nil {
			lost++
			if lost <= 3 {
				res.Notes = append(res.Notes, err.Error())
			}
		}
	}
	m["participants_failed"] = float64(lost)
	res.Notes = append(res.Notes, fmt.Sprintf("each publisher sends Opus (32 kbit/s, 20 ms packets) and VP8 in 3 simulcast layers (q/h/f at 150/500/1,500 kbit/s, 30 fps, a keyframe every %v or on a PLI): %.0f packets/s; every participant receives every other publisher's audio and one video layer, the SFU's choice; loss counts the gaps in each subscriber stream's sequence numbers over the window",
		keyframeEvery, packetsPerSecond()))
	if res.SharedCores {
		res.Notes = append(res.Notes, "the pion clients (SRTP, interceptors) share the cores with the node: on 2 cores they, not the node, may limit the load")
	}
	perCPU := m["node_cpu_us_per_forwarded_packet"]
	res.Met = cfg.Calls >= callGoalCalls && cfg.Publishers >= callGoalPublishers && lost == 0 && !math.IsNaN(cpu) &&
		res.Delivered > 0 && m["loss_ratio"] < callGoalLoss && perCPU <= callGoalCPU
	return nil
}

// close stops the senders, the sessions (which takes the devices out of
// their calls) and the PeerConnections, and waits for their goroutines.
func (r *callRun) close() {
	close(r.stop)
	if r.f != nil {
		r.f.close()
	}
	for _, p := range r.all {
		p.close()
	}
	r.wg.Wait()
}

// sfuCounters are the SFU's counters the scenario reads from the node.
var sfuCounters = []struct{ name, metric string }{
	{"gonets_calls_forwarded_packets_total", "node_forwarded_packets_per_s"},
	{"gonets_calls_resent_packets_total", "node_resent_packets_per_s"},
	{"gonets_calls_nacked_packets_total", "node_nacked_packets_per_s"},
}

// metricValues reads the samples named from the metrics endpoint of a
// node the bench started; those it lacks are not in the map.
func (t *target) metricValues(ctx context.Context, names ...string) map[string]float64 {
	out := make(map[string]float64)
	if t.httpURL == "" {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.httpURL+"/metrics", nil)
	if err != nil {
		return out
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		n, v, ok := strings.Cut(lines.Text(), " ")
		if !ok || !slices.Contains(names, n) {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[n] = f
		}
	}
	return out
}
