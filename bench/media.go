package bench

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/gonets/gonets/bench/result"
)

// runMedia runs a media scenario:
//
//   - call: Calls group calls of Publishers participants that send audio
//     and video and Subscribers that only receive, every participant
//     receiving every other's media through the node's SFU;
//   - stream: one live stream into a channel, published over WHIP by
//     this process (streamSource) and played over WHEP by Viewers.
//
// The receivers (and a call's publishers) run in this process, or spread
// over Procs worker processes, whole calls or ranges of viewers each.
func runMedia(ctx context.Context, scenario string, cfg Config, t *target, res *result.Result) error {
	var src *streamSource
	var channel uint64
	switch scenario {
	case "call":
		res.Params = map[string]any{"calls": cfg.Calls, "publishers": cfg.Publishers, "subscribers": cfg.Subscribers,
			"duration": cfg.Duration.String(), "warmup": cfg.Warmup.String()}
		res.Goal = fmt.Sprintf("%d calls × %d participants (audio + video): loss < %.1f%% and node CPU ≤ %.0f µs per forwarded packet",
			callGoalCalls, callGoalPublishers, 100*callGoalLoss, callGoalCPU)
	case "stream":
		res.Params = map[string]any{"viewers": cfg.Viewers, "publishers": 1, "duration": cfg.Duration.String(), "warmup": cfg.Warmup.String()}
		res.Goal = fmt.Sprintf("one live stream (audio + video) to %d WHEP viewers: loss < %.1f%% and forwarding delay p99 ≤ %v, node CPU per forwarded packet reported",
			streamGoalViewers, 100*streamGoalLoss, streamGoalDelay)
	}
	if cfg.Procs > 1 {
		res.Params["procs"] = cfg.Procs
		res.Notes = append(res.Notes, fmt.Sprintf("load generator: %d worker processes (each its own pion clients and UDP sockets) and this one coordinating them; its CPU and RSS are their sum", cfg.Procs))
	}
	pid := t.pid()
	if scenario == "stream" {
		var err error
		if src, err = startStream(ctx, t, cfg.Viewers); err != nil {
			return err
		}
		defer src.close()
		channel = src.channel
	}
	parts, err := openMediaParts(ctx, scenario, cfg, t, channel)
	if err != nil {
		return err
	}
	defer eachIndex(parts, func(_ int, p mediaPart) error { return p.close() })
	var rssBefore int64
	if pid != "" {
		time.Sleep(time.Second) // let the sessions' setup settle
		rssBefore, _, _ = memory(pid)
	}
	if cfg.Live != nil {
		what := fmt.Sprintf("%d calls of %d", cfg.Calls, cfg.Publishers+cfg.Subscribers)
		if scenario == "stream" {
			what = fmt.Sprintf("%d viewers", cfg.Viewers)
		}
		fmt.Fprintf(cfg.Live, "\r%-8s joining %s   ", scenario, what)
	}
	if err := eachIndex(parts, func(_ int, p mediaPart) error { return p.join(ctx) }); err != nil {
		return err
	}
	select {
	case <-time.After(cfg.Warmup):
	case <-ctx.Done():
		return ctx.Err()
	}
	return measureMedia(ctx, scenario, cfg, t, parts, src, res, rssBefore)
}

// openMediaParts opens a media scenario's parts: one in this process, or
// one in each of cfg.Procs workers, set up at once.
func openMediaParts(ctx context.Context, scenario string, cfg Config, t *target, channel uint64) ([]mediaPart, error) {
	if cfg.Procs <= 1 {
		p, err := newMediaLocal(ctx, scenario, cfg, t, 0, 1, channel)
		if err != nil {
			return nil, err
		}
		return []mediaPart{p}, nil
	}
	bin, err := cfg.binary()
	if err != nil {
		return nil, err
	}
	parts := make([]mediaPart, 0, cfg.Procs)
	closeAll := func() { eachIndex(parts, func(_ int, p mediaPart) error { return p.close() }) }
	for k := range cfg.Procs {
		w, err := startWorker(bin, k+1, cfg.ClientCPUs)
		if err != nil {
			closeAll()
			return nil, err
		}
		parts = append(parts, mediaWorker{w})
	}
	err = eachIndex(parts, func(k int, p mediaPart) error {
		j := newJob(scenario, cfg, t, k, cfg.Procs)
		j.Channel = channel
		_, err := p.(mediaWorker).call(ctx, request{Op: opSetup, Job: j}, setupTimeout)
		return err
	})
	if err != nil {
		closeAll()
		return nil, err
	}
	return parts, nil
}

