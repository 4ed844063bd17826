package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gonets/gonets/bench/result"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A body starts with the scheduled send time (UnixNano, 8 bytes) and the
// sender's user id (4 bytes), little-endian.
const headerBytes = 12

func sentAt(b []byte) int64    { return int64(binary.LittleEndian.Uint64(b)) }
func senderOf(b []byte) uint32 { return binary.LittleEndian.Uint32(b[8:]) }
func putHeader(b []byte, at int64, from uint32) {
	binary.LittleEndian.PutUint64(b, uint64(at))
	binary.LittleEndian.PutUint32(b[8:], from)
}

// peerConn is one client connection carrying many users: their
// subscriptions share one channel that its receiver drains.
type peerConn struct {
	nc    *nats.Conn
	js    jetstream.JetStream // nil on nats-core
	shard *shard
	ch    chan *nats.Msg
	users []uint32 // the users on this connection; senders pick among them
	subs  []*nats.Subscription
	// subUser maps a subscription to its user, to drop a sender's own
	// copy of its group post. Written before the receiver starts.
	subUser map[*nats.Subscription]uint32
}

// traffic is a messaging workload (chat, group, channel, open-loop
// storage) on a set of client connections.
type traffic struct {
	e     *env
	rec   *recorder
	tl    *timeline
	conns []*peerConn // every connection
	// senders are the connections that publish, each with its own
	// goroutine and an equal share of the rate.
	senders []*peerConn
	// route picks a message's sender and subject on c.
	route func(c *peerConn, rng *rand.Rand) (from uint32, subject string)
	// fanout is the deliveries a message owes.
	fanout int64
	// dropEcho skips a delivery to the sender's own subscription.
	dropEcho bool

	done chan struct{}
	wg   sync.WaitGroup // receivers
}

// newTraffic returns an empty workload; add connections with addConn.
func newTraffic(e *env) *traffic {
	t := &traffic{e: e, rec: newRecorder(), done: make(chan struct{})}
	return t
}

// addConn opens a connection whose receive channel holds chanCap messages
// (a full channel drops, counted by nats.go as the subscription's drops).
func (t *traffic) addConn(name string, chanCap int) (*peerConn, error) {
	nc, err := t.e.dial.connect(name)
	if err != nil {
		return nil, err
	}
	c := &peerConn{nc: nc, shard: t.rec.shardFor(len(t.conns)), ch: make(chan *nats.Msg, chanCap)}
	t.conns = append(t.conns, c)
	if t.e.jetStream() {
		c.js, err = jetstream.New(nc,
			jetstream.WithPublishAsyncMaxPending(maxAckPending),
			jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
				t.rec.acknowledged(c.shard, sentAt(m.Data), time.Now().UnixNano(), false)
			}),
			jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, _ error) {
				t.rec.acknowledged(c.shard, sentAt(m.Data), time.Now().UnixNano(), true)
			}))
		if err != nil {
			return nil, fmt.Errorf("jetstream: %w", err)
		}
	}
	return c, nil
}

// subscribe subscribes user on c to subject.
func (t *traffic) subscribe(c *peerConn, subject string, user uint32) error {
	sub, err := c.nc.ChanSubscribe(subject, c.ch)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	c.subs = append(c.subs, sub)
	if t.dropEcho {
		if c.subUser == nil {
			c.subUser = make(map[*nats.Subscription]uint32)
		}
		c.subUser[sub] = user
	}
	return nil
}

// start flushes every connection's subscriptions to the node and starts
// the receivers and the timeline.
func (t *traffic) start(users int) error {
	for _, c := range t.conns {
		if err := c.nc.FlushTimeout(30 * time.Second); err != nil {
			return fmt.Errorf("flush subscriptions: %w", err)
		}
	}
	for _, c := range t.conns {
		t.wg.Go(func() { t.receive(c) })
	}
	t.tl = startTimeline(t.rec, nil)
	t.tl.setSessions(users)
	return nil
}

// receiveBatch is the most deliveries a receiver takes from its channel
// before it records them under one lock and one clock read.
const receiveBatch = 256

// receive drains c's deliveries into the recorder until close. It takes
// what is already queued in one go: those messages have all arrived by
// the clock read that follows.
func (t *traffic) receive(c *peerConn) {
	batch := make([]*nats.Msg, 0, receiveBatch)
	for {
		select {
		case <-t.done:
			return
		case m := <-c.ch:
			batch = append(batch[:0], m)
		}
	more:
		for len(batch) < receiveBatch {
			select {
			case m := <-c.ch:
				batch = append(batch, m)
			default:
				break more
			}
		}
		now := time.Now().UnixNano()
		c.shard.mu.Lock()
		for _, m := range batch {
			if len(m.Data) < headerBytes {
				continue
			}
			if t.dropEcho && c.subUser[m.Sub] == senderOf(m.Data) {
				continue
			}
			t.rec.deliveryLocked(c.shard, sentAt(m.Data), now)
		}
		c.shard.mu.Unlock()
		clear(batch)
	}
}

