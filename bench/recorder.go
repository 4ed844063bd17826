package bench

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/gonets/gonets/bench/result"
)

// stampBytes is the head of every bench message body: the time the
// message was scheduled to be sent, Unix nanoseconds, big endian.
const stampBytes = 8

// stamp writes the scheduled time into the head of body.
func stamp(body []byte, scheduled time.Time) {
	binary.BigEndian.PutUint64(body, uint64(scheduled.UnixNano()))
}

// stampOf reads the scheduled time from a body, or reports that it holds
// none.
func stampOf(body []byte) (time.Time, bool) {
	if len(body) < stampBytes {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(body))), true
}

// recorderShards spreads recording over this many locks.
const recorderShards = 16

// recorder collects delivery and ack latencies (from the scheduled send
// time, so that a stall of the node shows in full) and counts what was
// offered, sent and delivered, overall and per second. Messages scheduled
// before the measured window began (the warm-up) are counted apart.
type recorder struct {
	begin atomic.Int64 // Unix ns when the measured window began; 0 before
	end   atomic.Int64 // Unix ns when it ended; 0 while open

	// arrived counts the deliveries received while the window was open,
	// whenever their messages were scheduled: the throughput, even when
	// an overloaded node delivers only what was sent before the window.
	// accepted counts the acks received while it was open, likewise: the
	// messages the node took in the window, which its CPU over the window
	// is divided by.
	arrived  atomic.Int64
	accepted atomic.Int64

	offered   atomic.Int64 // messages scheduled in the window
	sent      atomic.Int64 // of those, acked
	expected  atomic.Int64 // deliveries the acked ones owe
	delivered atomic.Int64 // deliveries received

	shards [recorderShards]recorderShard

	tmu      sync.Mutex // guards the following
	timeline []result.Sample
	lastOff  int64
	lastDel  int64
}

type recorderShard struct {
	mu       sync.Mutex // guards the following
	delivery *hdrhistogram.Histogram
	ack      *hdrhistogram.Histogram
	second   *hdrhistogram.Histogram // deliveries of the current second
}

func newRecorder() *recorder {
	r := &recorder{}
	for i := range r.shards {
		r.shards[i] = recorderShard{delivery: result.NewHistogram(), ack: result.NewHistogram(), second: result.NewHistogram()}
	}
	return r
}

// start opens the measured window at t.
func (r *recorder) start(t time.Time) { r.begin.Store(t.UnixNano()) }

// stop closes the measured window at t.
func (r *recorder) stop(t time.Time) { r.end.Store(t.UnixNano()) }

// inWindow reports whether a message scheduled at t is measured.
func (r *recorder) inWindow(t time.Time) bool {
	b := r.begin.Load()
	return b != 0 && t.UnixNano() >= b
}

// open reports whether the window is open at now.
func (r *recorder) open(now time.Time) bool {
	b, e := r.begin.Load(), r.end.Load()
	return b != 0 && now.UnixNano() >= b && (e == 0 || now.UnixNano() < e)
}

// scheduled counts a message scheduled at t.
func (r *recorder) scheduled(t time.Time) {
	if r.inWindow(t) {
		r.offered.Add(1)
	}
}

// acked records the ack of a message scheduled at t that owes owed
// deliveries.
func (r *recorder) acked(shard int, t time.Time, now time.Time, owed int) {
	if r.open(now) {
		r.accepted.Add(1)
	}
	if !r.inWindow(t) {
		return
	}
	r.sent.Add(1)
	r.expected.Add(int64(owed))
	sh := &r.shards[shard%recorderShards]
	sh.mu.Lock()
	sh.ack.RecordValue(max(1, now.Sub(t).Microseconds()))
	sh.mu.Unlock()
}

// deliveredAt records a delivery, at now, of a message scheduled at t.
func (r *recorder) deliveredAt(shard int, t time.Time, now time.Time) {
	if r.open(now) {
		r.arrived.Add(1)
	}
	if !r.inWindow(t) {
		return
	}
	r.delivered.Add(1)
	us := max(1, now.Sub(t).Microseconds())
	sh := &r.shards[shard%recorderShards]
	sh.mu.Lock()
	sh.delivery.RecordValue(us)
	sh.second.RecordValue(us)
	sh.mu.Unlock()
}

// take closes one second of the recorder's load: what was offered and
// delivered since the last take, and the latency of those deliveries.
func (r *recorder) take() second {
	sec := result.NewHistogram()
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		sec.Merge(sh.second)
		sh.second.Reset()
		sh.mu.Unlock()
	}
	r.tmu.Lock()
	defer r.tmu.Unlock()
	off, del := r.offered.Load(), r.delivered.Load()
	s := second{Offered: off - r.lastOff, Delivered: del - r.lastDel, Latency: hist{sec}}
	r.lastOff, r.lastDel = off, del
	return s
}

