package storage

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gonets/gonets/storage/storagetest"
)

// TestSyncPacerHold checks the pacer's decisions on a fake clock.
func TestSyncPacerHold(t *testing.T) {
	t0 := time.Unix(1_000, 0)
	ms := func(n float64) time.Time { return t0.Add(time.Duration(n * float64(time.Millisecond))) }
	f := func(name string, p syncPacer, now time.Time, wantWait time.Duration, wantGoal int) {
		t.Helper()
		wait, goal := p.hold(now)
		if wait != wantWait || goal != wantGoal {
			t.Errorf("%s: hold = %v, goal %d; want %v, goal %d", name, wait, goal, wantWait, wantGoal)
		}
	}
	busy := syncPacer{max: time.Millisecond, rate: 5_000, sync: t0, prev: 6}
	f("under load, soon after a sync: wait for the rest of the interval", busy, ms(0.3), 700*time.Microsecond, 6)
	f("under load, the interval has passed: no wait", busy, ms(1), 0, 0)
	f("under load, long idle: no wait", busy, ms(60_000), 0, 0)
	f("a small previous group still waits for two", syncPacer{max: time.Millisecond, rate: 5_000, sync: t0, prev: 1}, ms(0.5), 500*time.Microsecond, 2)
	f("fewer than one sibling expected within the bound: no wait", syncPacer{max: time.Millisecond, rate: 999, sync: t0, prev: 6}, ms(0.1), 0, 0)
	f("first group: no wait", syncPacer{max: time.Millisecond, rate: 1e9}, ms(0), 0, 0)
	f("disabled: no wait", syncPacer{rate: 1e9, sync: t0, prev: 6}, ms(0.1), 0, 0)
}

// TestSyncPacerRate checks that the rate counts only requests that came
// while the committer was busy: a lone sender in a closed loop, whose
// next request comes only after its ack, never makes a group wait.
func TestSyncPacerRate(t *testing.T) {
	now := time.Unix(1_000, 0)
	p := syncPacer{max: time.Millisecond}
	for range 1000 { // one sender: 2,500 requests/s, none while busy
		p.idle(now, 0)
		now = now.Add(50 * time.Microsecond) // the sender's next request
		if wait, _ := p.hold(now); wait != 0 {
			t.Fatalf("a lone closed-loop sender waits %v", wait)
		}
		now = now.Add(100 * time.Microsecond)
		p.synced(now, 1)
		now = now.Add(250 * time.Microsecond) // the sync
	}
	for range 20 { // then 4 requests arrive during each 400 µs busy period
		p.idle(now, 4)
		now = now.Add(10 * time.Microsecond)
		p.hold(now)
		now = now.Add(100 * time.Microsecond)
		p.synced(now, 5)
		now = now.Add(300 * time.Microsecond)
	}
	if p.rate < 9_000 || p.rate > 10_100 {
		t.Fatalf("rate %.0f/s, want about 10,000/s (4 per 400 µs busy)", p.rate)
	}
	if wait, goal := p.hold(now.Add(10 * time.Microsecond)); wait != 690*time.Microsecond || goal != 5 {
		t.Fatalf("under load: hold %v, goal %d; want 690µs, goal 5", wait, goal)
	}
}

// TestSyncPacerBound drives the pacer with random arrivals and syncs:
// a wait never exceeds SyncDelayMax, nor ends after SyncDelayMax past the
// previous sync's start.
func TestSyncPacerBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, bound := range []time.Duration{0, 100 * time.Microsecond, time.Millisecond, 5 * time.Millisecond} {
		p := syncPacer{max: bound}
		now := time.Unix(1_000, 0)
		for range 10_000 {
			p.idle(now, rng.IntN(64))
			now = now.Add(time.Duration(rng.ExpFloat64() * float64(500*time.Microsecond)))
			wait, _ := p.hold(now)
			if wait < 0 || wait > bound || (wait > 0 && now.Add(wait).After(p.sync.Add(bound))) {
				t.Fatalf("bound %v: wait %v at %v after the previous sync", bound, wait, now.Sub(p.sync))
			}
			now = now.Add(wait + time.Duration(rng.IntN(200))*time.Microsecond)
			p.synced(now, 1+rng.IntN(64))
			now = now.Add(time.Duration(rng.ExpFloat64() * float64(400*time.Microsecond)))
		}
	}
}

// syncDelays returns how many group commits the store held back.
func syncDelays(s *Store) float64 {
	return benchMetrics(s)["gonets_storage_sync_delay_seconds_count"]
}

