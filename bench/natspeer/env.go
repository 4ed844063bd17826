package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gonets/gonets/bench/result"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// env is what a scenario runs against: the node child, a dialer for it,
// and the notes and process samples that go into the result.
type env struct {
	opts  Options
	node  *node
	dial  *dialer
	notes []string

	// from is the start of the measured part, for markTo.
	from mark
}

// mark is the node, this process, the machine and the generator's TCP
// segments at one moment.
type mark struct {
	node, self procSample
	machine    machineSample
	segs       segments
}

// mark samples them now.
func (e *env) mark() mark {
	var m mark
	if s, err := e.node.sample(); err == nil {
		m.node = s
	}
	if s, err := readProc(0); err == nil {
		m.self = s
	}
	if s, err := readMachine(); err == nil {
		m.machine = s
	}
	m.segs = e.dial.ports.segments()
	return m
}

// jetStream reports whether the target is nats-jetstream.
func (e *env) jetStream() bool { return e.opts.Target == targetJetStream }

// note adds a line to the result's notes.
func (e *env) note(format string, args ...any) {
	e.notes = append(e.notes, fmt.Sprintf(format, args...))
}

// markFrom samples the node and this process at the start of the measured
// part.
func (e *env) markFrom() { e.from = e.mark() }

// markTo fills res.Node and res.Generator with their use since markFrom,
// and says how much CPU the rest of the machine took meanwhile.
func (e *env) markTo(res *result.Result) { e.spent(res, e.from, e.mark()) }

// spent fills res.Node and res.Generator with their use from one mark to
// another, and says how much CPU the rest of the machine took meanwhile.
func (e *env) spent(res *result.Result, from, to mark) {
	if !from.node.at.IsZero() && !to.node.at.IsZero() {
		res.Node = usage(e.node.pid(), from.node, to.node, e.opts.ServerCPUs)
	}
	if !from.self.at.IsZero() && !to.self.at.IsZero() {
		res.Generator = usage(os.Getpid(), from.self, to.self, e.opts.ClientCPUs)
	}
	wall := to.machine.at.Sub(from.machine.at).Seconds()
	if to.machine.at.IsZero() || from.machine.at.IsZero() || wall <= 0 || res.Node == nil || res.Generator == nil {
		return
	}
	other := to.machine.busy - from.machine.busy - res.Node.CPUSeconds - res.Generator.CPUSeconds
	otherPct := max(100*other/wall, 0)
	stealPct := 100 * (to.machine.steal - from.machine.steal) / wall
	setMetric(res, "other_cpu_percent", otherPct)
	setMetric(res, "steal_percent", stealPct)
	if otherPct >= 10 || stealPct >= 10 {
		e.note("while this was measured, other processes used %.0f%% CPU and the hypervisor stole %.0f%% (100 = one core): the figures are disturbed; run again on a quiet machine", otherPct, stealPct)
	}
}

// idle sets what the node spent holding sessions sessions with no load
// from one mark to another, named as gonets bench names it:
// node_idle_cpu_pct_per_1000_sessions (percent of one core) and
// node_idle_packets_per_s_per_1000_sessions (TCP segments, in and out).
func (e *env) idle(res *result.Result, from, to mark, sessions int) {
	secs := to.node.at.Sub(from.node.at).Seconds()
	if sessions == 0 || secs <= 0 || from.node.at.IsZero() || to.node.at.IsZero() {
		return
	}
	thousands := float64(sessions) / 1000
	setMetric(res, "idle_sessions", float64(sessions))
	setMetric(res, "idle_seconds", secs)
	setMetric(res, "node_idle_cpu_pct_per_1000_sessions", 100*(to.node.cpuSeconds-from.node.cpuSeconds)/secs/thousands)
	segs := to.segs.sent - from.segs.sent + to.segs.received - from.segs.received
	setMetric(res, "node_idle_packets_per_s_per_1000_sessions", float64(segs)/secs/thousands)
}

