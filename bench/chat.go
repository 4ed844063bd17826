package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gonets/gonets/bench/result"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// chatTargets are the goals issue #4 sets on a 2-core, 24 GiB machine with
// node and generator together.
const (
	chatGoal    = 50000.0   // durable msgs/s delivered, p99 ≤ 10 ms
	groupGoal   = 200000.0  // deliveries/s
	channelGoal = 1000000.0 // deliveries/s
)

// recordDeliveries returns an event handler that records every message
// from another user; users[i] is the receiving client's user.
func recordDeliveries(rec func() *recorder, users []uint64) func(i int, ev client.Event) {
	return func(i int, ev client.Event) {
		if ev.Kind != client.EventMessage || ev.Message.Sender == users[i] {
			return
		}
		if t, ok := stampOf(ev.Message.Body); ok {
			rec().deliveredAt(i, t, time.Now())
		}
	}
}

// userRange returns users first .. first+n-1.
func userRange(first uint64, n int) []uint64 {
	u := make([]uint64, n)
	for i := range u {
		u[i] = first + uint64(i)
	}
	return u
}

// runChat pairs Users sessions in direct chats and sends 1:1 messages at
// Rate, or, with no Rate, searches for the highest rate that holds the
// latency and delivery goals.
func runChat(ctx context.Context, cfg Config, t *target, res *result.Result) error {
	res.Params = map[string]any{"users": cfg.Users, "size": cfg.Size, "rate": cfg.Rate, "duration": cfg.Duration.String(),
		"warmup": cfg.Warmup.String(), "p99": cfg.P99.String(), "min_delivered": cfg.MinDelivered}
	res.Goal = fmt.Sprintf("at least %.0f durable msgs/s delivered with p99 ≤ %v and ≥ %.1f%% delivered", chatGoal, cfg.P99, 100*cfg.MinDelivered)
	users := userRange(1, cfg.Users)
	var mu sync.Mutex
	rec := newRecorder()
	current := func() *recorder { mu.Lock(); defer mu.Unlock(); return rec }
	f, err := dialFleet(ctx, t, users, recordDeliveries(current, users))
	if err != nil {
		return err
	}
	defer f.close()
	// Pair 2k+1 with 2k+2: the odd user opens the chat; both send.
	chats, err := createChats(ctx, cfg.Users/2, func(ctx context.Context, k int) (uint64, error) {
		info, err := f.clients[2*k].CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{users[2*k+1]}, "")
		return info.Chat, err
	})
	if err != nil {
		return err
	}
	// run offers rate for warmup+d with a fresh recorder and returns it
	// filled in res.
	run := func(rate float64, d time.Duration, res *result.Result) {
		r := newRecorder()
		mu.Lock()
		rec = r
		mu.Unlock()
		period := time.Duration(float64(time.Second) * float64(cfg.Users) / rate)
		start := time.Now().Add(100 * time.Millisecond)
		end := start.Add(cfg.Warmup + d)
		load := newSenders(ctx)
		for i := range users {
			phase := time.Duration(int64(period) * int64(i) / int64(len(users)))
			load.run(func(ctx context.Context) { f.sendLoop(ctx, r, i, chats[i/2], period, phase, start, end, cfg.Size, 1) })
		}
		measure(ctx, cfg, t, r, start, d, func() int { return int(f.online.Load()) }, load, res)
		res.Offered = rate
	}
	if cfg.Rate > 0 {
		run(cfg.Rate, cfg.Duration, res)
		res.Met = res.Rate >= chatGoal && res.Latency.P99 <= ms(cfg.P99) && res.DeliveredRatio >= cfg.MinDelivered
		return ctx.Err()
	}
	// Step search: from StepStart, raise the rate by StepFactor until a
	// step misses a goal; if the first one misses, lower it until one
	// passes (down to minStepRate).
	var best *result.Result
	var bestOffered float64
	up := true
	for rate := cfg.StepStart; ctx.Err() == nil && len(res.Steps) < cfg.MaxSteps; {
		step := &result.Result{Scenario: res.Scenario}
		run(rate, cfg.Duration, step)
		passed := step.Latency.P99 <= ms(cfg.P99) && step.DeliveredRatio >= cfg.MinDelivered
		res.Steps = append(res.Steps, result.Step{Offered: rate, Rate: step.Rate, P50: step.Latency.P50, P99: step.Latency.P99,
			P999: step.Latency.P999, DeliveredRatio: step.DeliveredRatio, Passed: passed})
		if cfg.Live != nil {
			fmt.Fprintf(cfg.Live, "step %.0f msgs/s: delivered %.0f/s, p99 %.2f ms, %.3f%% delivered: %s\n",
				rate, step.Rate, step.Latency.P99, 100*step.DeliveredRatio, map[bool]string{true: "pass", false: "miss"}[passed])
		}
		if len(res.Steps) == 1 {
			up = passed
		}
		if passed {
			best, bestOffered = step, rate
		}
		if up != passed {
			break // the first miss going up, or the first pass going down
		}
		if up {
			rate *= cfg.StepFactor
		} else if rate /= cfg.StepFactor; rate < minStepRate {
			break
		}
		if !passed {
			time.Sleep(stepCooldown) // let an overloaded node drain first
		}
	}
	if best == nil {
		res.Notes = append(res.Notes, fmt.Sprintf("no step down to %.0f msgs/s held the goals", minStepRate))
		if n := len(res.Steps); n > 0 {
			res.Offered, res.Rate = res.Steps[n-1].Offered, res.Steps[n-1].Rate
		}
		return ctx.Err()
	}
	res.Offered = bestOffered
	res.Seconds, res.Sent, res.Expected, res.Delivered, res.DeliveredRatio, res.Rate = best.Seconds, best.Sent, best.Expected, best.Delivered, best.DeliveredRatio, best.Rate
	res.Latency, res.Ack, res.Histogram, res.Timeline, res.Node, res.Generator = best.Latency, best.Ack, best.Histogram, best.Timeline, best.Node, best.Generator
	res.Met = res.Rate >= chatGoal
	return ctx.Err()
}

