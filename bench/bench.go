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
	"github.com/gonets/gonets/broker/client"
)

// DefaultStepStart is the chat step search's first rate, msgs/s: low, so
// that the search climbs to the node's limit rather than starting beyond
// it (see bench/stepsearch).
const DefaultStepStart = 1000.0

// Scenarios are the names Run accepts.
var Scenarios = []string{"chat", "group", "channel", "connect", "sync", "storage", "call", "stream", "login"}

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
	// Transport is what carries the generator's sessions: QUIC, or TLS
	// over TCP (client.TransportTCP). The bench never races the two, as
	// the SDK's auto mode would. Default: QUIC.
	Transport client.Transport
	// TCPServer is the running node's TLS-over-TCP address. Default:
	// Server's, as the node listens on the same port number for both.
	TCPServer string
	// Binary is the gonets executable the node is started from. Default:
	// this process's.
	Binary string
	// ServerCPUs and ClientCPUs pin the node and the generator to CPU
	// lists ("0", "1-3"). Default: unpinned.
	ServerCPUs, ClientCPUs string
	// Public is the running node's public HTTPS address (host:port),
	// where the stream scenario publishes (WHIP) and plays (WHEP). A node
	// the bench starts gets one of its own.
	Public string
	// Procs spreads the load generator's sessions (chat, group and
	// channel), calls (call) or viewers (stream) over this many worker
	// processes, started from Binary, each with its own UDP sockets; this
	// process then only coordinates them (and holds the stream's
	// publisher). Default: 1, all in this process.
	Procs int

	// Duration is the measured part of a fixed-rate run, or of each step
	// of a step search. Default: 10 s; 5 s a step.
	Duration time.Duration
	// Warmup runs the load before measuring. Default: 2 s.
	Warmup time.Duration
	// Idle is the quiet window between the sessions' setup and the load,
	// over which the node's idle CPU and packets are measured: longer
	// than the SDK's keep-alive period (25 s), so that every session's
	// keep-alive falls in it. Default: 30 s.
	Idle time.Duration
	// Size is the message body in bytes. Default: 256.
	Size int
	// Rate is the offered rate: messages (chat) or posts (group, channel)
	// per second. For chat, 0 runs a step search. Defaults: group 2,020,
	// channel 100.
	Rate float64

	// Users is the chat scenario's connected sessions (in pairs). Default:
	// 10,000. In the login scenario, how many new users sign up, every
	// one measured; 0 (its default) signs new users up for the whole
	// warm-up and window.
	Users int
	// Concurrency is the login scenario's users logging in or refreshing
	// at once, each on its own connection. Default: 64.
	Concurrency int
	// Outbox is a running node's SMS outbox file (identity.sms_outbox,
	// with identity.sms = "file"), which the login scenario reads the
	// codes from. Default: the data directory's, for a node the bench
	// starts.
	Outbox string
	// Groups and Members shape the group scenario. Default: 100 × 100.
	Groups, Members int
	// Subscribers is the channel's online audience. Default: 10,000.
	// In the call scenario, the participants of each call who only
	// receive. Default: 0.
	Subscribers int
	// Publishers is how many sessions (devices of the channel's owner)
	// post into the channel. In the call scenario, the participants of
	// each call who send audio and video (and receive). Default: 4; the
	// stream scenario's one publisher is all a stream takes.
	Publishers int
	// Viewers is the stream scenario's WHEP players. Default: 500.
	Viewers int
	// Calls is the call scenario's concurrent calls. Default: 50.
	Calls int
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
	// it. Defaults: DefaultStepStart (1,000 msgs/s), × 1.5, 20 steps.
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
	if scenario != "login" {
		def(&c.Users, 10000)
	}
	def(&c.Concurrency, 64)
	def(&c.Groups, 100)
	def(&c.Members, 100)
	if scenario != "call" {
		def(&c.Subscribers, 10000)
	}
	if scenario == "stream" {
		def(&c.Publishers, 1)
	}
	def(&c.Publishers, 4)
	def(&c.Viewers, 500)
	def(&c.Calls, 50)
	def(&c.Sessions, 100000)
	def(&c.Messages, 10000)
	def(&c.Chats, 100)
	def(&c.Rounds, 3)
	def(&c.Writers, 256)
	def(&c.MaxSteps, 20)
	def(&c.Procs, 1)
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
		if scenario == "chat" && c.Rate == 0 {
			c.Duration = 5 * time.Second
		}
	}
	if c.Warmup == 0 {
		c.Warmup = 2 * time.Second
	}
	if c.Idle == 0 {
		c.Idle = 30 * time.Second
	}
	if c.P99 == 0 {
		c.P99 = 10 * time.Millisecond
	}
	if c.MinDelivered == 0 {
		c.MinDelivered = 0.999
	}
	if c.StepStart == 0 {
		c.StepStart = DefaultStepStart
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
	if scenario == "login" {
		check(c.Users >= 0 && c.Concurrency > 0, "--users %d --concurrency %d: users not negative, concurrency positive", c.Users, c.Concurrency)
	} else {
		check(c.Users >= 2 && c.Users%2 == 0, "--users %d: an even number of at least 2 (they chat in pairs)", c.Users)
	}
	check(c.Groups > 0 && c.Members >= 2, "--groups %d --members %d: at least 1 group of 2", c.Groups, c.Members)
	if scenario == "call" {
		check(c.Calls > 0 && c.Publishers > 0 && c.Subscribers >= 0 && c.Publishers+c.Subscribers >= 2,
			"--calls and --publishers must be positive, --subscribers not negative, and a call at least 2 participants")
	} else {
		check(c.Subscribers > 0 && c.Publishers > 0, "--subscribers and --publishers must be positive")
	}
	if scenario == "stream" {
		check(c.Viewers > 0, "--viewers %d: at least 1", c.Viewers)
		check(c.Publishers == 1, "--publishers %d: a live stream has one publisher", c.Publishers)
		check(c.Server == "" || c.Public != "", "stream with --server needs --public, the node's public HTTPS address (node.public_addr)")
	}
	check(c.Sessions > 0 && c.Messages > 0 && c.Chats > 0 && c.Chats <= c.Messages, "--sessions, --messages and --chats must be positive, chats at most messages")
	check(c.Rate >= 0 && c.Duration > 0 && c.Warmup >= 0 && c.Idle > 0, "--rate, --duration, --warmup and --idle must not be negative")
	check(c.StepFactor > 1 && c.StepStart > 0 && c.MinDelivered > 0 && c.MinDelivered <= 1, "the step search needs --step-factor above 1 and a delivered goal in (0, 1]")
	check(c.Server == "" || c.Key != "", "--server needs --key, the node's token key file")
	known := false
	for _, s := range Scenarios {
		known = known || s == scenario
	}
	check(known, "unknown scenario %q; one of %v", scenario, Scenarios)
	check(c.Procs >= 1, "--procs %d: at least 1", c.Procs)
	if n := spreadable(scenario, c); known && c.Procs > 1 {
		switch {
		case n == 0:
			check(false, "--procs %d: %s runs in one process; --procs spreads chat, group, channel, call and stream", c.Procs, scenario)
		case c.Procs > n:
			what := map[string]string{"chat": "chat pairs", "group": "groups", "channel": "subscribers", "call": "calls", "stream": "viewers"}[scenario]
			check(false, "--procs %d: more processes than the %d %s to spread over them", c.Procs, n, what)
		}
	}
	return errors.Join(errs...)
}

