package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/pion/webrtc/v4"

	"github.com/gonets/gonets/bench/result"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// mediaPart is one share of a media scenario (call, stream): its pion
// clients, in this process (mediaLocal) or in a worker process (worker,
// with --procs N). The coordinator (runMedia) drives every part the same
// way and merges what they counted.
type mediaPart interface {
	// join gets the part's clients in: its calls joined and every
	// participant receiving every track (call), or its viewers playing
	// the stream (stream). It records each one's join time.
	join(ctx context.Context) error
	// begin opens the measured window now.
	begin(ctx context.Context) error
	// tick closes one second of the window: the packets the part's
	// publishers wrote and its receivers received, their forwarding
	// delays, and its receivers.
	tick(ctx context.Context) (second, error)
	// end closes the measured window now.
	end(ctx context.Context) error
	// snapshot returns what the part counted over the window.
	snapshot(ctx context.Context) (mediaTally, error)
	// pid is the process that holds the part ("self" for this one).
	pid() string
	// close takes the part's clients out and closes them.
	close() error
}

// mediaTally is what a media part counted over the window, of one part or
// of all of them. It travels from a worker process as JSON.
type mediaTally struct {
	Receivers    int       `json:"receivers"`          // participants (call) or viewers (stream)
	Sent         int64     `json:"sent"`               // RTP packets its publishers wrote
	Expected     int64     `json:"expected"`           // the runs of sequence numbers its receivers saw
	Received     int64     `json:"received"`           // distinct packets they received
	Least        int64     `json:"least"`              // the fewest one receiver received; -1 for no receiver
	VideoBytes   int64     `json:"video_bytes"`        // video payload received
	VideoStreams int64     `json:"video_streams"`      // video tracks received
	Delay        hist      `json:"delay"`              // forwarding delay, µs
	Join         hist      `json:"join"`               // join time, µs
	Losses       []float64 `json:"losses"`             // each receiver's loss ratio
	Failed       int       `json:"failed"`             // receivers that failed
	Failures     []string  `json:"failures,omitempty"` // the first few failures
}

// add adds o's counts to t's.
func (t *mediaTally) add(o mediaTally) {
	t.Receivers += o.Receivers
	t.Sent += o.Sent
	t.Expected += o.Expected
	t.Received += o.Received
	if t.Least < 0 || (o.Least >= 0 && o.Least < t.Least) {
		t.Least = o.Least
	}
	t.VideoBytes += o.VideoBytes
	t.VideoStreams += o.VideoStreams
	t.Delay.add(o.Delay)
	t.Join.add(o.Join)
	t.Losses = append(t.Losses, o.Losses...)
	t.Failed += o.Failed
	t.Failures = append(t.Failures, o.Failures...)
}

// maxFailures is how many failures a tally names.
const maxFailures = 3

// mediaReceiver is a client that receives media through the SFU: a call's
// participant or a stream's viewer.
type mediaReceiver interface {
	subscriber() *callSubscriber
	publisher() *callPublisher // nil when it does not publish
	err() error
}

// mediaLocal is a media part in this process: calls lo .. hi-1 of the
// call scenario, or viewers lo .. hi-1 of the stream scenario.
type mediaLocal struct {
	scenario string
	cfg      Config
	t        *target
	api      *webrtc.API
	lo, hi   int
	parts    int

	window callWindow
	stop   chan struct{}
	wg     sync.WaitGroup // the clients' pion goroutines and senders

	// call:
	f     *fleet
	calls [][]*callParticipant
	chats []uint64
	// stream:
	players []*whepPlayer
	channel uint64
	hc      *http.Client

	receivers []mediaReceiver
	before    []streamCounts // each receiver's at the window's begin
	after     []streamCounts // and at its end
	lastSent  int64

	closeOnce sync.Once

	mu    sync.Mutex // guards the following
	joins *hdrhistogram.Histogram
}

