package bench

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestStreamScenarioSmall runs the stream scenario at its smallest, one
// WHIP publisher and three WHEP viewers, against a node started from the
// built binary (with its public HTTPS listener on a free port), and
// checks that every viewer played frames and audio through the SFU, that
// loss, delay, join time and the node's cost were measured, and that no
// goroutine of the clients outlives the run. It asserts no speed.
func TestStreamScenarioSmall(t *testing.T) {
	bin := gonetsBinary(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	defer http.DefaultClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Run(ctx, "stream", Config{Binary: bin, Viewers: 3, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	checkStream(t, r.Metrics, 3)
	if r.Rate != r.Metrics["forwarded_packets_per_s"] || r.Latency.Count != r.Delivered || len(r.Timeline) == 0 || r.Node == nil || r.Generator == nil || r.Met {
		t.Errorf("rate %v, latency count %d for %d delivered, %d samples, node %v, generator %v, met %v", r.Rate, r.Latency.Count, r.Delivered, len(r.Timeline), r.Node, r.Generator, r.Met)
	}
	if want := packetsPerSecond(); r.Offered < want/2 || r.Offered > 2*want {
		t.Fatalf("published %v packets/s, want about %v", r.Offered, want)
	}
	for _, k := range []string{"node_cpu_us_per_forwarded_packet", "node_rss_per_viewer_kib", "video_kbit_per_s_per_subscription"} {
		if v, ok := r.Metrics[k]; !ok || v <= 0 {
			t.Errorf("metric %s = %v (reported %v)", k, v, ok)
		}
	}
}

// checkStream checks a stream run's metrics: viewers all in, each one
// receiving the audio (50 packets/s) and video (30 frames/s, a packet each
// at the least) over the 2 s window, with little loss, and delays and
// join times measured.
func checkStream(t *testing.T, m map[string]float64, viewers int) {
	t.Helper()
	if m["viewers"] != float64(viewers) || m["viewers_failed"] != 0 {
		t.Fatalf("viewers %v, failed %v", m["viewers"], m["viewers_failed"])
	}
	if least, ok := m["viewer_packets_min"]; !ok || least < 2*(50+30)/2 {
		t.Fatalf("the viewer that received least got %v packets in 2 s (reported %v)", least, ok)
	}
	if m["viewer_loss_max"] > 0.05 || m["viewer_loss_median"] > m["viewer_loss_max"] || m["loss_ratio"] > 0.05 {
		t.Fatalf("loss %v, per viewer median %v max %v", m["loss_ratio"], m["viewer_loss_median"], m["viewer_loss_max"])
	}
	for _, k := range []string{"forward_delay_p50_ms", "forward_delay_p99_ms", "join_p50_ms", "join_p99_ms", "forwarded_packets_per_s"} {
		if v, ok := m[k]; !ok || v <= 0 {
			t.Errorf("metric %s = %v (reported %v)", k, v, ok)
		}
	}
}

// TestMediaScenariosProcs spreads the call scenario's calls and the
// stream scenario's viewers over two worker processes, and checks that
// the merged result counts every participant and viewer receiving media,
// that the generator is the workers' sum, and that no worker outlives the
// run.
func TestMediaScenariosProcs(t *testing.T) {
	bin := gonetsBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	base := Config{Binary: bin, Procs: 2, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond}
	t.Run("call", func(t *testing.T) {
		cfg := base
		cfg.Calls, cfg.Publishers = 2, 2
		r, err := Run(ctx, "call", cfg)
		if err != nil {
			t.Fatal(err)
		}
		m := r.Metrics
		// Each of 4 participants receives the other's audio and one video
		// layer: 80 packets/s each at the least.
		if m["participants"] != 4 || m["participants_failed"] != 0 || r.Rate < 4*80 || m["participant_packets_min"] < 2*80/2 {
			t.Fatalf("participants %v, failed %v, forwarded %v/s, least %v", m["participants"], m["participants_failed"], r.Rate, m["participant_packets_min"])
		}
		if want := 4 * packetsPerSecond(); r.Offered < want/2 || r.Offered > 2*want {
			t.Fatalf("published %v packets/s, want about %v", r.Offered, want)
		}
		if r.Generator == nil || r.Generator.Procs != 2 || r.Params["procs"] != 2 || m["loss_ratio"] > 0.05 {
			t.Fatalf("generator %+v, params %v, loss %v", r.Generator, r.Params, m["loss_ratio"])
		}
	})
	t.Run("stream", func(t *testing.T) {
		cfg := base
		cfg.Viewers = 3
		r, err := Run(ctx, "stream", cfg)
		if err != nil {
			t.Fatal(err)
		}
		checkStream(t, r.Metrics, 3)
		if r.Generator == nil || r.Generator.Procs != 2 {
			t.Fatalf("generator %+v", r.Generator)
		}
	})
	if pids := workerChildren(t); len(pids) != 0 {
		t.Fatalf("workers left running: %v", pids)
	}
}

func TestStreamValidation(t *testing.T) {
	f := func(cfg Config, want string) {
		t.Helper()
		_, err := Run(context.Background(), "stream", cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%+v: %v, want %q", cfg, err, want)
		}
	}
	f(Config{Viewers: -1}, "--viewers -1: at least 1")
	f(Config{Publishers: 2}, "--publishers 2: a live stream has one publisher")
	f(Config{Server: "127.0.0.1:1", Key: "k"}, "stream with --server needs --public")
	f(Config{Viewers: 2, Procs: 3}, "--procs 3: more processes than the 2 viewers")
}

// TestMediaWorkerInProcess serves a stream part with Worker in this
// process (so that the race detector sees a media worker's side),
// request by request, beside a publisher this test starts.
func TestMediaWorkerInProcess(t *testing.T) {
	bin := gonetsBinary(t)
	ctx := context.Background()
	node, err := startNode(ctx, bin, "", true)
	if err != nil {
		t.Fatal(err)
	}
	defer node.stop()
	src, err := startStream(ctx, node, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer src.close()
	call, done := inProcessWorker(t, ctx)
	cfg := Config{Viewers: 2, Procs: 2}.withDefaults("stream")
	j := newJob("stream", cfg, node, 1, 2)
	j.Channel = src.channel
	call(request{Op: opSetup, Job: j})
	call(request{Op: opJoin})
	call(request{Op: opLoad})
	time.Sleep(time.Second)
	if s := call(request{Op: opTick}).Second; s == nil || s.Delivered == 0 || s.Sessions != 1 {
		t.Fatalf("tick: %+v", s)
	}
	call(request{Op: opStop})
	m := call(request{Op: opSnapshot}).Media
	if m == nil || m.Receivers != 1 || m.Received == 0 || m.Least <= 0 || len(m.Losses) != 1 || m.Failed != 0 || m.Join.orEmpty().TotalCount() != 1 {
		t.Fatalf("snapshot: %+v", m)
	}
	call(request{Op: opQuit})
	done()
}