// tick closes one second of the timeline at now, with sessions online.
func (r *recorder) tick(now time.Time, sessions int) result.Sample {
	s := r.take()
	s.Sessions = sessions
	sample := s.sample(float64(now.UnixNano()-r.begin.Load()) / 1e9)
	r.tmu.Lock()
	r.timeline = append(r.timeline, sample)
	r.tmu.Unlock()
	return sample
}

// tally returns what the recorder counted so far, its histograms merged.
func (r *recorder) tally() tally {
	t := tally{Arrived: r.arrived.Load(), Accepted: r.accepted.Load(), Offered: r.offered.Load(), Sent: r.sent.Load(), Expected: r.expected.Load(),
		Delivered: r.delivered.Load(), Delivery: hist{result.NewHistogram()}, Ack: hist{result.NewHistogram()}}
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		t.Delivery.Merge(sh.delivery)
		t.Ack.Merge(sh.ack)
		sh.mu.Unlock()
	}
	return t
}

// fill writes what was recorded into res, over a window of secs seconds.
func (r *recorder) fill(res *result.Result, secs float64) {
	r.tally().fill(res, secs)
	r.tmu.Lock()
	res.Timeline = append(res.Timeline, r.timeline...)
	r.tmu.Unlock()
}

// second is one second of load, of one part or of all of them: its
// counts, the latencies of its deliveries, and the sessions online. It
// travels from a worker process as JSON.
type second struct {
	Offered   int64 `json:"offered"`
	Delivered int64 `json:"delivered"`
	Latency   hist  `json:"latency"`
	Sessions  int   `json:"sessions"`
}

// add adds o's second to s's.
func (s *second) add(o second) {
	s.Offered += o.Offered
	s.Delivered += o.Delivered
	s.Sessions += o.Sessions
	s.Latency.add(o.Latency)
}

// sample is the second as a timeline sample, t seconds into the window.
func (s second) sample(t float64) result.Sample {
	var p99 float64
	if s.Latency.Histogram != nil {
		p99 = float64(s.Latency.ValueAtQuantile(99)) / 1000
	}
	return result.Sample{T: t, Offered: float64(s.Offered), Delivered: float64(s.Delivered), P99: p99, Sessions: s.Sessions}
}

// tally is what a recorder counted (see recorder's fields), of one part
// or of all of them. It travels from a worker process as JSON.
type tally struct {
	Arrived   int64 `json:"arrived"`
	Accepted  int64 `json:"accepted"`
	Offered   int64 `json:"offered"`
	Sent      int64 `json:"sent"`
	Expected  int64 `json:"expected"`
	Delivered int64 `json:"delivered"`
	Delivery  hist  `json:"delivery"`
	Ack       hist  `json:"ack"`
}

// add adds o's counts and histograms to t's.
func (t *tally) add(o tally) {
	t.Arrived += o.Arrived
	t.Accepted += o.Accepted
	t.Offered += o.Offered
	t.Sent += o.Sent
	t.Expected += o.Expected
	t.Delivered += o.Delivered
	t.Delivery.add(o.Delivery)
	t.Ack.add(o.Ack)
}

// fill writes the tally into res, over a window of secs seconds.
func (t tally) fill(res *result.Result, secs float64) {
	d, a := t.Delivery.orEmpty(), t.Ack.orEmpty()
	res.Seconds = secs
	res.Sent, res.Expected, res.Delivered = t.Sent, t.Expected, t.Delivered
	res.DeliveredRatio = 1
	if res.Expected > 0 {
		res.DeliveredRatio = float64(res.Delivered) / float64(res.Expected)
	}
	if secs > 0 {
		res.Offered = float64(t.Offered) / secs
		res.Rate = float64(t.Arrived) / secs
	}
	res.Latency, res.Ack = result.Summarize(d), result.Summarize(a)
	res.Histogram = result.Buckets(d)
}

// hist is an HDR histogram of microseconds that travels as JSON: its V2
// compressed encoding, in base64.
type hist struct{ *hdrhistogram.Histogram }

// add merges o into h, making h's histogram first if it has none.
func (h *hist) add(o hist) {
	if h.Histogram == nil {
		h.Histogram = result.NewHistogram()
	}
	if o.Histogram != nil {
		h.Merge(o.Histogram)
	}
}

// orEmpty returns the histogram, or an empty one if there is none.
func (h hist) orEmpty() *hdrhistogram.Histogram {
	if h.Histogram == nil {
		return result.NewHistogram()
	}
	return h.Histogram
}

func (h hist) MarshalJSON() ([]byte, error) {
	b, err := h.orEmpty().Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return nil, fmt.Errorf("bench: encode histogram: %w", err)
	}
	return json.Marshal(b)
}

func (h *hist) UnmarshalJSON(data []byte) error {
	var b []byte
	if err := json.Unmarshal(data, &b); err != nil {
		return err
	}
	d, err := hdrhistogram.Decode(b)
	if err != nil {
		return fmt.Errorf("bench: decode histogram: %w", err)
	}
	h.Histogram = d
	return nil
}