// newMediaLocal sets up part k of parts of a media scenario: for call,
// its participants' sessions and their calls' group chats; for stream,
// its viewers of channel, which the coordinator made. join then gets them
// in.
func newMediaLocal(ctx context.Context, scenario string, cfg Config, t *target, k, parts int, channel uint64) (*mediaLocal, error) {
	api, err := newCallAPI()
	if err != nil {
		return nil, err
	}
	p := &mediaLocal{scenario: scenario, cfg: cfg, t: t, api: api, parts: parts, channel: channel, stop: make(chan struct{}), joins: result.NewHistogram()}
	switch scenario {
	case "call":
		p.lo, p.hi = span(cfg.Calls, k, parts)
		err = p.setupCalls(ctx)
	case "stream":
		p.lo, p.hi = span(cfg.Viewers, k, parts)
		p.setupViewers()
	default:
		err = fmt.Errorf("bench: %s is not a media scenario", scenario)
	}
	if err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// setupCalls makes the part's participants, dials their sessions and
// makes each call's group chat, its first participant's.
func (p *mediaLocal) setupCalls(ctx context.Context) error {
	cfg := p.cfg
	per := cfg.Publishers + cfg.Subscribers
	users := userRange(uint64(p.lo*per+1), (p.hi-p.lo)*per)
	var all []*callParticipant
	for k := p.lo; k < p.hi; k++ {
		var ps []*callParticipant
		for j := range per {
			c := &callParticipant{name: fmt.Sprintf("call %d participant %d", k+1, j+1), stream: fmt.Sprintf("u%d", users[len(all)]), api: p.api, publishes: j < cfg.Publishers,
				window: &p.window, stop: p.stop, wg: &p.wg, connected: make(chan struct{})}
			c.sub.rx = newRxStats(&p.window)
			ps = append(ps, c)
			all = append(all, c)
		}
		p.calls = append(p.calls, ps)
	}
	for _, c := range all {
		p.receivers = append(p.receivers, c)
	}
	var err error
	if p.f, err = dialFleet(ctx, p.t, users, func(i int, ev client.Event) { all[i].onEvent(ev) }); err != nil {
		return err
	}
	for i, c := range all {
		c.c = p.f.clients[i]
	}
	p.chats, err = createChats(ctx, len(p.calls), func(ctx context.Context, k int) (uint64, error) {
		info, err := p.f.clients[k*per].CreateChat(ctx, wire.ChatKind_CHAT_KIND_GROUP, users[k*per+1:(k+1)*per], "bench call")
		return info.Chat, err
	})
	return err
}

// setupViewers makes the part's viewers: users 2+lo .. 2+hi-1, members of
// the channel.
func (p *mediaLocal) setupViewers() {
	p.hc = whepClient(p.t)
	for i := p.lo; i < p.hi; i++ {
		v := &whepPlayer{name: fmt.Sprintf("viewer %d", i+1), user: uint64(2 + i)}
		v.sub.rx = newRxStats(&p.window)
		p.players = append(p.players, v)
		p.receivers = append(p.receivers, v)
	}
}

func (p *mediaLocal) join(ctx context.Context) error {
	if p.scenario == "stream" {
		return p.joinViewers(ctx)
	}
	var up atomic.Int64
	pid := p.t.pid()
	drops := socketDrops(pid)
	err := eachCall(ctx, len(p.calls), max(1, callJoiners/p.parts), func(ctx context.Context, k int) error {
		err := p.joinCall(ctx, k)
		if err == nil {
			up.Add(1)
		}
		return err
	})
	if err == nil {
		err = p.waitFlowing(ctx, 30*time.Second)
	}
	if err != nil {
		dropped := ""
		if now := socketDrops(pid); pid != "" && drops >= 0 && now >= 0 {
			dropped = fmt.Sprintf("; the node's UDP sockets dropped %d datagrams meanwhile", now-drops)
		}
		return fmt.Errorf("%w (with %d of %d calls up%s%s)", err, up.Load(), len(p.calls), dropped, busy())
	}
	return nil
}

// joinCall sets up the part's call k: its first participant starts it,
// the others accept it one after another; each publisher publishes at
// once. A participant's join time runs from its request until it is in
// (see in): publishing, and receiving every track of those who published
// before it.
func (p *mediaLocal) joinCall(ctx context.Context, k int) error {
	cfg := p.cfg
	var call uint64
	for j, c := range p.calls[k] {
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, callRequest)
		var err error
		if j == 0 {
			var info client.CallInfo
			info, err = c.c.StartCall(rctx, p.chats[k], true)
			call = info.Call
		} else {
			_, err = c.c.AcceptCall(rctx, call)
		}
		cancel()
		if err != nil {
			return fmt.Errorf("bench: %s: join: %w", c.name, err)
		}
		if c.publishes {
			// Phase each publisher's keyframes over the period, across
			// every part's calls.
			phase := time.Duration((p.lo+k)*cfg.Publishers+j) * keyframeEvery / time.Duration(cfg.Calls*cfg.Publishers)
			if err := c.publish(ctx, call, phase); err != nil {
				return fmt.Errorf("bench: %s: %w", c.name, err)
			}
		}
		tracks := 2 * min(j, cfg.Publishers)
		for deadline := time.Now().Add(20 * time.Second); !c.in(tracks); time.Sleep(2 * time.Millisecond) {
			if err := c.err(); err != nil {
				return err
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("bench: %s not in the call after 20 s: receiving %d of %d tracks", c.name, c.sub.flowing(), tracks)
			}
		}
		p.recordJoin(time.Since(start))
	}
	return nil
}

// recordJoin records one join time.
func (p *mediaLocal) recordJoin(d time.Duration) {
	p.mu.Lock()
	p.joins.RecordValue(max(1, d.Microseconds()))
	p.mu.Unlock()
}

