package bench

import (
	"encoding/binary"
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
	arrived atomic.Int64

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

// scheduled counts a message scheduled at t.
func (r *recorder) scheduled(t time.Time) {
	if r.inWindow(t) {
		r.offered.Add(1)
	}
}

// acked records the ack of a message scheduled at t that owes owed
// deliveries.
func (r *recorder) acked(shard int, t time.Time, now time.Time, owed int) {
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
	if b, e := r.begin.Load(), r.end.Load(); b != 0 && now.UnixNano() >= b && (e == 0 || now.UnixNano() < e) {
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

// tick closes one second of the timeline at now, with sessions online.
func (r *recorder) tick(now time.Time, sessions int) result.Sample {
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
	s := result.Sample{
		T:         float64(now.UnixNano()-r.begin.Load()) / 1e9,
		Offered:   float64(off - r.lastOff),
		Delivered: float64(del - r.lastDel),
		P99:       float64(sec.ValueAtQuantile(99)) / 1000,
		Sessions:  sessions,
	}
	r.lastOff, r.lastDel = off, del
	r.timeline = append(r.timeline, s)
	return s
}

// histograms merges the shards' delivery and ack histograms.
func (r *recorder) histograms() (delivery, ack *hdrhistogram.Histogram) {
	delivery, ack = result.NewHistogram(), result.NewHistogram()
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		delivery.Merge(sh.delivery)
		ack.Merge(sh.ack)
		sh.mu.Unlock()
	}
	return delivery, ack
}

// fill writes what was recorded into res, over a window of secs seconds.
func (r *recorder) fill(res *result.Result, secs float64) {
	d, a := r.histograms()
	res.Seconds = secs
	res.Sent, res.Expected, res.Delivered = r.sent.Load(), r.expected.Load(), r.delivered.Load()
	res.DeliveredRatio = 1
	if res.Expected > 0 {
		res.DeliveredRatio = float64(res.Delivered) / float64(res.Expected)
	}
	if secs > 0 {
		res.Offered = float64(r.offered.Load()) / secs
		res.Rate = float64(r.arrived.Load()) / secs
	}
	res.Latency, res.Ack = result.Summarize(d), result.Summarize(a)
	res.Histogram = result.Buckets(d)
	r.tmu.Lock()
	res.Timeline = append(res.Timeline, r.timeline...)
	r.tmu.Unlock()
}
