package main

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Targets.
const (
	targetCore      = "nats-core"
	targetJetStream = "nats-jetstream"
)

// Options are a run's parameters. The flags of `natspeer run` carry the
// same names as `gonets bench`'s; a zero field means its default.
type Options struct {
	// Scenario is chat, group, channel, connect, sync or storage.
	Scenario string
	// Target is nats-core or nats-jetstream.
	Target string

	// Duration is the measured part of a fixed-rate run. Default: 10s.
	// A chat step search uses it for its steps (see StepDuration).
	Duration time.Duration
	// Warmup runs the load unmeasured before Duration. Default: 2s.
	Warmup time.Duration
	// Idle is the quiet window between connecting the sessions and the
	// load, over which the node's idle CPU is measured. Default: 30s, as
	// gonets bench (where it outlasts its SDK's keep-alive period).
	Idle time.Duration
	// Size is the message body in bytes, at least 16. Default: 256.
	Size int
	// Rate is the offered rate in messages (posts) per second; 0 in chat
	// means a step search. Default: chat 0, group 2000, channel 100,
	// storage 0 (closed loop, see Writers).
	Rate float64
	// RateSet tells an explicit --rate 0 from the default.
	RateSet bool

	// Users is chat's user count. Default: 10,000.
	Users int
	// StepStart is the first rate of a step search. Default: 1000, as
	// gonets bench.
	StepStart float64
	// StepFactor multiplies the rate from one step to the next. Default: 1.5.
	StepFactor float64
	// StepDuration is how long each step runs. Default: Duration when
	// set, else 5s.
	StepDuration time.Duration
	// P99 is the step search's latency bound. Default: 10ms.
	P99 time.Duration
	// MinDelivered is the share a passing step must deliver. Default: 0.999.
	MinDelivered float64
	// MaxSteps caps a step search. Default: 40.
	MaxSteps int

	// Groups and Members shape group. Default: 100 and 100.
	Groups, Members int
	// Subscribers is channel's subscriber count. Default: 10,000.
	Subscribers int
	// Publishers is channel's publishing connections (the owner's
	// devices), sharing the rate. Default: 1.
	Publishers int

	// Sessions is connect's idle connection count, capped by the
	// processes' file limits. Default: 100,000.
	Sessions int
	// Dialers is how many connections connect opens at once. Default: 512.
	Dialers int

	// Messages and Chats shape sync (and Chats storage's subjects).
	// Default: 10,000 and 100.
	Messages, Chats int
	// Rounds is how many catch-ups sync times; the result is their
	// median. Default: 3.
	Rounds int
	// Writers is storage's closed-loop appenders, each waiting for its
	// ack, when Rate is 0. Default: 256.
	Writers int

	// UsersPerConn is how many users share one TCP connection. Default:
	// 500 (so 10,000 users use 20 connections).
	UsersPerConn int
	// Procs is accepted for compatibility with gonets bench and ignored:
	// the load runs in one process.
	Procs int
	// TLS makes the server require TLS 1.3 (session resumption on
	// reconnects).
	TLS bool
	// ServerCPUs and ClientCPUs pin the node and the generator.
	ServerCPUs, ClientCPUs string
	// Commit is the gonets commit to record in the result.
	Commit string
}

// withDefaults returns a copy of o with defaults filled in, or an error
// for an unusable combination.
func (o Options) withDefaults() (Options, error) {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	// A step search's steps last --duration when it is given, as in
	// gonets bench; --step-duration overrides.
	if o.StepDuration == 0 {
		o.StepDuration = o.Duration
	}
	defDur(&o.StepDuration, 5*time.Second)
	defDur(&o.Duration, 10*time.Second)
	defDur(&o.Warmup, 2*time.Second)
	defDur(&o.Idle, 30*time.Second)
	def(&o.Size, 256)
	def(&o.Users, 10000)
	if o.StepStart == 0 {
		o.StepStart = 1000
	}
	if o.StepFactor == 0 {
		o.StepFactor = 1.5
	}
	defDur(&o.P99, 10*time.Millisecond)
	if o.MinDelivered == 0 {
		o.MinDelivered = 0.999
	}
	def(&o.MaxSteps, 40)
	def(&o.Groups, 100)
	def(&o.Members, 100)
	def(&o.Subscribers, 10000)
	def(&o.Publishers, 1)
	def(&o.Sessions, 100000)
	def(&o.Dialers, 512)
	def(&o.Messages, 10000)
	def(&o.Chats, 100)
	def(&o.Rounds, 3)
	def(&o.Writers, 256)
	def(&o.UsersPerConn, 500)
	if !o.RateSet && o.Rate == 0 {
		switch o.Scenario {
		case "group":
			o.Rate = 2000
		case "channel":
			o.Rate = 100
		}
	}

	switch o.Target {
	case targetCore, targetJetStream:
	default:
		return o, fmt.Errorf("target %q: want %s or %s", o.Target, targetCore, targetJetStream)
	}
	switch o.Scenario {
	case "chat", "group", "channel", "connect":
	case "sync", "storage":
		if o.Target != targetJetStream {
			return o, fmt.Errorf("%s needs %s: core NATS stores nothing", o.Scenario, targetJetStream)
		}
	default:
		return o, fmt.Errorf("scenario %q: want chat, group, channel, connect, sync or storage", o.Scenario)
	}
	if o.Size < 16 {
		return o, errors.New("--size must be at least 16 (the body carries the send time and the sender)")
	}
	if o.Rate < 0 {
		return o, errors.New("--rate must not be negative")
	}
	if o.StepFactor <= 1 {
		return o, errors.New("--step-factor must be above 1")
	}
	if o.MinDelivered > 1 {
		return o, errors.New("--min-delivered is a share, at most 1")
	}
	if o.Scenario == "group" && o.Members < 2 {
		return o, errors.New("--members must be at least 2")
	}
	if o.Scenario == "chat" && o.Users < 2 {
		return o, errors.New("--users must be at least 2")
	}
	if (o.Scenario == "group" || o.Scenario == "channel") && o.Rate == 0 {
		return o, fmt.Errorf("%s needs a --rate above 0", o.Scenario)
	}
	return o, nil
}