// measureMedia opens the window on every part (and on the stream's
// publisher) for cfg.Duration, printing a live line each second, and
// fills res from what they counted, merged.
func measureMedia(ctx context.Context, scenario string, cfg Config, t *target, parts []mediaPart, src *streamSource, res *result.Result, rssBefore int64) error {
	pid := t.pid()
	var node *procMeter
	if pid != "" {
		node = startMeter(pid, cfg.ServerCPUs)
	}
	gens := []*procMeter{startMeter("self", cfg.ClientCPUs)}
	genPids := []string{"self"}
	for _, p := range parts {
		if p.pid() != "self" {
			gens = append(gens, startMeter(p.pid(), cfg.ClientCPUs))
			genPids = append(genPids, p.pid())
		}
	}
	genDrops := func() int64 {
		var n int64
		for _, p := range genPids {
			d := socketDrops(p)
			if d < 0 {
				return -1
			}
			n += d
		}
		return n
	}
	nodeCPU := newCPUTicker(pid)
	var names []string
	for _, c := range sfuCounters {
		names = append(names, c.name)
	}
	sfu0 := t.metricValues(ctx, names...)
	nodeDrops0, genDrops0 := socketDrops(pid), genDrops()
	busy0, steal0, machineErr := machineCPU()
	profiled := make(chan error, 1)
	if cfg.NodeProfile != "" && t.httpURL != "" {
		go func() { profiled <- t.profile(ctx, cfg.Duration, cfg.NodeProfile) }()
	} else {
		profiled <- nil
	}
	begin := time.Now()
	if src != nil {
		src.window.begin.Store(begin.UnixNano())
	}
	if err := eachIndex(parts, func(_ int, p mediaPart) error { return p.begin(ctx) }); err != nil {
		return err
	}
	end := begin.Add(cfg.Duration)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var srcSent int64
	for now := range tick.C {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		secs := make([]second, len(parts))
		if err := eachIndex(parts, func(i int, p mediaPart) (err error) { secs[i], err = p.tick(ctx); return err }); err != nil {
			return err
		}
		var all second
		for _, s := range secs {
			all.add(s)
		}
		if src != nil {
			n := src.pub.sentIn.Load()
			all.Offered += n - srcSent
			srcSent = n
		}
		s := all.sample(now.Sub(begin).Seconds())
		res.Timeline = append(res.Timeline, s)
		if cfg.Live != nil {
			fmt.Fprintf(cfg.Live, "\r%-8s %5.0fs  sent %8.0f pkts/s  forwarded %9.0f pkts/s  p99 %7.2f ms  receivers %d%s   ",
				scenario, s.T, s.Offered, s.Delivered, s.P99, s.Sessions, nodeCPU.live(s.Delivered))
		}
		if !now.Before(end) {
			break
		}
	}
	stopped := time.Now()
	if src != nil {
		src.window.end.Store(stopped.UnixNano())
	}
	if err := eachIndex(parts, func(_ int, p mediaPart) error { return p.end(ctx) }); err != nil {
		return err
	}
	secs := stopped.Sub(begin).Seconds()
	if node != nil {
		res.Node = node.read()
	}
	res.Generator = sumProcesses(gens)
	busy1, steal1, _ := machineCPU()
	nodeDrops1, genDrops1 := socketDrops(pid), genDrops()
	sfu1 := t.metricValues(ctx, names...)
	if cfg.Live != nil {
		fmt.Fprintln(cfg.Live)
	}
	tallies := make([]mediaTally, len(parts))
	if err := eachIndex(parts, func(i int, p mediaPart) (err error) { tallies[i], err = p.snapshot(ctx); return err }); err != nil {
		return err
	}
	all := mediaTally{Least: -1}
	for _, tl := range tallies {
		all.add(tl)
	}
	if src != nil {
		all.Sent += src.pub.sentIn.Load()
	}
	delay, joins := all.Delay.orEmpty(), all.Join.orEmpty()
	res.Seconds = secs
	res.Sent = all.Sent
	res.Expected = all.Expected
	res.Delivered = all.Received
	res.DeliveredRatio = 1
	if res.Expected > 0 {
		res.DeliveredRatio = float64(res.Delivered) / float64(res.Expected)
	}
	res.Offered = float64(res.Sent) / secs
	res.Rate = float64(res.Delivered) / secs
	res.Latency = result.Summarize(delay)
	res.Histogram = result.Buckets(delay)
	who := map[string]string{"call": "participant", "stream": "viewer"}[scenario]
	m := res.Metrics
	if scenario == "call" {
		m["calls"] = float64(cfg.Calls)
	}
	m[who+"s"] = float64(all.Receivers)
	m["published_packets_per_s"] = res.Offered
	m["forwarded_packets_per_s"] = res.Rate
	m["loss_ratio"] = max(0, 1-res.DeliveredRatio)
	m[who+"_loss_median"] = median(all.Losses)
	if len(all.Losses) > 0 {
		m[who+"_loss_max"] = all.Losses[len(all.Losses)-1] // median sorted them
	}
	if all.Least >= 0 {
		m[who+"_packets_min"] = float64(all.Least)
	}
	m["forward_delay_p50_ms"] = res.Latency.P50
	m["forward_delay_p99_ms"] = res.Latency.P99
	m["join_p50_ms"] = float64(joins.ValueAtQuantile(50)) / 1000
	m["join_p99_ms"] = float64(joins.ValueAtQuantile(99)) / 1000
	if all.VideoStreams > 0 {
		m["video_kbit_per_s_per_subscription"] = float64(all.VideoBytes) * 8 / 1000 / secs / float64(all.VideoStreams)
	}
	for _, c := range sfuCounters {
		v0, ok0 := sfu0[c.name]
		v1, ok1 := sfu1[c.name]
		if ok0 && ok1 {
			m[c.metric] = (v1 - v0) / secs
		}
	}
	cpu := math.NaN()
	if res.Node != nil {
		cpu = res.Node.CPUSeconds * 1e6
		if res.Delivered > 0 {
			m["node_cpu_us_per_forwarded_packet"] = cpu / float64(res.Delivered)
		}
		if res.Node.RSSBytes > 0 && rssBefore > 0 && all.Receivers > 0 {
			m["node_rss_per_"+who+"_kib"] = float64(res.Node.RSSBytes-rssBefore) / 1024 / float64(all.Receivers)
		}
	}
	if pid != "" && nodeDrops0 >= 0 && nodeDrops1 >= 0 {
		m["node_socket_drops"] = float64(nodeDrops1 - nodeDrops0)
	}
	if genDrops0 >= 0 && genDrops1 >= 0 {
		m["generator_socket_drops"] = float64(genDrops1 - genDrops0)
	}
	if machineErr == nil && res.Node != nil && res.Generator != nil && busy1 > busy0 {
		other := max(0, 100*((busy1-busy0).Seconds()-res.Node.CPUSeconds-res.Generator.CPUSeconds)/secs)
		steal := 100 * (steal1 - steal0).Seconds() / secs
		m["other_cpu_percent"], m["steal_percent"] = other, steal
		if other >= 10 || steal >= 10 {
			res.Notes = append(res.Notes, fmt.Sprintf("while this was measured, other processes used %.0f%% CPU and the hypervisor stole %.0f%% (100 = one core): the figures are disturbed; run again on a quiet machine", other, steal))
		}
	}
	if err := <-profiled; err != nil {
		res.Notes = append(res.Notes, "node profile: "+err.Error())
	} else if cfg.NodeProfile != "" && t.httpURL != "" {
		res.Notes = append(res.Notes, "node CPU profile of the measured window: "+cfg.NodeProfile)
	}
	failed := all.Failed
	if src != nil {
		if err := src.err(); err != nil {
			failed++
			all.Failures = append(all.Failures, err.Error())
		}
	}
	res.Notes = append(res.Notes, all.Failures[:min(len(all.Failures), maxFailures)]...)
	m[who+"s_failed"] = float64(failed)
	media := fmt.Sprintf("Opus (32 kbit/s, 20 ms packets) and VP8 in 3 simulcast layers (q/h/f at 150/500/1,500 kbit/s, 30 fps, a keyframe every %v or on a PLI): %.0f packets/s",
		keyframeEvery, packetsPerSecond())
	perCPU := m["node_cpu_us_per_forwarded_packet"]
	switch scenario {
	case "call":
		res.Notes = append(res.Notes, "each publisher sends "+media+"; every participant receives every other publisher's audio and one video layer, the SFU's choice; loss counts the gaps in each subscriber stream's sequence numbers over the window")
		res.Met = cfg.Calls >= callGoalCalls && cfg.Publishers >= callGoalPublishers && failed == 0 && !math.IsNaN(cpu) &&
			res.Delivered > 0 && m["loss_ratio"] < callGoalLoss && perCPU <= callGoalCPU
	case "stream":
		res.Notes = append(res.Notes, "one WHIP publisher (pion, in the coordinating process) sends "+media+"; every viewer (a pion WHEP player, recvonly audio and video) receives the audio and one video layer, the SFU's choice; loss counts the gaps in each viewer stream's sequence numbers over the window; join time runs from the WHEP POST until the last packet of the first video frame")
		res.Met = cfg.Viewers >= streamGoalViewers && failed == 0 && res.Delivered > 0 && m["loss_ratio"] < streamGoalLoss && m["viewer_loss_max"] < streamGoalLoss &&
			res.Latency.P99 <= ms(streamGoalDelay)
	}
	if res.Latency.P99 > ms(time.Second) {
		res.Notes = append(res.Notes, fmt.Sprintf("the receivers fell behind (forwarding delay p99 %.1f s): packets queued in the node or in the clients' sockets are neither lost nor received yet, so loss does not show it; forwarded packets/s against what was owed does", res.Latency.P99/1000))
	}
	if res.SharedCores {
		res.Notes = append(res.Notes, "the pion clients (SRTP, interceptors) share the cores with the node: on 2 cores they, not the node, may limit the load")
	}
	return nil
}

// mediaWorker is a media part in a worker process.
type mediaWorker struct{ *worker }

func (w mediaWorker) join(ctx context.Context) error {
	_, err := w.call(ctx, request{Op: opJoin}, setupTimeout)
	return err
}

func (w mediaWorker) begin(ctx context.Context) error {
	_, err := w.call(ctx, request{Op: opLoad}, callTimeout)
	return err
}

func (w mediaWorker) end(ctx context.Context) error {
	_, err := w.call(ctx, request{Op: opStop}, callTimeout)
	return err
}

func (w mediaWorker) snapshot(ctx context.Context) (mediaTally, error) {
	rep, err := w.call(ctx, request{Op: opSnapshot}, callTimeout)
	if err == nil && rep.Media == nil {
		err = fmt.Errorf("bench: worker %d: a snapshot without its media tally", w.n)
	}
	if err != nil {
		return mediaTally{}, err
	}
	return *rep.Media, nil
}
