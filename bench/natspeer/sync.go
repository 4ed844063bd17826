package main

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gonets/gonets/bench/result"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of the sync scenario's stream and the offline user's consumer.
const (
	syncStream   = "SYNC"
	syncConsumer = "reader"
	// syncAckEvery is how often the reader acks (AckAll covers all before).
	syncAckEvery = 100
)

// syncScenario stores opts.Messages messages across opts.Chats chats
// (subjects s.<chat>) while a user is offline, then times the user's
// catch-up: from dialing the node to holding every message, through the
// durable consumer the user left behind. It does so opts.Rounds times and
// reports the median.
func (e *env) syncScenario(ctx context.Context, res *result.Result) error {
	k := e.opts.Messages
	chats := subjects("s", e.opts.Chats)

	pubNC, err := e.dial.connect("sync-publisher")
	if err != nil {
		return err
	}
	defer pubNC.Close()
	var ackErrs atomic.Int64
	js, err := jetstream.New(pubNC,
		jetstream.WithPublishAsyncMaxPending(maxAckPending),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { ackErrs.Add(1) }))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := createStream(ctx, js, syncStream, "s.>"); err != nil {
		return err
	}

	// The user was online: it has a durable consumer over its chats, up to
	// date. Then it goes away.
	if err := e.leaveConsumer(ctx, chats); err != nil {
		return err
	}

	// arrivals holds every message's arrival since its round's reconnect;
	// rounds the catch-up times, which are the result's latency (as in
	// gonets bench).
	arrivals, rounds := result.NewHistogram(), result.NewHistogram()
	var catchUps []time.Duration
	var storeSecs float64
	e.markFrom()
	for range e.opts.Rounds {
		// Messages arrive while the user is offline.
		stored := time.Now()
		if err := publishOffline(ctx, js, &ackErrs, chats, k, e.opts.Size); err != nil {
			return err
		}
		storeSecs += time.Since(stored).Seconds()

		// The user comes back.
		took, err := e.catchUp(ctx, k, arrivals, time.Now())
		if err != nil {
			return err
		}
		catchUps = append(catchUps, took)
		recordMicros(rounds, took.Nanoseconds())
	}
	e.markTo(res)
	slices.Sort(catchUps)
	median := catchUps[len(catchUps)/2]

	n := int64(len(catchUps))
	res.Seconds = median.Seconds()
	res.Sent = n * int64(k)
	res.Expected = n * int64(k)
	res.Delivered = n * int64(k)
	res.Rate = float64(k) / median.Seconds()
	res.Latency = result.Summarize(rounds)
	res.Histogram = result.Buckets(arrivals)
	setMetric(res, "catch_up_ms", ms(median))
	setMetric(res, "catch_up_min_ms", ms(catchUps[0]))
	setMetric(res, "catch_up_max_ms", ms(catchUps[len(catchUps)-1]))
	setMetric(res, "messages_per_s", res.Rate)
	setMetric(res, "first_message_ms", float64(arrivals.Min())/1000)
	setMetric(res, "arrival_p50_ms", float64(arrivals.ValueAtQuantile(50))/1000)
	setMetric(res, "stored_per_s", float64(res.Sent)/storeSecs)
	setMetric(res, "messages", float64(k))
	setMetric(res, "chats", float64(len(chats)))
	setMetric(res, "rounds", float64(n))
	res.Goal = "caught up in at most 300 ms"
	res.Met = median <= 300*time.Millisecond
	e.note("sync: each round publishes %d messages with acks to %d subjects s.<chat> while the user is offline; the user's durable pull consumer (filter: its %d chats, AckAll, acked every %d, the last one confirmed) was created while it was online; catch-up runs from dialing the node to holding the last message, through consumer lookup and pulls of up to 1000; catch_up_ms is the median of %d rounds", k, len(chats), len(chats), syncAckEvery, n)
	e.note("sync: latency is the whole catch-up per round (as in gonets bench); the histogram is each message's arrival since its round's reconnect, over all rounds. Node CPU covers the rounds, publishing included")
	return nil
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// publishOffline publishes k messages round robin over chats with async
// acks and waits for all of them.
func publishOffline(ctx context.Context, js jetstream.JetStream, ackErrs *atomic.Int64, chats []string, k, size int) error {
	before := ackErrs.Load()
	for i := range k {
		data := make([]byte, size)
		putHeader(data, time.Now().UnixNano(), uint32(i%len(chats)))
		if _, err := js.PublishMsgAsync(&nats.Msg{Subject: chats[i%len(chats)], Data: data}, jetstream.WithStallWait(stallWait)); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return fmt.Errorf("sync: %d publishes still unacked after a minute", js.PublishAsyncPending())
	case <-ctx.Done():
		return ctx.Err()
	}
	if n := ackErrs.Load() - before; n > 0 {
		return fmt.Errorf("sync: %d of %d publishes failed", n, k)
	}
	return nil
}

// leaveConsumer creates the user's durable consumer while it is online,
// then disconnects it.
func (e *env) leaveConsumer(ctx context.Context, chats []string) error {
	nc, err := e.dial.connect("sync-user")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	_, err = js.CreateOrUpdateConsumer(ctx, syncStream, jetstream.ConsumerConfig{
		Durable:        syncConsumer,
		FilterSubjects: chats,
		AckPolicy:      jetstream.AckAllPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxAckPending:  -1,
	})
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	return nil
}

// catchUp reconnects the user and reads k messages from its consumer,
// recording each arrival's time since began, and returns the time from
// began to the last message (the confirmed ack and closing after it are
// not the user's wait).
func (e *env) catchUp(ctx context.Context, k int, arrivals *hdrhistogram.Histogram, began time.Time) (time.Duration, error) {
	nc, err := e.dial.connect("sync-user")
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, fmt.Errorf("jetstream: %w", err)
	}
	cons, err := js.Consumer(ctx, syncStream, syncConsumer)
	if err != nil {
		return 0, fmt.Errorf("consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return 0, fmt.Errorf("pull: %w", err)
	}
	defer it.Stop()
	var last time.Duration
	for got := 0; got < k; {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		m, err := it.Next(jetstream.NextMaxWait(10 * time.Second))
		if err != nil {
			return 0, fmt.Errorf("catch-up after %d of %d: %w", got, k, err)
		}
		got++
		last = time.Since(began)
		recordMicros(arrivals, last.Nanoseconds())
		switch {
		case got == k:
			// The next round starts from here: wait for the server.
			if err := m.DoubleAck(ctx); err != nil {
				return 0, fmt.Errorf("ack: %w", err)
			}
		case got%syncAckEvery == 0:
			if err := m.Ack(); err != nil {
				return 0, fmt.Errorf("ack: %w", err)
			}
		}
	}
	return last, nil
}
