package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/gonets/gonets/bench/result"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// syncGoal is how fast an offline user must be caught up.
const syncGoal = 300 * time.Millisecond

// runSync takes user 1 offline while Messages messages arrive across
// Chats direct chats, then times its reconnect until every message is
// delivered, Rounds times.
func runSync(ctx context.Context, cfg Config, t *target, res *result.Result) error {
	res.Params = map[string]any{"messages": cfg.Messages, "chats": cfg.Chats, "size": cfg.Size, "rounds": cfg.Rounds}
	res.Goal = fmt.Sprintf("caught up in at most %v", syncGoal)
	const me = 1
	peers := userRange(2, cfg.Chats)
	f, err := dialFleet(ctx, t, peers, nil)
	if err != nil {
		return err
	}
	defer f.close()
	chats, err := createChats(ctx, cfg.Chats, func(ctx context.Context, k int) (uint64, error) {
		info, err := f.clients[k].CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{me}, "")
		return info.Chat, err
	})
	if err != nil {
		return err
	}
	silent := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The user's sessions, over QUIC, share a counting socket of their
	// own (the fleet closes it); over TCP the fleet's dialler counts them.
	mine := f.options(0)
	if f.tcp == nil {
		if err := f.addSockets(1); err != nil {
			return err
		}
		mine.Transport = f.transports[len(f.transports)-1]
	}
	mine.Logger = silent
	// The user's device has seen everything so far: its sync state is now.
	o := mine
	o.FromNow, o.EventBuffer = true, -1
	first, err := client.Dial(ctx, t.addr, t.token(me, 1), o)
	if err != nil {
		return err
	}
	go drain(first.Events())
	state := first.SyncState()
	first.Close()

	count := func(context.Context) (datagrams, error) { return f.datagrams(), nil }
	if err := quiet(ctx, t, cfg, count, res); err != nil {
		return err
	}
	hist := result.NewHistogram()
	meter, err := startCost(ctx, t, cfg.ServerCPUs, count)
	if err != nil {
		return err
	}
	gen := startMeter("self", cfg.ClientCPUs)
	var times []float64
	for round := range cfg.Rounds {
		// Offline: the peers send Messages across the chats.
		per := cfg.Messages / cfg.Chats
		var wg sync.WaitGroup
		var sendErr error
		var mu sync.Mutex
		for k := range cfg.Chats {
			n := per
			if k < cfg.Messages%cfg.Chats {
				n++
			}
			wg.Go(func() {
				body := make([]byte, cfg.Size)
				for range n {
					if _, err := f.clients[k].Send(ctx, chats[k], body); err != nil {
						mu.Lock()
						sendErr = cmpErr(sendErr, err)
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		if sendErr != nil {
			return sendErr
		}
		// Online again: time until every message is delivered.
		got := 0
		done := make(chan struct{})
		start := time.Now()
		var caughtUp time.Duration
		o := mine
		o.State = state
		o.OnEvent = func(ev client.Event) {
			if ev.Kind != client.EventMessage {
				return
			}
			if got++; got == cfg.Messages {
				caughtUp = time.Since(start)
				close(done)
			}
		}
		c, err := client.Dial(ctx, t.addr, t.token(me, 1), o)
		if err != nil {
			return err
		}
		select {
		case <-done:
		case <-time.After(time.Minute):
			c.Close()
			return fmt.Errorf("bench: sync round %d: %d of %d messages after a minute", round, got, cfg.Messages)
		case <-ctx.Done():
			c.Close()
			return ctx.Err()
		}
		state = c.SyncState()
		c.Close()
		times = append(times, ms(caughtUp))
		hist.RecordValue(caughtUp.Microseconds())
		if cfg.Live != nil {
			fmt.Fprintf(cfg.Live, "sync round %d: %d messages across %d chats caught up in %.1f ms\n", round+1, cfg.Messages, cfg.Chats, ms(caughtUp))
		}
	}
	spent, err := meter.read(ctx)
	if err != nil {
		return err
	}
	res.Node = spent.Node
	res.Generator = gen.read()
	total := int64(cfg.Messages * cfg.Rounds)
	spent.totals(res, res.Generator)
	spent.per(res, "message", total)
	spent.per(res, "delivery", total)
	slices.Sort(times)
	median := times[len(times)/2]
	res.Metrics["catch_up_ms"] = median
	res.Metrics["catch_up_min_ms"] = times[0]
	res.Metrics["catch_up_max_ms"] = times[len(times)-1]
	res.Metrics["messages_per_s"] = float64(cfg.Messages) / (median / 1000)
	res.Latency = result.Summarize(hist)
	res.Sent, res.Expected, res.Delivered, res.DeliveredRatio = int64(cfg.Messages*cfg.Rounds), int64(cfg.Messages*cfg.Rounds), int64(cfg.Messages*cfg.Rounds), 1
	res.Rate = res.Metrics["messages_per_s"]
	res.Notes = append(res.Notes, "latency here is the whole catch-up per round (median in metrics.catch_up_ms), from Dial to the last message delivered in order")
	res.Met = median <= ms(syncGoal)
	return nil
}

// drain reads a channel until it closes.
func drain[T any](c <-chan T) {
	for range c {
	}
}