// flags binds o's fields to the flags of `natspeer run`.
func (o *Options) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.Scenario, "scenario", "", "chat, group, channel, connect, sync or storage")
	fs.StringVar(&o.Target, "target", targetCore, "nats-core or nats-jetstream")
	fs.DurationVar(&o.Duration, "duration", 0, "measured part of a fixed-rate run, or each step of chat's step search (default 10s; 5s a step)")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured load before --duration")
	fs.DurationVar(&o.Idle, "idle", 30*time.Second, "quiet window between connecting and the load, for the node's idle CPU")
	fs.IntVar(&o.Size, "size", 256, "body bytes (at least 16)")
	fs.Func("rate", "offered msgs (posts) per second; chat 0 = step search (defaults: chat 0, group 2000, channel 100, storage 0 = closed loop)", func(s string) error {
		_, err := fmt.Sscan(s, &o.Rate)
		o.RateSet = true
		return err
	})
	fs.IntVar(&o.Users, "users", 10000, "chat: users")
	fs.Float64Var(&o.StepStart, "step-start", 1000, "chat step search: first offered rate")
	fs.Float64Var(&o.StepFactor, "step-factor", 1.5, "chat step search: rate factor from one step to the next")
	fs.DurationVar(&o.StepDuration, "step-duration", 0, "chat step search: length of a step (default --duration, else 5s)")
	fs.DurationVar(&o.P99, "p99", 10*time.Millisecond, "chat step search: p99 bound of a passing step")
	fs.Float64Var(&o.MinDelivered, "min-delivered", 0.999, "chat step search: delivered share of a passing step")
	fs.IntVar(&o.Groups, "groups", 100, "group: groups")
	fs.IntVar(&o.Members, "members", 100, "group: members per group")
	fs.IntVar(&o.Subscribers, "subscribers", 10000, "channel: subscribers")
	fs.IntVar(&o.Publishers, "publishers", 1, "channel: publishing connections sharing the rate")
	fs.IntVar(&o.Sessions, "sessions", 100000, "connect: idle connections (capped by the file limit)")
	fs.IntVar(&o.Dialers, "dialers", 512, "connect: connections opened at once")
	fs.IntVar(&o.Messages, "messages", 10000, "sync: messages stored while the user is offline")
	fs.IntVar(&o.Chats, "chats", 100, "sync, storage: chats (subjects) the messages spread over")
	fs.IntVar(&o.Rounds, "rounds", 3, "sync: catch-ups timed (the result is their median)")
	fs.IntVar(&o.Writers, "writers", 256, "storage: closed-loop appenders when --rate is 0")
	fs.IntVar(&o.UsersPerConn, "users-per-conn", 500, "users sharing one TCP connection")
	fs.IntVar(&o.Procs, "procs", 1, "accepted and ignored: the load runs in one process")
	fs.BoolVar(&o.TLS, "tls", false, "the server requires TLS 1.3")
	fs.StringVar(&o.ServerCPUs, "server-cpus", "", "pin the server to these CPUs")
	fs.StringVar(&o.ClientCPUs, "client-cpus", "", "pin the load generator to these CPUs")
	fs.StringVar(&o.Commit, "commit", "", "gonets commit to record")
}

// params are the scenario's parameters by flag name, for the result.
func (o Options) params() map[string]any {
	p := map[string]any{"target": o.Target, "size": o.Size, "tls": o.TLS}
	switch o.Scenario {
	case "chat", "group", "channel":
		p["users-per-conn"] = o.UsersPerConn
		p["idle"] = o.Idle.String()
	case "connect":
		p["idle"] = o.Idle.String()
	}
	fixed := func() {
		p["duration"] = o.Duration.String()
		p["warmup"] = o.Warmup.String()
		p["rate"] = o.Rate
	}
	switch o.Scenario {
	case "chat":
		p["users"] = o.Users
		if o.Rate == 0 {
			p["rate"] = 0.0
			p["step-start"] = o.StepStart
			p["step-factor"] = o.StepFactor
			p["min-delivered"] = o.MinDelivered
			p["step-duration"] = o.StepDuration.String()
			p["p99"] = o.P99.String()
			p["warmup"] = o.Warmup.String()
		} else {
			fixed()
		}
	case "group":
		fixed()
		p["groups"] = o.Groups
		p["members"] = o.Members
	case "channel":
		fixed()
		p["subscribers"] = o.Subscribers
		p["publishers"] = o.Publishers
	case "connect":
		p["sessions"] = o.Sessions
		p["dialers"] = o.Dialers
		p["duration"] = o.Duration.String()
	case "sync":
		p["messages"] = o.Messages
		p["chats"] = o.Chats
		p["rounds"] = o.Rounds
	case "storage":
		fixed()
		p["chats"] = o.Chats
		if o.Rate == 0 {
			p["writers"] = o.Writers
		}
	}
	if o.Procs > 1 {
		p["procs"] = o.Procs
	}
	return p
}
