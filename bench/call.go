package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

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

func (p *callParticipant) subscriber() *callSubscriber { return &p.sub }
func (p *callParticipant) publisher() *callPublisher   { return p.pub.Load() }

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

// busy says how busy the machine's CPUs were over the last minute, when
// it can tell: a node and pion clients that fall behind lose media and
// time out.
func busy() string {
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