// TestLoneAppendNotDelayed: an append to an idle store is synced at once,
// under the default SyncDelayMax.
func TestLoneAppendNotDelayed(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2}})
	for i := range 5 {
		mustAppend(t, s, text(c.ID, 1, uint64(i+1), "lone"))
	}
	if n := syncDelays(s); n != 0 {
		t.Fatalf("%v group commits held back for lone appends", n)
	}
	m := benchMetrics(s)
	if syncs, appends := m["gonets_storage_syncs_total"], m["gonets_storage_appends_total"]; syncs != 6 || appends != 5 {
		t.Fatalf("%v syncs for 5 appends and a chat, want 6; appends %v", syncs, appends)
	}
}

// TestSyncDelayAcksAfterSync: a group held back for a second request
// goes out with it in one sync, and neither is acked before that sync.
// The store starts under load (a high pacer rate) with a bound far longer
// than the test, so the group waits for its goal, not for a timer.
func TestSyncDelayAcksAfterSync(t *testing.T) {
	gate := storagetest.NewSyncGate(t)
	s := openTest(t, t.TempDir(), Options{FS: gate.FS, SyncDelayMax: time.Hour, pacerRate: 1e9})
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2}})
	before := benchMetrics(s)
	gate.Hold.Store(true)
	var wg sync.WaitGroup
	done := make(chan int, 2)
	appendOne := func(i int) {
		mustAppend(t, s, text(c.ID, 1, uint64(i), "held"))
		done <- i
	}
	// Whichever order they reach the committer in, the group waits
	// until it holds both.
	wg.Go(func() { appendOne(1) })
	wg.Go(func() { appendOne(2) })
	<-gate.Held // the group's sync began
	select {
	case i := <-done:
		t.Fatalf("append %d acked before its sync completed", i)
	default:
	}
	gate.Open()
	wg.Wait()
	after := benchMetrics(s)
	d := func(name string) float64 { return after[name] - before[name] }
	if d("gonets_storage_sync_delay_seconds_count") != 1 || d("gonets_storage_syncs_total") != 1 || d("gonets_storage_commits_total") != 1 || d("gonets_storage_appends_total") != 2 {
		t.Fatalf("delays %v, syncs %v, commits %v, appends %v; want 1 group of 2 held once", d("gonets_storage_sync_delay_seconds_count"),
			d("gonets_storage_syncs_total"), d("gonets_storage_commits_total"), d("gonets_storage_appends_total"))
	}
}

// TestSyncDelayDisabled: with SyncDelayMax negative, a store under load
// commits as it did without a pacer: each group goes as soon as it is
// taken.
func TestSyncDelayDisabled(t *testing.T) {
	gate := storagetest.NewSyncGate(t)
	s := openTest(t, t.TempDir(), Options{FS: gate.FS, SyncDelayMax: -1, pacerRate: 1e9})
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2}})
	before := benchMetrics(s)
	gate.Hold.Store(true)
	var wg sync.WaitGroup
	wg.Go(func() { mustAppend(t, s, text(c.ID, 1, 1, "alone")) })
	<-gate.Held // the first append went out alone
	wg.Go(func() { mustAppend(t, s, text(c.ID, 1, 2, "next")) })
	storagetest.WaitFor(t, "the second append queued behind the held sync", func() bool {
		n, _ := s.q.queued()
		return n == 1
	})
	gate.Open()
	wg.Wait()
	after := benchMetrics(s)
	if n := after["gonets_storage_syncs_total"] - before["gonets_storage_syncs_total"]; n != 2 || syncDelays(s) != 0 {
		t.Fatalf("%v syncs, %v delays; want 2 syncs, no delay", n, syncDelays(s))
	}
}

// TestSyncDelayUnderLoad runs closed-loop appenders with the default
// bound: every append is acked, in order, and the syncs are fewer than
// the messages.
func TestSyncDelayUnderLoad(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2}})
	before := benchMetrics(s)
	const appenders, each = 8, 40
	var wg sync.WaitGroup
	for g := range appenders {
		wg.Go(func() {
			for i := range each {
				m := text(c.ID, 1, uint64(1+g*each+i), "load")
				if _, err := s.Append(context.Background(), []Message{m}); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	after := benchMetrics(s)
	syncs := after["gonets_storage_syncs_total"] - before["gonets_storage_syncs_total"]
	if appends := after["gonets_storage_appends_total"] - before["gonets_storage_appends_total"]; appends != appenders*each || syncs >= appends {
		t.Fatalf("%v appends in %v syncs", appends, syncs)
	}
	if ch, _ := s.Chat(c.ID); ch.LastSeq != appenders*each {
		t.Fatalf("last seq %d, want %d", ch.LastSeq, appenders*each)
	}
}
