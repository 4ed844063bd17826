package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/gonets/gonets/bench/result"
)

// Scenarios are the names Run accepts.
var Scenarios = []string{"chat", "group", "channel", "connect", "sync", "storage"}

// Config is one bench run's parameters. The zero value of a field means
// its default, given in the comment.
type Config struct {
	// Server is a running node's QUIC address; empty starts a node from
	// Binary in a temporary directory and stops it after.
	Server string
	// Key is the running node's token key file (node-token.key in its data
	// directory); Fingerprint pins its certificate, or Insecure skips the
	// check.
	Key         string
	Fingerprint string
	Insecure    bool
	// Binary is the gonets executable the node is started from. Default:
	// this process's.
	Binary string
	// ServerCPUs and ClientCPUs pin the node and the generator to CPU
	// lists ("0", "1-3"). Default: unpinned.
	ServerCPUs, ClientCPUs string

	// Duration is the measured part of a fixed-rate run, or of each step
	// of a step search. Default: 10 s; 5 s a step.
	Duration time.Duration
	// Warmup runs the load before measuring. Default: 2 s.
	Warmup time.Duration
	// Size is the message body in bytes. Default: 256.
	Size int
	// Rate is the offered rate: messages (chat) or posts (group, channel)
	// per second. For chat, 0 runs a step search. Defaults: group 2,020,
	// channel 100.
	Rate float64

	// Users is the chat scenario's connected sessions (in pairs). Default:
	// 10,000.
	Users int
	// Groups and Members shape the group scenario. Default: 100 × 100.
	Groups, Members int
	// Subscribers is the channel's online audience. Default: 10,000.
	Subscribers int
	// Publishers is how many sessions (devices of the channel's owner)
	// post into the channel. Default: 4.
	Publishers int
	// Sessions is the connect scenario's idle sessions. Default: 100,000.
	Sessions int
	// Messages and Chats shape the sync scenario. Default: 10,000 across
	// 100.
	Messages, Chats int
	// Rounds is how many catch-ups the sync scenario times. Default: 3.
	Rounds int
	// Writers is the storage scenario's concurrent appenders. Default: 256.
	Writers int

	// P99 is the chat step search's latency goal; MinDelivered its
	// delivered ratio goal. Defaults: 10 ms, 0.999.
	P99          time.Duration
	MinDelivered float64
	// StepStart and StepFactor shape the step search, and MaxSteps bounds
	// it. Defaults: 5,000 msgs/s, × 1.5, 20 steps.
	StepStart  float64
	StepFactor float64
	MaxSteps   int

	// NodeProfile, when set, is where a CPU profile of the node (one the
	// bench started) over the measured window is written; pprof reads it
	// with the gonets binary.
	NodeProfile string

	// Live, when set, gets a progress line every second.
	Live io.Writer
}

func (c Config) withDefaults(scenario string) Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Size, 256)
	def(&c.Users, 10000)
	def(&c.Groups, 100)
	def(&c.Members, 100)
	def(&c.Subscribers, 10000)
	def(&c.Publishers, 4)
	def(&c.Sessions, 100000)
	def(&c.Messages, 10000)
	def(&c.Chats, 100)
	def(&c.Rounds, 3)
	def(&c.Writers, 256)
	def(&c.MaxSteps, 20)
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
		if scenario == "chat" && c.Rate == 0 {
			c.Duration = 5 * time.Second
		}
	}
	if c.Warmup == 0 {
		c.Warmup = 2 * time.Second
	}
	if c.P99 == 0 {
		c.P99 = 10 * time.Millisecond
	}
	if c.MinDelivered == 0 {
		c.MinDelivered = 0.999
	}
	if c.StepStart == 0 {
		c.StepStart = 5000
	}
	if c.StepFactor == 0 {
		c.StepFactor = 1.5
	}
	return c
}

func (c Config) validate(scenario string) error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("bench: "+format, args...))
		}
	}
	check(c.Size >= stampBytes, "--size %d below %d bytes (the send time travels in the body)", c.Size, stampBytes)
	check(c.Users >= 2 && c.Users%2 == 0, "--users %d: an even number of at least 2 (they chat in pairs)", c.Users)
	check(c.Groups > 0 && c.Members >= 2, "--groups %d --members %d: at least 1 group of 2", c.Groups, c.Members)
	check(c.Subscribers > 0 && c.Publishers > 0, "--subscribers and --publishers must be positive")
	check(c.Sessions > 0 && c.Messages > 0 && c.Chats > 0 && c.Chats <= c.Messages, "--sessions, --messages and --chats must be positive, chats at most messages")
	check(c.Rate >= 0 && c.Duration > 0 && c.Warmup >= 0, "--rate, --duration and --warmup must not be negative")
	check(c.StepFactor > 1 && c.StepStart > 0 && c.MinDelivered > 0 && c.MinDelivered <= 1, "the step search needs --step-factor above 1 and a delivered goal in (0, 1]")
	check(c.Server == "" || c.Key != "", "--server needs --key, the node's token key file")
	known := false
	for _, s := range Scenarios {
		known = known || s == scenario
	}
	check(known, "unknown scenario %q; one of %v", scenario, Scenarios)
	return errors.Join(errs...)
}

