package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gonets/gonets/bench/result"
	"github.com/nats-io/nats.go/jetstream"
)

// storeStream is the storage scenario's stream.
const storeStream = "STORE"

// storage measures JetStream alone: durable appends (publishes acked after
// fsync) to subjects st.<chat>, then a read of the whole stream back. With
// --rate 0 it runs opts.Writers closed-loop appenders, each waiting for
// its ack; with a rate it offers that rate open loop.
func (e *env) storage(ctx context.Context, res *result.Result) error {
	chats := subjects("st", e.opts.Chats)
	var err error
	if e.opts.Rate > 0 {
		err = e.storageOpenLoop(ctx, res, chats)
	} else {
		err = e.storageClosedLoop(ctx, res, chats)
	}
	if err != nil {
		return err
	}
	return e.readBack(ctx, res)
}

// storageOpenLoop offers opts.Rate appends per second with async acks.
func (e *env) storageOpenLoop(ctx context.Context, res *result.Result, chats []string) error {
	t := newTraffic(e)
	defer func() { res.Timeline = t.close() }()
	pub, err := t.addConn("appender", 1024)
	if err != nil {
		return err
	}
	if err := createStream(ctx, pub.js, storeStream, "st.>"); err != nil {
		return err
	}
	t.senders = []*peerConn{pub}
	t.route = func(_ *peerConn, rng *rand.Rand) (uint32, string) {
		c := rng.IntN(len(chats))
		return uint32(c), chats[c]
	}
	if err := t.start(0); err != nil {
		return err
	}
	pr := t.fixed(ctx, e.opts.Rate)
	t.fill(res, pr)
	res.Latency = res.Ack // nothing is delivered: the append's own latency, as in gonets bench
	res.Histogram = result.Buckets(pr.ack)
	res.Rate = float64(pr.acked) / pr.seconds
	setMetric(res, "appends_per_s", res.Rate)
	delete(res.Metrics, "deliveries_per_s")
	e.note("storage: %.0f appends/s offered open loop from one connection with async acks over %d subjects; rate_per_s and the histogram are durable acks; ack latency runs from the scheduled time", e.opts.Rate, len(chats))
	return ctx.Err()
}

// storageClosedLoop runs opts.Writers appenders, each publishing and
// waiting for its ack, for the warmup and then opts.Duration.
func (e *env) storageClosedLoop(ctx context.Context, res *result.Result, chats []string) error {
	nconns := min(e.opts.Writers, 8)
	streams := make([]jetstream.JetStream, nconns)
	for i := range streams {
		nc, err := e.dial.connect("appender-conn-" + strconv.Itoa(i))
		if err != nil {
			return err
		}
		defer nc.Close()
		if streams[i], err = jetstream.New(nc); err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
	}
	if err := createStream(ctx, streams[0], storeStream, "st.>"); err != nil {
		return err
	}

	var appendsSoFar atomic.Int64
	tl := startTimeline(nil, &appendsSoFar)
	defer func() { res.Timeline = tl.close() }()
	start := time.Now()
	from := start.Add(e.opts.Warmup)
	end := from.Add(e.opts.Duration)
	tl.setOffered(0)

	var (
		mu       sync.Mutex // guards the following
		acks     = result.NewHistogram()
		appended int64
		failed   int64
	)
	var wg sync.WaitGroup
	var marked sync.Once
	for a := range e.opts.Writers {
		js := streams[a%nconns]
		wg.Go(func() {
			local := result.NewHistogram()
			var n, bad int64
			data := make([]byte, e.opts.Size)
			for i := a; ctx.Err() == nil; i += e.opts.Writers {
				sent := time.Now()
				if !sent.Before(end) {
					break
				}
				if !sent.Before(from) {
					marked.Do(e.markFrom)
				}
				putHeader(data, sent.UnixNano(), uint32(a))
				_, err := js.Publish(ctx, chats[i%len(chats)], data)
				if sent.Before(from) {
					continue
				}
				if err != nil {
					bad++
					continue
				}
				recordMicros(local, time.Since(sent).Nanoseconds())
				n++
				appendsSoFar.Add(1)
			}
			mu.Lock()
			acks.Merge(local)
			appended += n
			failed += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	e.markTo(res)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	secs := e.opts.Duration.Seconds()
	res.Seconds = secs
	res.Sent = appended
	res.Rate = float64(appended) / secs
	res.Ack = result.Summarize(acks)
	res.Latency = res.Ack // nothing is delivered: the append's own latency, as in gonets bench
	res.Histogram = result.Buckets(acks)
	setMetric(res, "appends_per_s", res.Rate)
	setMetric(res, "append_errors", float64(failed))
	setMetric(res, "writers", float64(e.opts.Writers))
	e.note("storage: %d closed-loop appenders on %d connections, each publishing to one of %d subjects and waiting for its ack (durable after fsync); rate_per_s, latency and the histogram are acks; ack latency runs from the publish", e.opts.Writers, nconns, len(chats))
	return nil
}

// readBack reads the whole stream with an ordered consumer and records
// reads_per_s.
func (e *env) readBack(ctx context.Context, res *result.Result) error {
	nc, err := e.dial.connect("reader")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	s, err := js.Stream(ctx, storeStream)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	total := int(info.State.Msgs)
	if total == 0 {
		return nil
	}
	began := time.Now()
	cons, err := js.OrderedConsumer(ctx, storeStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	defer it.Stop()
	for got := 0; got < total; got++ {
		if _, err := it.Next(jetstream.NextMaxWait(10 * time.Second)); err != nil {
			return fmt.Errorf("read after %d of %d: %w", got, total, err)
		}
	}
	secs := time.Since(began).Seconds()
	setMetric(res, "reads_per_s", float64(total)/secs)
	setMetric(res, "read_messages", float64(total))
	e.note("storage: reads_per_s reads the whole stream (%d messages, warmup included) back with an ordered consumer", total)
	return nil
}
