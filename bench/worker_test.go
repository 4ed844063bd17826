package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/gonets/gonets/storage/storagetest"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestProcsValidation(t *testing.T) {
	f := func(scenario string, cfg Config, want string) {
		t.Helper()
		_, err := Run(context.Background(), scenario, cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s %+v: %v, want %q", scenario, cfg, err, want)
		}
	}
	f("sync", Config{Procs: 2}, "--procs 2: sync runs in one process; --procs spreads chat, group, channel, call and stream")
	f("storage", Config{Procs: 2}, "--procs 2: storage runs in one process")
	f("connect", Config{Procs: 3}, "--procs 3: connect runs in one process")
	f("chat", Config{Users: 4, Procs: 3}, "--procs 3: more processes than the 2 chat pairs")
	f("group", Config{Groups: 2, Procs: 3}, "more processes than the 2 groups")
	f("channel", Config{Subscribers: 2, Procs: 3}, "more processes than the 2 subscribers")
	f("call", Config{Calls: 2, Procs: 3}, "--procs 3: more processes than the 2 calls")
	f("stream", Config{Viewers: 2, Procs: 3}, "--procs 3: more processes than the 2 viewers")
	f("chat", Config{Procs: -1}, "--procs -1: at least 1")
}

// TestWorkersShareTheLoad spreads each load scenario over two workers
// and checks that each worker's sessions did their share: in chat and
// group both post and receive; in channel the first posts and both
// receive, and the deliveries owed where posts are acked arrive across
// processes.
func TestWorkersShareTheLoad(t *testing.T) {
	bin := gonetsBinary(t)
	ctx := context.Background()
	node, err := startNode(ctx, bin, "", false)
	if err != nil {
		t.Fatal(err)
	}
	defer node.stop()
	for _, tc := range []struct {
		scenario string
		cfg      Config
		rate     float64
		posts    []bool // whether each worker posts
	}{
		{"chat", Config{Users: 4}, 40, []bool{true, true}},
		{"group", Config{Groups: 2, Members: 3}, 20, []bool{true, true}},
		{"channel", Config{Subscribers: 4, Publishers: 2}, 20, []bool{true, false}},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Binary, cfg.Procs, cfg.Warmup, cfg.Duration = bin, 2, 100*time.Millisecond, time.Second
			cfg = cfg.withDefaults(tc.scenario)
			parts, err := openParts(ctx, tc.scenario, cfg, node)
			if err != nil {
				t.Fatal(err)
			}
			defer closeParts(parts)
			res := newResult()
			if err := drive(ctx, cfg, node, parts, tc.rate, cfg.Duration, res); err != nil {
				t.Fatal(err)
			}
			if res.Sent == 0 || res.DeliveredRatio != 1 || res.Generator.Procs != 2 {
				t.Fatalf("sent %d, ratio %v, generator %+v", res.Sent, res.DeliveredRatio, res.Generator)
			}
			for k, p := range parts {
				tl, err := p.snapshot(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if tl.Delivered == 0 || (tl.Sent > 0) != tc.posts[k] {
					t.Errorf("worker %d: sent %d, delivered %d", k+1, tl.Sent, tl.Delivered)
				}
			}
			closeParts(parts)
			for k, p := range parts {
				if st := p.(*worker).cmd.ProcessState; st == nil || !st.Success() {
					t.Errorf("worker %d: %v", k+1, st)
				}
			}
		})
	}
}

// TestWorkerFailureFailsTheRun points the workers at a node whose
// certificate they refuse: the run fails with the worker's error, and
// no worker outlives it.
func TestWorkerFailureFailsTheRun(t *testing.T) {
	bin := gonetsBinary(t)
	node, err := startNode(context.Background(), bin, "", false)
	if err != nil {
		t.Fatal(err)
	}
	defer node.stop()
	cfg := Config{Binary: bin, Server: node.addr, Key: node.keyFile, Fingerprint: strings.Repeat("00", 32),
		Users: 4, Rate: 10, Procs: 2, Duration: time.Second}
	_, err = Run(context.Background(), "chat", cfg)
	if err == nil || !strings.Contains(err.Error(), "bench: worker ") || !strings.Contains(err.Error(), "dial user") {
		t.Fatalf("Run: %v, want a worker's dial error", err)
	}
	if pids := workerChildren(t); len(pids) != 0 {
		t.Fatalf("workers left running: %v", pids)
	}
}