// stepCooldown is the pause after a missed step, so that the next one
// does not start with the last one's backlog.
const stepCooldown = 2 * time.Second

// minStepRate is the lowest rate a step search tries.
const minStepRate = 100.0

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// runGroup makes Groups groups of Members users and posts into them at
// Rate posts per second, spread over the groups and their members.
func runGroup(ctx context.Context, cfg Config, t *target, res *result.Result) error {
	if cfg.Rate == 0 {
		cfg.Rate = groupGoal / float64(cfg.Members-1)
	}
	res.Params = map[string]any{"groups": cfg.Groups, "members": cfg.Members, "rate": cfg.Rate, "size": cfg.Size,
		"duration": cfg.Duration.String(), "warmup": cfg.Warmup.String()}
	res.Goal = fmt.Sprintf("at least %.0f deliveries/s", groupGoal)
	users := userRange(1, cfg.Groups*cfg.Members)
	rec := newRecorder()
	f, err := dialFleet(ctx, t, users, recordDeliveries(func() *recorder { return rec }, users))
	if err != nil {
		return err
	}
	defer f.close()
	groups, err := createChats(ctx, cfg.Groups, func(ctx context.Context, g int) (uint64, error) {
		info, err := f.clients[g*cfg.Members].CreateChat(ctx, wire.ChatKind_CHAT_KIND_GROUP, users[g*cfg.Members+1:(g+1)*cfg.Members], "bench")
		return info.Chat, err
	})
	if err != nil {
		return err
	}
	// Every member posts in turn: member m of group g posts every
	// period, phased so that posts spread evenly over time.
	posters := cfg.Groups * cfg.Members
	period := time.Duration(float64(time.Second) * float64(posters) / cfg.Rate)
	start := time.Now().Add(100 * time.Millisecond)
	end := start.Add(cfg.Warmup + cfg.Duration)
	load := newSenders(ctx)
	for i := range users {
		phase := time.Duration(int64(period) * int64(i) / int64(posters))
		load.run(func(ctx context.Context) {
			f.sendLoop(ctx, rec, i, groups[i/cfg.Members], period, phase, start, end, cfg.Size, cfg.Members-1)
		})
	}
	measure(ctx, cfg, t, rec, start, cfg.Duration, func() int { return int(f.online.Load()) }, load, res)
	res.Offered = cfg.Rate
	res.Met = res.Rate >= groupGoal && res.DeliveredRatio >= cfg.MinDelivered
	return ctx.Err()
}

// runChannel subscribes Subscribers sessions to one channel and posts
// into it at Rate from Publishers sessions of its owner.
func runChannel(ctx context.Context, cfg Config, t *target, res *result.Result) error {
	if cfg.Rate == 0 {
		cfg.Rate = channelGoal / float64(cfg.Subscribers)
	}
	res.Params = map[string]any{"subscribers": cfg.Subscribers, "publishers": cfg.Publishers, "rate": cfg.Rate, "size": cfg.Size,
		"duration": cfg.Duration.String(), "warmup": cfg.Warmup.String()}
	res.Goal = fmt.Sprintf("at least %.0f deliveries/s to %d online subscribers", channelGoal, cfg.Subscribers)
	// User 1 owns the channel; subscribers are users 2 ...
	subs := userRange(2, cfg.Subscribers)
	rec := newRecorder()
	f, err := dialFleet(ctx, t, subs, recordDeliveries(func() *recorder { return rec }, subs))
	if err != nil {
		return err
	}
	defer f.close()
	pub := make([]*client.Client, cfg.Publishers)
	for d := range pub {
		if pub[d], err = client.Dial(ctx, t.addr, t.token(1, uint64(d+1)), client.Options{TLS: t.tls, SendOnly: true, Transport: f.transports[0]}); err != nil {
			return fmt.Errorf("bench: publisher: %w", err)
		}
		defer pub[d].Close()
	}
	info, err := pub[0].CreateChat(ctx, wire.ChatKind_CHAT_KIND_CHANNEL, nil, "bench")
	if err != nil {
		return err
	}
	for i := 0; i < len(subs); i += 1000 {
		if err := pub[0].AddMembers(ctx, info.Chat, subs[i:min(i+1000, len(subs))]); err != nil {
			return fmt.Errorf("bench: subscribe: %w", err)
		}
	}
	pf := &fleet{t: t, clients: pub, users: make([]uint64, len(pub))}
	period := time.Duration(float64(time.Second) * float64(len(pub)) / cfg.Rate)
	start := time.Now().Add(100 * time.Millisecond)
	end := start.Add(cfg.Warmup + cfg.Duration)
	load := newSenders(ctx)
	for d := range pub {
		phase := time.Duration(int64(period) * int64(d) / int64(len(pub)))
		load.run(func(ctx context.Context) {
			pf.sendLoop(ctx, rec, d, info.Chat, period, phase, start, end, cfg.Size, cfg.Subscribers)
		})
	}
	measure(ctx, cfg, t, rec, start, cfg.Duration, func() int { return int(f.online.Load()) + len(pub) }, load, res)
	res.Offered = cfg.Rate
	res.Met = res.Rate >= channelGoal && res.DeliveredRatio >= cfg.MinDelivered
	return ctx.Err()
}