// close stops the receivers and the timeline, closes the connections and
// returns the timeline.
func (t *traffic) close() []result.Sample {
	var samples []result.Sample
	if t.tl != nil {
		samples = t.tl.close()
	}
	close(t.done)
	t.wg.Wait()
	for _, c := range t.conns {
		c.nc.Close()
	}
	return samples
}

// dropped sums the deliveries nats.go dropped because a receive channel
// was full.
func (t *traffic) dropped() int64 {
	var n int64
	for _, c := range t.conns {
		for _, s := range c.subs {
			if d, err := s.Dropped(); err == nil {
				n += int64(d)
			}
		}
	}
	return n
}

// senderStats are one sender's counts over a phase.
type senderStats struct {
	published, errs int64 // scheduled in the window
	late            *hdrhistogram.Histogram
}

// phaseResult is what one phase (a fixed-rate run or a step) measured.
type phaseResult struct {
	rate      float64
	seconds   float64
	published int64 // handed to the client without error
	pubErrs   int64
	expected  int64 // deliveries the published messages owe
	tally
	late *hdrhistogram.Histogram // send time minus scheduled time
	// from and to are the marks at the measured window's start and end
	// (zero for the warm-up), and the recorder's running totals there.
	from, to         mark
	fromDel, toDel   int64
	fromAcks, toAcks int64
}

// stragglerWait is how long a phase waits after its last send for
// deliveries and acks still on their way.
const stragglerWait = 2 * time.Second

// phase offers rate messages per second from start until to, counting
// those scheduled in [from, to), then waits for stragglers.
func (t *traffic) phase(ctx context.Context, rate float64, start, from, to time.Time) phaseResult {
	t.rec.setWindow(from.UnixNano(), to.UnixNano())
	t.tl.setOffered(rate)
	stats := make([]senderStats, len(t.senders))
	per := rate / float64(len(t.senders))
	interval := time.Duration(float64(time.Second) / per)
	pr := phaseResult{rate: rate, seconds: to.Sub(from).Seconds(), late: result.NewHistogram()}
	// The node's cost is measured over the window, as gonets bench
	// measures its node: from just before it opens (before the senders
	// start: starting 10,000 of them can take seconds, which a mark
	// taken after them would leave out while the senders catch up) until
	// it closes.
	measured := to.After(from)
	if measured {
		pr.from = t.e.mark()
		pr.fromDel, pr.fromAcks = t.rec.totals()
	}
	var wg sync.WaitGroup
	for i, c := range t.senders {
		stats[i].late = result.NewHistogram()
		// Spread the senders' schedules evenly over one interval.
		offset := interval * time.Duration(i) / time.Duration(len(t.senders))
		seed := uint64(start.UnixNano()) + uint64(i)
		wg.Go(func() {
			t.send(ctx, c, per, start.Add(offset), from, to, seed, &stats[i])
		})
	}
	wg.Wait()
	if measured {
		time.Sleep(time.Until(to))
		pr.to = t.e.mark()
		pr.toDel, pr.toAcks = t.rec.totals()
	}

	for _, s := range stats {
		pr.published += s.published
		pr.pubErrs += s.errs
		pr.late.Merge(s.late)
	}
	pr.expected = pr.published * t.fanout
	js := t.e.jetStream()
	deadline := time.Now().Add(stragglerWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		delivered, acked, ackErrs := t.rec.counts()
		if delivered >= pr.expected && (!js || acked+ackErrs >= pr.published) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	pr.tally = t.rec.take()
	t.rec.setWindow(0, 0)
	t.tl.setOffered(0)
	return pr
}

// send publishes on c at rate from start until to, open loop: message i is
// due at start + i/rate whatever happened to message i-1, and carries that
// time; a late sender catches up without skipping.
func (t *traffic) send(ctx context.Context, c *peerConn, rate float64, start, from, to time.Time, seed uint64, st *senderStats) {
	rng := rand.New(rand.NewPCG(seed, 0x6e617473))
	body := make([]byte, t.e.opts.Size)
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	interval := float64(time.Second) / rate
	begin, first, end := start.UnixNano(), from.UnixNano(), to.UnixNano()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := int64(0); ; i++ {
		at := begin + int64(float64(i)*interval)
		if at >= end {
			return
		}
		if wait := at - time.Now().UnixNano(); wait > 0 {
			timer.Reset(time.Duration(wait))
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		counted := at >= first
		if counted {
			recordMicros(st.late, time.Now().UnixNano()-at)
		}
		user, subject := t.route(c, rng)
		var err error
		if c.js == nil {
			putHeader(body, at, user)
			err = c.nc.Publish(subject, body)
		} else {
			// The client keeps an async publish until its ack: each
			// needs its own bytes.
			data := make([]byte, len(body))
			copy(data, body)
			putHeader(data, at, user)
			_, err = c.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data}, jetstream.WithStallWait(stallWait))
		}
		if counted {
			if err != nil {
				st.errs++
			} else {
				st.published++
			}
		}
	}
}