// tracksOf returns how many tracks participant c should receive: audio
// and video of every publisher but itself.
func (p *mediaLocal) tracksOf(c *callParticipant) int {
	n := 2 * p.cfg.Publishers
	if c.publishes {
		n -= 2
	}
	return n
}

// waitFlowing waits until every participant receives every track it
// should.
func (p *mediaLocal) waitFlowing(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		waiting := 0
		var last *callParticipant
		for _, ps := range p.calls {
			for _, c := range ps {
				if err := c.err(); err != nil {
					return err
				}
				if c.sub.flowing() < p.tracksOf(c) {
					waiting++
					last = c
				}
			}
		}
		if waiting == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: after %v, %d participants do not receive every track (%s: %d of %d)", limit, waiting, last.name, last.sub.flowing(), p.tracksOf(last))
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// joinViewers starts the part's viewers, whepJoiners at a time, and waits
// until every one has played a whole video frame and some audio.
func (p *mediaLocal) joinViewers(ctx context.Context) error {
	var up atomic.Int64
	err := eachCall(ctx, len(p.players), max(1, whepJoiners/p.parts), func(ctx context.Context, i int) error {
		v := p.players[i]
		start := time.Now()
		if err := v.play(ctx, p.api, p.hc, p.t, p.channel, &p.wg); err != nil {
			return err
		}
		if err := v.waitPlaying(ctx, 20*time.Second); err != nil {
			return err
		}
		p.recordJoin(time.Unix(0, v.firstFrame()).Sub(start))
		up.Add(1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w (with %d of %d viewers playing%s)", err, up.Load(), len(p.players), busy())
	}
	return nil
}

// counts returns each receiver's counts.
func (p *mediaLocal) counts() []streamCounts {
	c := make([]streamCounts, len(p.receivers))
	for i, r := range p.receivers {
		c[i] = r.subscriber().counts()
	}
	return c
}

// sent sums the packets the part's publishers wrote while the window was
// open.
func (p *mediaLocal) sent() int64 {
	var n int64
	for _, r := range p.receivers {
		if pub := r.publisher(); pub != nil {
			n += pub.sentIn.Load()
		}
	}
	return n
}

func (p *mediaLocal) begin(context.Context) error {
	p.before = p.counts()
	p.window.begin.Store(time.Now().UnixNano())
	return nil
}

func (p *mediaLocal) tick(context.Context) (second, error) {
	sec := result.NewHistogram()
	var delivered int64
	for _, r := range p.receivers {
		delivered += r.subscriber().rx.take(sec)
	}
	sent := p.sent()
	s := second{Offered: sent - p.lastSent, Delivered: delivered, Latency: hist{sec}, Sessions: len(p.receivers)}
	p.lastSent = sent
	return s, nil
}

func (p *mediaLocal) end(context.Context) error {
	p.window.end.Store(time.Now().UnixNano())
	p.after = p.counts()
	return nil
}

func (p *mediaLocal) snapshot(context.Context) (mediaTally, error) {
	if p.before == nil || p.after == nil {
		return mediaTally{}, errors.New("bench: no measured window yet")
	}
	t := mediaTally{Receivers: len(p.receivers), Sent: p.sent(), Least: -1, Delay: hist{result.NewHistogram()}, Join: hist{result.NewHistogram()}}
	for i, r := range p.receivers {
		a, b := p.after[i], p.before[i]
		exp, got := a.expected-b.expected, a.received-b.received
		t.Expected += exp
		t.Received += got
		if t.Least < 0 || got < t.Least {
			t.Least = got
		}
		t.VideoBytes += a.videoBytes
		t.VideoStreams += a.videoStreams
		loss := 0.0
		if exp > 0 {
			loss = max(0, 1-float64(got)/float64(exp))
		}
		t.Losses = append(t.Losses, loss)
		rx := r.subscriber().rx
		rx.mu.Lock()
		t.Delay.Merge(rx.delay)
		rx.mu.Unlock()
		if err := r.err(); err != nil {
			t.Failed++
			if len(t.Failures) < maxFailures {
				t.Failures = append(t.Failures, err.Error())
			}
		}
	}
	p.mu.Lock()
	t.Join.Merge(p.joins)
	p.mu.Unlock()
	return t, nil
}

func (p *mediaLocal) pid() string { return "self" }

// close stops the senders, the sessions (which takes the participants out
// of their calls), the viewers' WHEP sessions and the PeerConnections, and
// waits for their goroutines. Later calls do nothing.
func (p *mediaLocal) close() error {
	p.closeOnce.Do(func() {
		close(p.stop)
		if p.f != nil {
			p.f.close()
		}
		stopPlayers(p.players, p.hc, p.t)
		for _, r := range p.receivers {
			if c, ok := r.(*callParticipant); ok {
				c.close()
			}
		}
		p.wg.Wait()
		if p.hc != nil {
			p.hc.CloseIdleConnections()
		}
	})
	return nil
}

// median returns the median of xs (sorting them), 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}