// TestWorkerEndsWithItsInput checks that a worker answers a request
// before its job with an error, and exits when its stdin closes.
func TestWorkerEndsWithItsInput(t *testing.T) {
	bin := gonetsBinary(t)
	cmd := exec.Command(bin, "bench-worker")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := json.NewEncoder(in).Encode(request{Op: opTick}); err != nil {
		t.Fatal(err)
	}
	in.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("worker exit: %v", err)
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("the worker outlived its stdin")
	}
	var rep reply
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Error != errNoJob.Error() {
		t.Fatalf("reply %q: %v", out.String(), err)
	}
}

// TestWorkerInProcess serves a chat part with Worker in this process (so
// that the race detector sees the worker's side), request by request.
func TestWorkerInProcess(t *testing.T) {
	bin := gonetsBinary(t)
	ctx := context.Background()
	node, err := startNode(ctx, bin, "", false)
	if err != nil {
		t.Fatal(err)
	}
	defer node.stop()
	call, done := inProcessWorker(t, ctx)
	cfg := Config{Users: 4, Procs: 2}.withDefaults("chat")
	call(request{Op: opSetup, Job: newJob("chat", cfg, node, 1, 2)})
	start := time.Now().Add(50 * time.Millisecond)
	begin, end := start.Add(100*time.Millisecond), start.Add(600*time.Millisecond)
	call(request{Op: opLoad, Rate: 40, Start: start.UnixNano(), Begin: begin.UnixNano(), End: end.UnixNano()})
	time.Sleep(time.Until(end))
	if s := call(request{Op: opTick}).Second; s == nil || s.Offered == 0 || s.Sessions != 2 {
		t.Fatalf("tick: %+v", s)
	}
	call(request{Op: opStop, At: time.Now().UnixNano()})
	call(request{Op: opFinish, Limit: time.Second})
	storagetest.WaitFor(t, "every expected delivery", func() bool {
		rep := call(request{Op: opCounts})
		return rep.Delivered >= rep.Expected
	})
	tl := call(request{Op: opSnapshot}).Tally
	if tl == nil || tl.Sent == 0 || tl.Delivered != tl.Expected || tl.Delivery.TotalCount() != tl.Delivered {
		t.Fatalf("snapshot: %+v", tl)
	}
	call(request{Op: opQuit})
	done()
}

// workerChildren returns this process's children that run bench-worker.
func workerChildren(t *testing.T) []int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, dir := range dirs {
		stat, err1 := os.ReadFile(filepath.Join(dir, "stat"))
		cmdline, err2 := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err1 != nil || err2 != nil {
			continue // gone meanwhile
		}
		// ppid is the second field after the command name.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(os.Getpid()) && bytes.Contains(cmdline, []byte("bench-worker")) {
			pid, _ := strconv.Atoi(filepath.Base(dir))
			pids = append(pids, pid)
		}
	}
	return pids
}

// inProcessWorker serves Worker in this process over pipes and returns a
// function that makes one request of it (failing the test on an error
// reply) and one that ends it and checks it ended cleanly.
func inProcessWorker(t *testing.T, ctx context.Context) (call func(request) reply, done func()) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	served := make(chan error, 1)
	go func() { served <- Worker(ctx, inR, outW); outW.Close() }()
	enc, dec := json.NewEncoder(inW), json.NewDecoder(outR)
	call = func(req request) reply {
		t.Helper()
		if err := enc.Encode(req); err != nil {
			t.Fatal(err)
		}
		var rep reply
		if err := dec.Decode(&rep); err != nil {
			t.Fatal(err)
		}
		if rep.Error != "" {
			t.Fatalf("%s: %s", req.Op, rep.Error)
		}
		return rep
	}
	done = func() {
		t.Helper()
		inW.Close()
		if err := <-served; err != nil {
			t.Fatal(err)
		}
	}
	return call, done
}