// Run runs one scenario and returns its result.
func Run(ctx context.Context, scenario string, cfg Config) (*result.Result, error) {
	cfg = cfg.withDefaults(scenario)
	if err := cfg.validate(scenario); err != nil {
		return nil, err
	}
	if cfg.ClientCPUs != "" {
		if err := pin("self", cfg.ClientCPUs); err != nil {
			return nil, err
		}
	}
	res := &result.Result{Scenario: scenario, Started: time.Now(), Machine: machine(), Metrics: map[string]float64{}}
	res.SharedCores = overlap(cfg.ServerCPUs, cfg.ClientCPUs)
	if scenario == "storage" {
		res.Target = "gonets-storage"
		res.SharedCores = false
		return res, runStorage(ctx, cfg, res)
	}
	var t *target
	var err error
	if cfg.Server != "" {
		t, err = connectNode(cfg.Server, cfg.Key, cfg.Fingerprint, cfg.Insecure)
		res.SharedCores = false
		res.Notes = append(res.Notes, "a running node: its CPU and memory are not measured here")
	} else {
		bin := cfg.Binary
		if bin == "" {
			if bin, err = os.Executable(); err != nil {
				return nil, err
			}
		}
		t, err = startNode(ctx, bin, cfg.ServerCPUs)
	}
	if err != nil {
		return nil, err
	}
	defer t.stop()
	res.Target = t.name
	if res.SharedCores {
		res.Notes = append(res.Notes, fmt.Sprintf("node and load generator share this machine's %d cores", res.Machine.CPUs))
	}
	switch scenario {
	case "chat":
		err = runChat(ctx, cfg, t, res)
	case "group":
		err = runGroup(ctx, cfg, t, res)
	case "channel":
		err = runChannel(ctx, cfg, t, res)
	case "connect":
		err = runConnect(ctx, cfg, t, res)
	case "sync":
		err = runSync(ctx, cfg, t, res)
	}
	if err != nil {
		return res, err
	}
	if serr := t.stop(); serr != nil {
		res.Notes = append(res.Notes, serr.Error())
	}
	return res, nil
}

// senders runs a scenario's send loops.
type senders struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newSenders(ctx context.Context) *senders {
	s := &senders{}
	s.ctx, s.cancel = context.WithCancel(ctx)
	return s
}

// run starts one send loop.
func (s *senders) run(loop func(ctx context.Context)) { s.wg.Go(func() { loop(s.ctx) }) }

// finish waits up to limit for the loops to send what their schedule
// holds and have it acked, then cancels the rest and waits for them.
// Waiting matters: a send cancelled after the node took it would be
// delivered but never counted as owed.
func (s *senders) finish(limit time.Duration) {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		s.cancel()
		<-done
	}
	s.cancel()
}

// measure holds the load for cfg.Warmup, then measures for d, printing a
// live line each second, and fills res from rec. The senders run until
// the window's end; measure then lets them finish (up to 10 s) and waits
// up to 2 s more for the deliveries still owed.
func measure(ctx context.Context, cfg Config, t *target, rec *recorder, start time.Time, d time.Duration, online func() int, load *senders, res *result.Result) {
	begin := start.Add(cfg.Warmup)
	// The window is fixed before it opens: a message due just after begin
	// must count as measured even if this goroutine wakes late.
	rec.start(begin)
	time.Sleep(time.Until(begin))
	var node, gen *procMeter
	if pid := t.pid(); pid != "" {
		node = startMeter(pid, cfg.ServerCPUs)
	}
	gen = startMeter("self", cfg.ClientCPUs)
	end := begin.Add(d)
	profiled := make(chan error, 1)
	if cfg.NodeProfile != "" && t.httpURL != "" {
		go func() { profiled <- t.profile(ctx, d, cfg.NodeProfile) }()
	} else {
		profiled <- nil
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for now := range tick.C {
		if ctx.Err() != nil {
			break
		}
		s := rec.tick(now, online())
		if cfg.Live != nil {
			fmt.Fprintf(cfg.Live, "\r%-8s %5.0fs  offered %8.0f/s  delivered %9.0f/s  p99 %7.2f ms  sessions %d   ",
				res.Scenario, s.T, s.Offered, s.Delivered, s.P99, s.Sessions)
		}
		if !now.Before(end) {
			break
		}
	}
	rec.stop(time.Now())
	if node != nil {
		res.Node = node.read()
	}
	res.Generator = gen.read()
	load.finish(10 * time.Second)
	if err := <-profiled; err != nil {
		res.Notes = append(res.Notes, "node profile: "+err.Error())
	} else if cfg.NodeProfile != "" && t.httpURL != "" {
		res.Notes = append(res.Notes, "node CPU profile of the measured window: "+cfg.NodeProfile)
	}
	// Stragglers: wait for what the acked messages still owe.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && rec.delivered.Load() < rec.expected.Load(); {
		time.Sleep(10 * time.Millisecond)
	}
	if cfg.Live != nil {
		fmt.Fprintln(cfg.Live)
	}
	rec.fill(res, d.Seconds())
}