// Run runs one scenario and returns its result.
func Run(ctx context.Context, scenario string, cfg Config) (*result.Result, error) {
	cfg = cfg.withDefaults(scenario)
	if err := cfg.validate(scenario); err != nil {
		return nil, err
	}
	// The generator pins itself once the node it starts is running, so
	// that the node does not inherit the generator's CPUs; its workers do.
	pinSelf := func() error {
		if cfg.ClientCPUs == "" {
			return nil
		}
		return pin("self", cfg.ClientCPUs)
	}
	res := &result.Result{Scenario: scenario, Started: time.Now(), Machine: machine(), Metrics: map[string]float64{}}
	res.SharedCores = overlap(cfg.ServerCPUs, cfg.ClientCPUs)
	if scenario == "storage" {
		if err := pinSelf(); err != nil {
			return nil, err
		}
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
		var bin string
		if bin, err = cfg.binary(); err != nil {
			return nil, err
		}
		t, err = startNode(ctx, bin, cfg.ServerCPUs, scenario == "stream")
	}
	if err != nil {
		return nil, err
	}
	if cfg.Public != "" {
		t.publicURL = "https://" + cfg.Public
	}
	defer t.stop()
	if cfg.Transport == client.TransportTCP {
		t.via = client.TransportTCP
		t.name += "-tcp"
	}
	if cfg.TCPServer != "" {
		t.tcpAddr = cfg.TCPServer
	}
	if err := pinSelf(); err != nil {
		return nil, err
	}
	res.Target = t.name
	if res.SharedCores {
		res.Notes = append(res.Notes, fmt.Sprintf("node and load generator share this machine's %d cores", res.Machine.CPUs))
	}
	switch scenario {
	case "chat", "group", "channel":
		err = runLoad(ctx, scenario, cfg, t, res)
	case "connect":
		err = runConnect(ctx, cfg, t, res)
	case "sync":
		err = runSync(ctx, cfg, t, res)
	case "call", "stream":
		err = runMedia(ctx, scenario, cfg, t, res)
	case "login":
		err = runLogin(ctx, cfg, t, res)
	}
	if err != nil {
		return res, err
	}
	if serr := t.stop(); serr != nil {
		res.Notes = append(res.Notes, serr.Error())
	}
	return res, nil
}

