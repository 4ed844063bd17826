package storage

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Benchmarks run on a real disk under b.TempDir, so every ack waits for a
// real WAL sync. Message bodies are 256 bytes of pseudo-random bytes unless
// a benchmark says otherwise: s2 cannot shrink them, so they are stored as
// written (codecNone) and every byte reaches the WAL.

const benchBodyBytes = 256

// BenchmarkAppendDurable measures durable append throughput: 64 appenders,
// each appending one message at a time to 1,000 two-member groups and
// waiting for its ack before the next. b.N is the total of messages.
func BenchmarkAppendDurable(b *testing.B) { benchAppend(b, 64) }

// BenchmarkAppendDurableConcurrency is BenchmarkAppendDurable with more
// senders in flight, as a broker with thousands of sessions has.
func BenchmarkAppendDurableConcurrency(b *testing.B) {
	for _, n := range []int{256, 1024} {
		b.Run(fmt.Sprintf("appenders=%d", n), func(b *testing.B) { benchAppend(b, n) })
	}
}

func benchAppend(b *testing.B, appenders int) {
	s := openTest(b, b.TempDir(), Options{})
	chats := benchGroups(b, s, 1000)
	share := max(1, len(chats)/appenders)
	bodies := benchRandomBodies(64)
	ctx := context.Background()
	var next atomic.Int64
	var firstErr benchErr
	var wg sync.WaitGroup
	before := benchMetrics(s)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for g := range appenders {
		wg.Go(func() {
			msg := make([]Message, 1)
			for cmid := uint64(1); ; cmid++ {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				// Appender g is a device of each chat's creator, sending
				// to its own share of the chats (1,000/appenders of them,
				// at least one), numbering its messages upwards.
				c := chats[(g+int(cmid)%share*appenders)%len(chats)]
				msg[0] = Message{Chat: c.ID, Sender: c.Creator, Device: DeviceID(1 + g), ClientMsgID: cmid, Kind: MsgText, Body: bodies[i%len(bodies)]}
				acks, err := s.Append(ctx, msg)
				if err == nil {
					err = acks[0].Err
				}
				if err != nil {
					firstErr.set(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := firstErr.get(); err != nil {
		b.Fatalf("Append: %v", err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	reportCommits(b, before, benchMetrics(s))
}

// BenchmarkAppendLatency offers 20,000 msgs/s at a constant rate (open
// loop) and reports ack latency percentiles, measured from each message's
// scheduled send time so that a stalled store is charged for the sends it
// delays (no coordinated omission). It sends max(b.N, 5,000) messages, each
// from its own goroutine; ns/op is hidden because it is only 1/rate.
// start-p99-ms is the harness's own lateness: how late the p99 send began.
func BenchmarkAppendLatency(b *testing.B) { benchLatency(b, 20_000) }

// BenchmarkAppendLatencyRate is BenchmarkAppendLatency at lower offered
// rates, to tell the latency of an unsaturated store from queueing.
func BenchmarkAppendLatencyRate(b *testing.B) {
	for _, rate := range []int{2_000, 10_000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) { benchLatency(b, rate) })
	}
}

func benchLatency(b *testing.B, rate int) {
	interval := time.Second / time.Duration(rate)
	n := max(b.N, 5000)
	s := openTest(b, b.TempDir(), Options{})
	chats := benchGroups(b, s, 1000)
	bodies := benchRandomBodies(64)
	ctx := context.Background()
	lat := make([]time.Duration, n)
	late := make([]time.Duration, n)
	var firstErr benchErr
	var wg sync.WaitGroup
	before := benchMetrics(s)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < n; {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		// Issue every send that is due, catching up after a late wake-up.
		now := time.Now()
		for ; i < n && !start.Add(time.Duration(i)*interval).After(now); i++ {
			idx, sched := i, start.Add(time.Duration(i)*interval)
			wg.Go(func() {
				late[idx] = time.Since(sched)
				c := chats[idx%len(chats)]
				m := []Message{{Chat: c.ID, Sender: c.Creator, Device: 1, ClientMsgID: uint64(idx + 1), Kind: MsgText, Body: bodies[idx%len(bodies)]}}
				acks, err := s.Append(ctx, m)
				lat[idx] = time.Since(sched)
				if err == nil {
					err = acks[0].Err
				}
				if err != nil {
					firstErr.set(err)
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := firstErr.get(); err != nil {
		b.Fatalf("Append: %v", err)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(benchPercentile(lat, 0.50), "p50-ms")
	b.ReportMetric(benchPercentile(lat, 0.99), "p99-ms")
	b.ReportMetric(benchPercentile(lat, 0.999), "p999-ms")
	b.ReportMetric(benchPercentile(lat, 1), "max-ms")
	b.ReportMetric(benchPercentile(late, 0.99), "start-p99-ms")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
	reportCommits(b, before, benchMetrics(s))
}

// benchPercentile sorts d and returns its p-quantile in milliseconds.
func benchPercentile(d []time.Duration, p float64) float64 {
	slices.Sort(d)
	return float64(d[min(int(float64(len(d))*p), len(d)-1)]) / float64(time.Millisecond)
}

// BenchmarkReadRange reads a whole 10,000-message chat (256-byte random
// bodies, flushed to an sstable, block cache warm after the first pass)
// with one ReadRange per iteration.
func BenchmarkReadRange(b *testing.B) { benchReadRange(b, benchRandomBodies(64), true) }

// BenchmarkReadRangeText is BenchmarkReadRange with text-like bodies of
// random common words. s2 saves 10% on about 4 in 10 of them; those are
// stored compressed and decoded on every read.
func BenchmarkReadRangeText(b *testing.B) { benchReadRange(b, benchTextBodies(64), true) }

// BenchmarkReadRangeMemtable is BenchmarkReadRange with the chat still in
// the memtable, as a recent chat is.
func BenchmarkReadRangeMemtable(b *testing.B) { benchReadRange(b, benchRandomBodies(64), false) }

func benchReadRange(b *testing.B, bodies [][]byte, flush bool) {
	const n = 10_000
	s := openTest(b, b.TempDir(), Options{})
	c := mustChat(b, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2}})
	msgs := make([]Message, 0, 100)
	for i := 0; i < n; i += cap(msgs) {
		msgs = msgs[:0]
		for j := i; j < i+cap(msgs); j++ {
			msgs = append(msgs, Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: uint64(j + 1), Kind: MsgText, Body: bodies[j%len(bodies)]})
		}
		mustAppend(b, s, msgs...)
	}
	if flush {
		if err := s.db.Flush(); err != nil {
			b.Fatalf("Flush: %v", err)
		}
	}
	sum := 0
	read := func(r *Record) error {
		sum += len(r.Body)
		return nil
	}
	b.SetBytes(n * benchBodyBytes)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		sum = 0
		if _, err := s.ReadRange(c.ID, 1, n, read); err != nil {
			b.Fatalf("ReadRange: %v", err)
		}
		if sum != n*benchBodyBytes {
			b.Fatalf("read %d body bytes, want %d", sum, n*benchBodyBytes)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkDialogs measures a user's sync after 10 of their chats changed,
// for a user in 100 and in 10,000 chats (half direct, half two-member
// groups); the cost should not depend on the unchanged chats. The setup is
// flushed to an sstable; the 10 changes are in the memtable.
func BenchmarkDialogs(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		b.Run(fmt.Sprintf("chats=%d", n), func(b *testing.B) { benchDialogs(b, n) })
	}
}

func benchDialogs(b *testing.B, n int) {
	const user, changed = UserID(1), 10
	s := openTest(b, b.TempDir(), Options{})
	chats := make([]ChatID, n)
	err := benchParallel(n, 64, func(i int) error {
		spec := ChatSpec{Kind: ChatGroup, Creator: UserID(1000 + i), Members: []UserID{user}, Title: "group"}
		if i%2 == 0 {
			spec = ChatSpec{Kind: ChatDirect, Creator: UserID(1000 + i), Members: []UserID{user}}
		}
		c, err := s.CreateChat(context.Background(), spec)
		chats[i] = c.ID
		return err
	})
	if err != nil {
		b.Fatalf("CreateChat: %v", err)
	}
	if err := s.db.Flush(); err != nil {
		b.Fatalf("Flush: %v", err)
	}
	// The user syncs a while after joining, on a node that keeps
	// committing (here: one unrelated write), so that the sync point is
	// past the ~131 ms index epoch of the last join; then 10 of its chats
	// change and it asks what changed since that sync point.
	time.Sleep(2 << epochBits * time.Microsecond)
	other := mustChat(b, s, ChatSpec{Kind: ChatGroup, Creator: 2})
	if err := s.SetRetention(context.Background(), other.ID, nil); err != nil {
		b.Fatal(err)
	}
	p, err := s.Dialogs(user, s.Version(), DialogCursor{}, 1000)
	if err != nil || len(p.Dialogs) != 0 {
		b.Fatalf("Dialogs at the current version = %d dialogs, %v", len(p.Dialogs), err)
	}
	since := p.Version
	for k := range changed {
		mustAppend(b, s, text(chats[k*n/changed], user, 1, "changed"))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p, err := s.Dialogs(user, since, DialogCursor{}, 1000)
		if err != nil {
			b.Fatalf("Dialogs: %v", err)
		}
		if len(p.Dialogs) != changed || p.More {
			b.Fatalf("Dialogs = %d dialogs (more %v), want %d", len(p.Dialogs), p.More, changed)
		}
	}
}

// benchGroups creates n two-member groups; the creator of each posts.
func benchGroups(b *testing.B, s *Store, n int) []Chat {
	b.Helper()
	chats := make([]Chat, n)
	err := benchParallel(n, 64, func(i int) error {
		c, err := s.CreateChat(context.Background(), ChatSpec{Kind: ChatGroup, Creator: UserID(2*i + 1), Members: []UserID{UserID(2*i + 2)}, Title: "bench"})
		chats[i] = c
		return err
	})
	if err != nil {
		b.Fatalf("CreateChat: %v", err)
	}
	return chats
}

// benchParallel calls fn(i) for i in [0, n) from workers goroutines, so
// that setup writes share group commits, and returns the first error.
func benchParallel(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var firstErr benchErr
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := fn(i); err != nil {
					firstErr.set(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr.get()
}

// benchErr keeps the first error reported by any goroutine.
type benchErr struct {
	once sync.Once
	err  error
}

func (e *benchErr) set(err error) { e.once.Do(func() { e.err = err }) }

// get must be called after the goroutines that call set are done.
func (e *benchErr) get() error { return e.err }

// benchRandomBodies returns n distinct incompressible bodies.
func benchRandomBodies(n int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, benchBodyBytes)
		for j := range out[i] {
			out[i][j] = byte(r.Uint32())
		}
	}
	return out
}

// benchTextBodies returns n distinct bodies of random words.
func benchTextBodies(n int) [][]byte {
	words := strings.Fields("the a to and of in is it you that for on was with he as I his they be at one have this from or had by not but what some we can out other were all there when up use your how said an each she which do their time if will way about many then them write would like so these her long make thing see him two has look more day could go come did number sound no most people my over know water than call first who may down side been now find")
	r := rand.New(rand.NewPCG(3, 4))
	out := make([][]byte, n)
	for i := range out {
		var buf []byte
		for len(buf) < benchBodyBytes {
			buf = append(buf, words[r.IntN(len(words))]...)
			buf = append(buf, ' ')
		}
		out[i] = buf[:benchBodyBytes]
	}
	return out
}

// benchMetrics returns the store's unlabelled series (counters, gauges,
// histogram sums and counts) by name.
func benchMetrics(s *Store) map[string]float64 {
	var buf bytes.Buffer
	s.Metrics().WritePrometheus(&buf)
	out := make(map[string]float64)
	for line := range strings.Lines(buf.String()) {
		name, val, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = f
		}
	}
	return out
}

// reportCommits reports the group commits between two metric readings:
// messages per commit, and the mean WAL sync and whole-commit times.
func reportCommits(b *testing.B, before, after map[string]float64) {
	d := func(name string) float64 { return after[name] - before[name] }
	if commits := d("gonets_storage_commits_total"); commits > 0 {
		b.ReportMetric(d("gonets_storage_appends_total")/commits, "msgs/commit")
	}
	if n := d("gonets_storage_sync_seconds_count"); n > 0 {
		b.ReportMetric(d("gonets_storage_sync_seconds_sum")/n*1000, "sync-ms")
	}
	if n := d("gonets_storage_commit_seconds_count"); n > 0 {
		b.ReportMetric(d("gonets_storage_commit_seconds_sum")/n*1000, "commit-ms")
	}
}

// BenchmarkAppendSyncDelay measures both sides of Options.SyncDelayMax's
// trade: WAL syncs per message and the process's CPU per message (the
// sync's share of it) against ack latency. Each case runs with the wait
// off and at bounds of 1 and 2 ms: closed loops of 1, 8 and 64 appenders
// (each waits for its ack before the next), and open loops at moderate
// offered rates, where a group commit holds one or two messages. Latency
// is an ack's, from the send (closed loop) or from its scheduled send
// (open loop).
func BenchmarkAppendSyncDelay(b *testing.B) {
	for _, load := range []struct {
		name      string
		appenders int // closed loop
		rate      int // open loop, msgs/s
	}{{"appenders=1", 1, 0}, {"appenders=8", 8, 0}, {"appenders=64", 64, 0}, {"rate=1000", 0, 1000}, {"rate=4000", 0, 4000}} {
		for _, delay := range []time.Duration{-1, time.Millisecond, 2 * time.Millisecond} {
			name := "delay=off"
			if delay > 0 {
				name = "delay=" + delay.String()
			}
			b.Run(load.name+"/"+name, func(b *testing.B) { benchSyncDelay(b, delay, load.appenders, load.rate) })
		}
	}
}

func benchSyncDelay(b *testing.B, delay time.Duration, appenders, rate int) {
	s := openTest(b, b.TempDir(), Options{SyncDelayMax: delay})
	chats := benchGroups(b, s, 1000)
	bodies := benchRandomBodies(64)
	ctx := context.Background()
	n := b.N
	if rate > 0 {
		n = max(n, rate) // at least a second of load
	}
	lat := make([]time.Duration, n)
	var firstErr benchErr
	send := func(i int, from time.Time) {
		c := chats[i%len(chats)]
		m := []Message{{Chat: c.ID, Sender: c.Creator, Device: DeviceID(1 + i%64), ClientMsgID: uint64(i + 1), Kind: MsgText, Body: bodies[i%len(bodies)]}}
		acks, err := s.Append(ctx, m)
		lat[i] = time.Since(from)
		if err == nil {
			err = acks[0].Err
		}
		if err != nil {
			firstErr.set(err)
		}
	}
	before, cpu := benchMetrics(s), processCPU()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	if rate > 0 {
		interval := time.Second / time.Duration(rate)
		for i := 0; i < n; {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
			for now := time.Now(); i < n && !start.Add(time.Duration(i)*interval).After(now); i++ {
				idx, sched := i, start.Add(time.Duration(i)*interval)
				wg.Go(func() { send(idx, sched) })
			}
		}
	} else {
		var next atomic.Int64
		for range appenders {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
					send(i, time.Now())
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	cpu = processCPU() - cpu
	if err := firstErr.get(); err != nil {
		b.Fatalf("Append: %v", err)
	}
	after := benchMetrics(s)
	d := func(name string) float64 { return after[name] - before[name] }
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(d("gonets_storage_syncs_total")/float64(n), "syncs/msg")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-us/msg")
	b.ReportMetric(benchPercentile(lat, 0.50), "p50-ms")
	b.ReportMetric(benchPercentile(lat, 0.99), "p99-ms")
	if held := d("gonets_storage_sync_delay_seconds_count"); held > 0 {
		b.ReportMetric(d("gonets_storage_sync_delay_seconds_sum")/held*1000, "held-ms")
		b.ReportMetric(held/float64(n), "holds/msg")
	}
}

// processCPU returns the CPU time the process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
