package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/gonets/gonets/bench"
	"github.com/gonets/gonets/bench/report"
	"github.com/gonets/gonets/bench/result"
	"github.com/gonets/gonets/broker/client"
)

const benchUsage = "usage: gonets bench SCENARIO [flags]   (scenarios: " + "chat, group, channel, connect, sync, storage, call, stream, login, id, upload)"

// runBench runs one bench scenario and prints its result:
//
//	gonets bench SCENARIO [--duration 10s] [--json] [--out FILE] [--report DIR] [--peer nats] ...
func runBench(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && isHelp(args[0]) {
		args = []string{"SCENARIO", args[0]} // the flags are the same for every scenario
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, benchUsage)
		return 2
	}
	scenario := args[0]
	if scenario == bench.UploadScenario { // flags of its own: sizes with units
		return runBenchUpload(args[1:], stdout, stderr)
	}
	fs := newFlagSet("bench "+scenario, benchUsage, stdout, stderr)
	var cfg bench.Config
	fs.StringVar(&cfg.Server, "server", "", "a running node's QUIC `address` (default: start a node from this binary)")
	fs.StringVar(&cfg.Key, "key", "", "with --server: the node's token key `file` (node-token.key in its data dir)")
	fs.StringVar(&cfg.Fingerprint, "fingerprint", "", "with --server: pin the node's certificate by its SHA-256 `hex`")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "with --server: skip the node's certificate checks")
	fs.TextVar(&cfg.Transport, "transport", client.TransportQUIC, "what carries the sessions: `quic` or tcp (TLS 1.3 over TCP); never both")
	fs.StringVar(&cfg.TCPServer, "tcp-server", "", "with --server and --transport tcp: the node's TLS-over-TCP `address` (default: --server's)")
	fs.StringVar(&cfg.ServerCPUs, "server-cpus", "", "pin the node to a CPU `list` (\"0\", \"0-1\")")
	fs.StringVar(&cfg.ClientCPUs, "client-cpus", "", "pin the load generator to a CPU `list`")
	fs.StringVar(&cfg.Public, "public", "", "stream with --server: the node's public HTTPS `address` (node.public_addr), for WHIP and WHEP")
	fs.IntVar(&cfg.Procs, "procs", 1, "chat, group, channel, call, stream: spread the load generator's sessions, calls or viewers over `n` worker processes")
	fs.DurationVar(&cfg.Duration, "duration", 0, "measured time of a fixed-rate run, or of each step of chat's step search (default 10s; 5s a step)")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "load before measuring (default 2s)")
	fs.DurationVar(&cfg.Idle, "idle", 0, "quiet window between setup and load, for the node's idle CPU; longer than the SDK's 25 s keep-alive (default 30s)")
	fs.IntVar(&cfg.Size, "size", 0, "message body `bytes` (default 256)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "offered messages (chat) or posts (group, channel) per second; chat: 0 runs a step search")
	fs.IntVar(&cfg.Users, "users", 0, "chat: connected sessions, in pairs (default 10000); login: new users to sign up, all measured (default: as many as the warm-up and window take)")
	fs.IntVar(&cfg.Concurrency, "concurrency", 0, "login: users logging in or refreshing at once, each on its own connection (default 64)")
	fs.StringVar(&cfg.Outbox, "sms-outbox", "", "login with --server: the node's SMS outbox `file` (identity.sms_outbox, sms = \"file\"), where the codes are read")
	fs.IntVar(&cfg.Groups, "groups", 0, "group: groups (default 100)")
	fs.IntVar(&cfg.Members, "members", 0, "group: members per group (default 100)")
	fs.IntVar(&cfg.Subscribers, "subscribers", 0, "channel: online subscribers (default 10000); call: participants per call who only receive (default 0)")
	fs.IntVar(&cfg.Publishers, "publishers", 0, "channel: the owner's sessions that post (default 4); call: participants per call who send audio and video (default 4); stream: 1, its WHIP publisher")
	fs.IntVar(&cfg.Calls, "calls", 0, "call: concurrent calls (default 50)")
	fs.IntVar(&cfg.Viewers, "viewers", 0, "stream: WHEP players of the one live stream (default 500)")
	fs.IntVar(&cfg.Sessions, "sessions", 0, "connect: idle sessions (default 100000)")
	fs.IntVar(&cfg.Messages, "messages", 0, "sync: messages that arrive while offline (default 10000)")
	fs.IntVar(&cfg.Chats, "chats", 0, "sync: chats they arrive in (default 100)")
	fs.IntVar(&cfg.Rounds, "rounds", 0, "sync: catch-ups timed (default 3)")
	fs.IntVar(&cfg.Writers, "writers", 0, "storage: concurrent appenders (default 256)")
	fs.DurationVar(&cfg.P99, "p99", 0, "chat: the step search's p99 goal (default 10ms)")
	fs.Float64Var(&cfg.MinDelivered, "min-delivered", 0, "chat: the step search's delivered ratio goal (default 0.999)")
	fs.Float64Var(&cfg.StepStart, "step-start", 0, "chat: the step search's first rate (default 1000)")
	fs.Float64Var(&cfg.StepFactor, "step-factor", 0, "chat: the step search's rate factor (default 1.5)")
	fs.IntVar(&cfg.MaxSteps, "max-steps", 0, "chat: the step search's most steps (default 20)")
	fs.StringVar(&cfg.NodeProfile, "node-cpuprofile", "", "write a CPU profile of the node over the measured window to `file`")
	var idc bench.IDConfig
	fs.IntVar(&idc.Credentials, "credentials", 0, "id: distinct credentials issued, presented and verified a run (default 20000)")
	fs.IntVar(&idc.Runs, "runs", 0, "id: timed runs; the figures are their medians (default 5)")
	fs.IntVar(&idc.Cores, "cores", 0, "id: GOMAXPROCS and goroutines of the verify phase (default 1)")
	fs.Float64Var(&idc.Ed25519Share, "ed25519-share", 0.2, "id: share of holders with an Ed25519 device key; the rest P-256")
	fs.Float64Var(&idc.TamperedShare, "tampered", 0, "id: share of presentations with a forged age_over_18, each to be refused")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the load generator to `file`")
	asJSON := fs.Bool("json", false, "print one JSON document per run instead of a table")
	out := fs.String("out", "", "append each run's JSON document, one per line, to `file`")
	reportDir := fs.String("report", "", "write an HTML report of the runs to `dir`")
	peer := fs.String("peer", "", "also run the workload against a peer (\"nats\") and print the ratio")
	var like peerSetup
	fs.IntVar(&like.usersPerConn, "peer-users-per-conn", 1, "with --peer nats: users sharing one TCP connection (1: one each, as Gonets' sessions)")
	fs.BoolVar(&like.tls, "peer-tls", true, "with --peer nats: TLS 1.3 on every connection, as Gonets' QUIC")
	if code, ok := fs.parse(args[1:]); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "gonets bench: unexpected argument %q\n%s\n", fs.Arg(0), benchUsage)
		return 2
	}
	if cfg.Transport == client.TransportAuto {
		fmt.Fprintf(stderr, "gonets bench: --transport auto: the bench measures one transport at a time; quic or tcp\n%s\n", benchUsage)
		return 2
	}
	if *peer != "" && *peer != "nats" {
		fmt.Fprintf(stderr, "gonets bench: unknown peer %q; the peer is nats\n", *peer)
		return 2
	}
	if *peer != "" && (scenario == "call" || scenario == "stream") {
		fmt.Fprintf(stderr, "gonets bench: --peer: NATS carries no media; the %s scenario has no peer\n", scenario)
		return 2
	}
	if *peer != "" && scenario == "login" {
		fmt.Fprintln(stderr, "gonets bench: --peer: NATS has no accounts; the login scenario has no peer")
		return 2
	}
	if *peer != "" && scenario == bench.IDScenario {
		fmt.Fprintln(stderr, "gonets bench: --peer: NATS issues no credentials; the id scenario has no peer")
		return 2
	}
	if isTerminal(stderr) {
		cfg.Live = stderr
		idc.Live = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *cpuProfile != "" && cfg.Procs > 1 {
		fmt.Fprintln(stderr, "gonets bench: --cpuprofile profiles this process, which holds no sessions with --procs above 1")
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "gonets bench: --cpuprofile: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "gonets bench: --cpuprofile: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	var res *result.Result
	var err error
	if scenario == bench.IDScenario {
		res, err = bench.RunDigitalID(ctx, idc)
	} else {
		res, err = bench.Run(ctx, scenario, cfg)
	}
	if err != nil {
		// A run that failed measured nothing worth keeping.
		fmt.Fprintf(stderr, "gonets bench: %v\n", err)
		return 1
	}
	runs := []result.Result{*res}
	if *peer == "nats" {
		peers, perr := runNATSPeer(ctx, scenario, args[1:], like, stderr)
		if perr != nil {
			fmt.Fprintf(stderr, "gonets bench: peer nats: %v\n", perr)
			return 1
		}
		runs = append(runs, peers...)
	}
	if *out != "" {
		if werr := appendJSON(*out, runs); werr != nil {
			fmt.Fprintf(stderr, "gonets bench: --out: %v\n", werr)
			return 1
		}
	}
	if *reportDir != "" {
		path, rerr := report.Write(*reportDir, runs)
		if rerr != nil {
			fmt.Fprintf(stderr, "gonets bench: --report: %v\n", rerr)
			return 1
		}
		fmt.Fprintf(stderr, "gonets bench: report in %s\n", path)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		for _, r := range runs {
			enc.Encode(r)
		}
	} else if scenario == bench.IDScenario {
		bench.WriteDigitalID(stdout, res)
	} else {
		printTable(stdout, runs)
	}
	return 0
}

// appendJSON appends each run to path as one line of JSON.
func appendJSON(path string, runs []result.Result) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, r := range runs {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// printTable prints the runs for a person, and the ratios to the first
// when there are peers.
func printTable(w io.Writer, runs []result.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttarget\toffered/s\trate/s\tdelivered\tp50 ms\tp99 ms\tp999 ms\tnode CPU\tnode RSS\tµs/msg\tµs/delivery\tpkts in/out per msg\tidle %/1k sessions\tmet\t")
	for _, r := range runs {
		cpu, rss := "-", "-"
		if r.Node != nil {
			cpu = fmt.Sprintf("%.0f%%", r.Node.CPUPercent)
			rss = fmt.Sprintf("%.0f MiB", float64(r.Node.RSSBytes)/(1<<20))
		}
		c := costOf(r.Metrics)
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.2f%%\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t\n", r.Scenario, r.Target, r.Offered, r.Rate,
			100*r.DeliveredRatio, r.Latency.P50, r.Latency.P99, r.Latency.P999, cpu, rss, c.perMessage, c.perDelivery, c.packets, c.idle, r.Met)
	}
	tw.Flush()
	r := runs[0]
	for _, s := range r.Steps {
		verdict := "miss"
		if s.Passed {
			verdict = "pass"
		}
		fmt.Fprintf(w, "  step %8.0f msgs/s: delivered %8.0f/s  p50 %6.2f  p99 %7.2f  p999 %7.2f ms  %.3f%%  node %4.0f µs/msg, %.2f/%.2f pkts in/out  %s\n",
			s.Offered, s.Rate, s.P50, s.P99, s.P999, 100*s.DeliveredRatio, s.NodeCPUPerMessage, s.NodePacketsInPerMessage, s.NodePacketsOutPerMessage, verdict)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Metrics)) {
		fmt.Fprintf(w, "  %s: %.6g\n", k, r.Metrics[k])
	}
	if r.Goal != "" {
		fmt.Fprintf(w, "  goal: %s: met=%v\n", r.Goal, r.Met)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	for _, p := range runs[1:] {
		if p.Rate > 0 {
			fmt.Fprintf(w, "  vs %s: rate ×%.2f", p.Target, r.Rate/p.Rate)
			if a, b := r.Metrics["node_cpu_us_per_message"], p.Metrics["node_cpu_us_per_message"]; a > 0 && b > 0 {
				fmt.Fprintf(w, ", node CPU per message ×%.2f", a/b)
			}
			if p.Latency.P99 > 0 {
				fmt.Fprintf(w, ", p99 ×%.2f", r.Latency.P99/p.Latency.P99)
			}
			fmt.Fprintf(w, " (gonets / peer; the peer: %s)\n", peerConns(p))
		}
	}
}

// costCells are a run's cost figures, formatted for the table ("-" where the
// run has none).
type costCells struct{ perMessage, perDelivery, packets, idle string }

func costOf(m map[string]float64) costCells {
	f := func(k, format string) string {
		if v, ok := m[k]; ok {
			return fmt.Sprintf(format, v)
		}
		return "-"
	}
	c := costCells{perMessage: f("node_cpu_us_per_message", "%.0f"), perDelivery: f("node_cpu_us_per_delivery", "%.1f"),
		idle: f("node_idle_cpu_pct_per_1000_sessions", "%.2f%%"), packets: "-"}
	in, ok1 := m["node_packets_in_per_message"]
	out, ok2 := m["node_packets_out_per_message"]
	if ok1 && ok2 {
		c.packets = fmt.Sprintf("%.2f / %.2f", in, out)
	}
	return c
}

// peerConns says how a peer run connected its users: its
// users-per-conn and tls parameters.
func peerConns(r result.Result) string {
	s := "TCP"
	if n, ok := r.Params["users-per-conn"].(float64); ok {
		if n == 1 {
			s = "one TCP connection per user"
		} else {
			s = fmt.Sprintf("%.0f users per TCP connection", n)
		}
	}
	if tls, _ := r.Params["tls"].(bool); tls {
		return s + ", TLS 1.3"
	}
	return s + ", no TLS"
}

// isTerminal reports whether w is a terminal, where a live line helps.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