// binary returns the gonets executable to start the node and the
// workers from.
func (c Config) binary() (string, error) {
	if c.Binary != "" {
		return c.Binary, nil
	}
	return os.Executable()
}

// runLoad opens the parts of a load scenario (in this process, or in
// Procs workers), runs the scenario over them and closes them.
func runLoad(ctx context.Context, scenario string, cfg Config, t *target, res *result.Result) error {
	parts, err := openParts(ctx, scenario, cfg, t)
	if err != nil {
		return err
	}
	defer closeParts(parts)
	if cfg.Procs > 1 {
		res.Notes = append(res.Notes, fmt.Sprintf("load generator: %d worker processes (each its own sessions and UDP sockets) and this one coordinating them; its CPU and RSS are their sum", cfg.Procs))
	}
	if err := quiet(ctx, t, cfg, partsCounter(parts), res); err != nil {
		return err
	}
	switch scenario {
	case "chat":
		err = runChat(ctx, cfg, t, parts, res)
	case "group":
		err = runGroup(ctx, cfg, t, parts, res)
	case "channel":
		err = runChannel(ctx, cfg, t, parts, res)
	}
	if cfg.Procs > 1 && res.Params != nil {
		res.Params["procs"] = cfg.Procs
	}
	return err
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

// drive offers rate from every part for cfg.Warmup + d, measures the last
// d and fills res (see measure).
func drive(ctx context.Context, cfg Config, t *target, parts []part, rate float64, d time.Duration, res *result.Result) error {
	start := time.Now().Add(100 * time.Millisecond)
	begin := start.Add(cfg.Warmup)
	end := begin.Add(d)
	if err := each(parts, func(p part) error { return p.load(ctx, rate, start, begin, end) }); err != nil {
		return err
	}
	return measure(ctx, cfg, t, parts, begin, d, res)
}

// measure waits for the window that opens at begin, measures for d,
// printing a live line each second, and fills res from what the parts
// counted, merged. The parts' senders run until the window's end;
// measure then lets them finish (up to 10 s) and waits up to 2 s more for
// the deliveries still owed, across all parts (a channel's posts are
// acked in one part and delivered in every other).
func measure(ctx context.Context, cfg Config, t *target, parts []part, begin time.Time, d time.Duration, res *result.Result) error {
	time.Sleep(time.Until(begin))
	if res.Metrics == nil {
		res.Metrics = map[string]float64{}
	}
	meter, err := startCost(ctx, t, cfg.ServerCPUs, partsCounter(parts))
	if err != nil {
		return err
	}
	gen := generatorMeters(parts, cfg.ClientCPUs)
	nodeCPU := newCPUTicker(t.pid())
	end := begin.Add(d)
	profiled := make(chan error, 1)
	if cfg.NodeProfile != "" && t.httpURL != "" {
		go func() { profiled <- t.profile(ctx, d, cfg.NodeProfile) }()
	} else {
		profiled <- nil
	}
	var timeline []result.Sample
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for now := range tick.C {
		if ctx.Err() != nil {
			break
		}
		secs := make([]second, len(parts))
		if err := eachIndex(parts, func(i int, p part) (err error) { secs[i], err = p.tick(ctx); return err }); err != nil {
			return err
		}
		var all second
		for _, sec := range secs {
			all.add(sec)
		}
		s := all.sample(float64(now.UnixNano()-begin.UnixNano()) / 1e9)
		timeline = append(timeline, s)
		if cfg.Live != nil {
			fmt.Fprintf(cfg.Live, "\r%-8s %5.0fs  offered %8.0f/s  delivered %9.0f/s  p99 %7.2f ms  sessions %d%s   ",
				res.Scenario, s.T, s.Offered, s.Delivered, s.P99, s.Sessions, nodeCPU.live(s.Delivered))
		}
		if !now.Before(end) {
			break
		}
	}
	spent, err := meter.read(ctx)
	if err != nil {
		return err
	}
	stopped := time.Now()
	if err := each(parts, func(p part) error { return p.stop(ctx, stopped) }); err != nil {
		return err
	}
	res.Node = spent.Node
	res.Generator = sumProcesses(gen)
	if err := each(parts, func(p part) error { return p.finish(ctx, 10*time.Second) }); err != nil {
		return err
	}
	if err := <-profiled; err != nil {
		res.Notes = append(res.Notes, "node profile: "+err.Error())
	} else if cfg.NodeProfile != "" && t.httpURL != "" {
		res.Notes = append(res.Notes, "node CPU profile of the measured window: "+cfg.NodeProfile)
	}
	// Stragglers: wait for what the acked messages still owe.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		delivered, expected, err := owed(ctx, parts)
		if err != nil {
			return err
		}
		if delivered >= expected {
			break
		}
	}
	if cfg.Live != nil {
		fmt.Fprintln(cfg.Live)
	}
	tallies := make([]tally, len(parts))
	if err := eachIndex(parts, func(i int, p part) (err error) { tallies[i], err = p.snapshot(ctx); return err }); err != nil {
		return err
	}
	var all tally
	for _, tl := range tallies {
		all.add(tl)
	}
	all.fill(res, d.Seconds())
	res.Timeline = append(res.Timeline, timeline...)
	spent.totals(res, res.Generator)
	spent.per(res, "message", all.Accepted)
	spent.per(res, "delivery", all.Arrived)
	return nil
}

// owed sums the parts' deliveries received and owed.
func owed(ctx context.Context, parts []part) (delivered, expected int64, err error) {
	dels, exps := make([]int64, len(parts)), make([]int64, len(parts))
	err = eachIndex(parts, func(i int, p part) (err error) { dels[i], exps[i], err = p.counts(ctx); return err })
	for i := range parts {
		delivered, expected = delivered+dels[i], expected+exps[i]
	}
	return delivered, expected, err
}

// each runs f on every part at once and returns the first part's error.
func each(parts []part, f func(p part) error) error {
	return eachIndex(parts, func(_ int, p part) error { return f(p) })
}

// eachIndex runs f on every part (a load scenario's or a media one's) at
// once, with its index, and returns the first part's error. One part runs
// in the caller's goroutine.
func eachIndex[P any](parts []P, f func(i int, p P) error) error {
	if len(parts) == 1 {
		return f(0, parts[0])
	}
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Go(func() { errs[i] = f(i, p) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
