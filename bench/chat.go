package bench

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/gonets/gonets/bench/result"
	"github.com/gonets/gonets/bench/stepsearch"
	"github.com/gonets/gonets/broker/client"
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

// runChat sends 1:1 messages in the parts' direct chats at Rate, or,
// with no Rate, searches for the highest rate that holds the latency and
// delivery goals.
func runChat(ctx context.Context, cfg Config, t *target, parts []part, res *result.Result) error {
	res.Params = map[string]any{"users": cfg.Users, "size": cfg.Size, "rate": cfg.Rate, "duration": cfg.Duration.String(),
		"warmup": cfg.Warmup.String(), "p99": cfg.P99.String(), "min_delivered": cfg.MinDelivered}
	res.Goal = fmt.Sprintf("at least %.0f durable msgs/s delivered with p99 ≤ %v and ≥ %.1f%% delivered", chatGoal, cfg.P99, 100*cfg.MinDelivered)
	// run offers rate for warmup+d and fills res.
	run := func(rate float64, d time.Duration, res *result.Result) error {
		if err := drive(ctx, cfg, t, parts, rate, d, res); err != nil {
			return err
		}
		res.Offered = rate
		return nil
	}
	if cfg.Rate > 0 {
		if err := run(cfg.Rate, cfg.Duration, res); err != nil {
			return err
		}
		res.Met = res.Rate >= chatGoal && res.Latency.P99 <= ms(cfg.P99) && res.DeliveredRatio >= cfg.MinDelivered
		return ctx.Err()
	}
	// Step search (bench/stepsearch): up from StepStart by StepFactor
	// until a step misses a goal (down if the first one misses), then two
	// bisections of the bracket. A pause after each miss lets an
	// overloaded node drain before the next step.
	var best *result.Result
	var bestOffered float64
	_, err := stepsearch.Run(stepsearch.Options{Start: cfg.StepStart, Factor: cfg.StepFactor, Min: minStepRate, MaxSteps: cfg.MaxSteps, Refine: stepRefine},
		func(rate float64) (bool, error) {
			step := &result.Result{Scenario: res.Scenario}
			if err := run(rate, cfg.Duration, step); err != nil {
				return false, err
			}
			if err := ctx.Err(); err != nil {
				return false, err
			}
			passed := step.Latency.P99 <= ms(cfg.P99) && step.DeliveredRatio >= cfg.MinDelivered
			st := result.Step{Offered: rate, Rate: step.Rate, P50: step.Latency.P50, P99: step.Latency.P99,
				P999: step.Latency.P999, DeliveredRatio: step.DeliveredRatio, Passed: passed}
			st.SetCost(step.Metrics)
			res.Steps = append(res.Steps, st)
			if cfg.Live != nil {
				fmt.Fprintf(cfg.Live, "step %.0f msgs/s: delivered %.0f/s, p99 %.2f ms, %.3f%% delivered, node %.0f µs/msg: %s\n",
					rate, step.Rate, step.Latency.P99, 100*step.DeliveredRatio, st.NodeCPUPerMessage, map[bool]string{true: "pass", false: "miss"}[passed])
			}
			if passed && rate > bestOffered {
				best, bestOffered = step, rate
			}
			if !passed {
				time.Sleep(stepCooldown)
			}
			return passed, nil
		})
	if err != nil {
		return err
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
	maps.Copy(res.Metrics, best.Metrics) // the reported step's cost
	res.Notes = append(res.Notes, best.Notes...)
	res.Met = res.Rate >= chatGoal
	return ctx.Err()
}

// stepCooldown is the pause after a missed step, so that the next one
// does not start with the last one's backlog.
const stepCooldown = 2 * time.Second

// minStepRate is the lowest rate a step search tries.
const minStepRate = 100.0

// stepRefine is how many bisections refine the step search's bracket.
const stepRefine = 2

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// runGroup posts into the parts' groups at Rate posts per second,
// spread over the groups and their members: every member posts in turn.
func runGroup(ctx context.Context, cfg Config, t *target, parts []part, res *result.Result) error {
	if cfg.Rate == 0 {
		cfg.Rate = groupGoal / float64(cfg.Members-1)
	}
	res.Params = map[string]any{"groups": cfg.Groups, "members": cfg.Members, "rate": cfg.Rate, "size": cfg.Size,
		"duration": cfg.Duration.String(), "warmup": cfg.Warmup.String()}
	res.Goal = fmt.Sprintf("at least %.0f deliveries/s", groupGoal)
	if err := drive(ctx, cfg, t, parts, cfg.Rate, cfg.Duration, res); err != nil {
		return err
	}
	res.Offered = cfg.Rate
	res.Met = res.Rate >= groupGoal && res.DeliveredRatio >= cfg.MinDelivered
	return ctx.Err()
}

// runChannel posts into the parts' channel at Rate from Publishers
// sessions of its owner, to Subscribers online subscribers.
func runChannel(ctx context.Context, cfg Config, t *target, parts []part, res *result.Result) error {
	if cfg.Rate == 0 {
		cfg.Rate = channelGoal / float64(cfg.Subscribers)
	}
	res.Params = map[string]any{"subscribers": cfg.Subscribers, "publishers": cfg.Publishers, "rate": cfg.Rate, "size": cfg.Size,
		"duration": cfg.Duration.String(), "warmup": cfg.Warmup.String()}
	res.Goal = fmt.Sprintf("at least %.0f deliveries/s to %d online subscribers", channelGoal, cfg.Subscribers)
	if err := drive(ctx, cfg, t, parts, cfg.Rate, cfg.Duration, res); err != nil {
		return err
	}
	res.Offered = cfg.Rate
	res.Met = res.Rate >= channelGoal && res.DeliveredRatio >= cfg.MinDelivered
	return ctx.Err()
}