// runScenario starts a node for opts.Target, runs opts.Scenario against
// it and returns the result.
func runScenario(ctx context.Context, opts Options) (*result.Result, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.ClientCPUs != "" {
		if err := pinProcess(opts.ClientCPUs); err != nil {
			return nil, err
		}
	}
	shared, err := sharedCores(opts.ServerCPUs, opts.ClientCPUs)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "natspeer-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)

	e := &env{opts: opts, dial: &dialer{}}
	nopts := nodeOptions{CPUs: opts.ServerCPUs}
	if e.jetStream() {
		nopts.JetStream = true
		nopts.StoreDir = filepath.Join(dir, "jetstream")
	}
	scheme := "nats://"
	if opts.TLS {
		nopts.TLSCert, nopts.TLSKey, e.dial.tls, err = tlsFiles(dir)
		if err != nil {
			return nil, err
		}
		scheme = "tls://"
	}
	e.node, err = startNode(ctx, nopts)
	if err != nil {
		return nil, err
	}
	e.dial.url = scheme + e.node.addr

	res := &result.Result{
		Scenario:    opts.Scenario,
		Target:      opts.Target,
		Params:      opts.params(),
		Started:     time.Now().UTC(),
		SharedCores: shared,
		Machine:     machine(),
	}
	res.Machine.Commit = opts.Commit
	res.Machine.Version = "nats-server v" + server.VERSION + ", nats.go v" + nats.Version
	e.commonNotes()

	switch opts.Scenario {
	case "chat":
		err = e.chat(ctx, res)
	case "group":
		err = e.group(ctx, res)
	case "channel":
		err = e.channel(ctx, res)
	case "connect":
		err = e.connect(ctx, res)
	case "sync":
		err = e.syncScenario(ctx, res)
	case "storage":
		err = e.storage(ctx, res)
	}
	if d := e.dial.disconnects.Load(); d > 0 {
		e.note("%d client connections were dropped during the run (nats-server closes slow consumers)", d)
		setMetric(res, "disconnects", float64(d))
	}
	if stopErr := e.node.stop(); err == nil && stopErr != nil {
		err = stopErr
	}
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", opts.Scenario, opts.Target, err)
	}
	res.Notes = append(res.Notes, e.notes...)
	if res.Expected > 0 {
		res.DeliveredRatio = float64(res.Delivered) / float64(res.Expected)
	} else {
		res.DeliveredRatio = 1
	}
	return res, nil
}

// commonNotes says what every run of this target should be read with.
func (e *env) commonNotes() {
	e.note("peer: nats-server v%s embedded in its own process (built from the published module, pinned), client nats.go v%s; load generator in one Go process", server.VERSION, nats.Version)
	if e.jetStream() {
		e.note("JetStream: file storage, replicas 1, sync_interval: always (every write fsynced before its ack)")
	}
	if e.opts.TLS {
		e.note("TLS 1.3 on every connection (self-signed certificate, session tickets cached for resumption)")
	} else {
		e.note("plain TCP without TLS; Gonets runs QUIC with TLS 1.3 on every session")
	}
	if e.opts.Procs > 1 {
		e.note("--procs %d ignored: the NATS load runs in one process", e.opts.Procs)
	}
}

// sharedCores reports whether node and generator may run on the same
// cores: unless both are pinned to disjoint sets.
func sharedCores(server, client string) (bool, error) {
	if server == "" || client == "" {
		return true, nil
	}
	s, err := parseCPUs(server)
	if err != nil {
		return true, err
	}
	c, err := parseCPUs(client)
	if err != nil {
		return true, err
	}
	for cpu := range 1024 {
		if s.IsSet(cpu) && c.IsSet(cpu) {
			return true, nil
		}
	}
	return false, nil
}

// setMetric sets one of res.Metrics.
func setMetric(res *result.Result, name string, v float64) {
	if res.Metrics == nil {
		res.Metrics = make(map[string]float64)
	}
	res.Metrics[name] = v
}
