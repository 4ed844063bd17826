package signing_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/signing"
	"github.com/gonets/gonets/identity/signing/signsim"
)

func TestSignInProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, signsim.Options{Delay: 2})
		kv, fin := identity.NewMemKV(), newFinisher(0)
		m := newManager(t, kv, sim.Provider(), fin, nil)
		r := run(m)
		defer r.stop(t)
		ctx := context.Background()
		doc := docFor("a")
		if err := m.Submit(ctx, newRequest("a", doc)); err != nil {
			t.Fatal(err)
		}
		if err := m.Submit(ctx, newRequest("a", doc)); err != nil {
			t.Fatalf("second Submit: %v", err)
		}
		if rec := get(t, m, "a"); rec.Phase != signing.Awaiting || string(rec.Request.Document) != string(doc) {
			t.Fatalf("after Submit: %v, %d document bytes", rec.Phase, len(rec.Request.Document))
		}
		if err := m.Decide(ctx, "a", testSigner, true); err != nil {
			t.Fatal(err)
		}
		if err := m.Decide(ctx, "a", testSigner, true); !errors.Is(err, signing.ErrEnded) || !strings.Contains(err.Error(), "approved") {
			t.Fatalf("second Decide: %v, want ErrEnded saying approved", err)
		}
		waitFor(t, "finish", func() bool { return len(fin.acknowledged("a")) > 0 })
		synctest.Wait()
		o := fin.checkOne(t, "a", signing.Signed)
		if err := signsim.VerifySignature(doc, o.Signature, sim.Certificate()); err != nil {
			t.Fatalf("signature: %v", err)
		}
		if string(o.Request.Document) != string(doc) || o.Request.Signer != testSigner {
			t.Fatal("outcome does not carry the request")
		}
		if n := sim.Starts("a"); n != 1 {
			t.Fatalf("Starts = %d, want 1", n)
		}
		rec := get(t, m, "a")
		if !rec.Acknowledged || rec.Phase != signing.Ended || rec.Request.Document != nil || rec.Outcome.State != signing.Signed || rec.Operation == "" {
			t.Fatalf("tombstone: %+v", rec)
		}
		if err := m.Decide(ctx, "a", testSigner, false); !errors.Is(err, signing.ErrEnded) || !strings.Contains(err.Error(), "signed") {
			t.Fatalf("late Decide: %v, want ErrEnded saying signed", err)
		}
		if err := m.Submit(ctx, newRequest("a", doc)); err != nil {
			t.Fatalf("Submit after the end: %v", err)
		}
		if rec := get(t, m, "a"); !rec.Acknowledged {
			t.Fatal("Submit after the end revived the request")
		}
	})
}

func TestDecisions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		approve func(signing.Document) (signing.State, string)
		user    bool // the user approves
		want    signing.State
		reason  string
		starts  int
	}{
		{"user declines", nil, false, signing.Declined, "declined by the signer", 0},
		{"person declines at the service", func(signing.Document) (signing.State, string) { return signing.Declined, "changed my mind" }, true, signing.Declined, "changed my mind", 1},
		{"service fails", func(signing.Document) (signing.State, string) { return signing.Failed, "certificate revoked" }, true, signing.Failed, "certificate revoked", 1},
		{"service expires", func(signing.Document) (signing.State, string) { return signing.Expired, "" }, true, signing.Expired, "expired at the signing service", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim := newSim(t, signsim.Options{Approve: tc.approve})
				fin := newFinisher(0)
				m := newManager(t, identity.NewMemKV(), sim.Provider(), fin, nil)
				r := run(m)
				defer r.stop(t)
				if err := m.Submit(t.Context(), newRequest("x", docFor("x"))); err != nil {
					t.Fatal(err)
				}
				if err := m.Decide(t.Context(), "x", testSigner, tc.user); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "finish", func() bool { return len(fin.acknowledged("x")) > 0 })
				o := fin.checkOne(t, "x", tc.want)
				if o.Reason != tc.reason || o.Signature != nil {
					t.Fatalf("reason %q, %d signature bytes; want %q", o.Reason, len(o.Signature), tc.reason)
				}
				if n := sim.Starts("x"); n != tc.starts {
					t.Fatalf("Starts = %d, want %d", n, tc.starts)
				}
			})
		})
	}
}

func TestExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, signsim.Options{
			Approve: func(signing.Document) (signing.State, string) { return signing.Pending, "" }, // never decides
		})
		fin := newFinisher(0)
		m := newManager(t, identity.NewMemKV(), sim.Provider(), fin, func(o *signing.ManagerOptions) {
			o.Expiry = time.Hour
			o.PollMax = time.Minute
		})
		r := run(m)
		defer r.stop(t)
		ctx := t.Context()
		for _, id := range []string{"never-decided", "never-signed"} {
			if err := m.Submit(ctx, newRequest(id, docFor(id))); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.Decide(ctx, "never-signed", testSigner, true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(59 * time.Minute)
		synctest.Wait()
		if rec := get(t, m, "never-signed"); rec.Phase != signing.Signing {
			t.Fatalf("before the deadline: %v", rec.Phase)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		o := fin.checkOne(t, "never-decided", signing.Expired)
		if !strings.Contains(o.Reason, "not decided") {
			t.Fatalf("reason %q", o.Reason)
		}
		o = fin.checkOne(t, "never-signed", signing.Expired)
		if !strings.Contains(o.Reason, "not signed") {
			t.Fatalf("reason %q", o.Reason)
		}
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		fin.checkOne(t, "never-decided", signing.Expired)
		fin.checkOne(t, "never-signed", signing.Expired)
		if err := m.Decide(ctx, "never-decided", testSigner, true); !errors.Is(err, signing.ErrEnded) || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("Decide after expiry: %v", err)
		}
	})
}

// TestExpiryAcrossRestart: a node that was down past a request's
// deadline (a fake clock jumps) expires it on start.
func TestExpiryAcrossRestart(t *testing.T) {
	kv, fin := identity.NewMemKV(), newFinisher(0)
	sim := newSim(t, signsim.Options{})
	var now atomic.Int64
	now.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	opt := func(o *signing.ManagerOptions) { o.Now = clock; o.Expiry = time.Hour }
	m := newManager(t, kv, sim.Provider(), fin, opt)
	if err := m.Submit(t.Context(), newRequest("late", docFor("late"))); err != nil {
		t.Fatal(err)
	}
	kv.Close()
	kv.Reopen()
	now.Add(int64(2 * time.Hour))
	m = newManager(t, kv, sim.Provider(), fin, opt)
	if err := m.Decide(t.Context(), "late", testSigner, true); !errors.Is(err, signing.ErrEnded) {
		t.Fatalf("Decide past the deadline: %v", err)
	}
	r := run(m)
	waitFor(t, "finish", func() bool { return len(fin.acknowledged("late")) > 0 })
	r.stop(t)
	fin.checkOne(t, "late", signing.Expired)
	if sim.Starts("late") != 0 {
		t.Fatal("an expired request was started")
	}
}

func TestSubmitRefusals(t *testing.T) {
	sim := newSim(t, signsim.Options{})
	m := newManager(t, identity.NewMemKV(), sim.Provider(), newFinisher(0), func(o *signing.ManagerOptions) {
		o.MaxDocument = 64
		o.MaxPending = 2
	})
	ctx := t.Context()
	check := func(name string, r signing.Request, want error) {
		t.Helper()
		if err := m.Submit(ctx, r); !errors.Is(err, want) {
			t.Errorf("%s: Submit = %v, want %v", name, err, want)
		}
	}
	bad := newRequest("h", docFor("h"))
	bad.SHA256[0] ^= 1
	check("hash", bad, signing.ErrHashMismatch)
	check("size", newRequest("big", make([]byte, 65)), signing.ErrTooLarge)
	r := newRequest("", docFor("x"))
	check("no id", r, signing.ErrBadRequest)
	r = newRequest("s", docFor("s"))
	r.Signer = 0
	check("no signer", r, signing.ErrBadRequest)
	r = newRequest("p", docFor("p"))
	r.Person.OID = ""
	check("no person", r, signing.ErrBadRequest)
	check("no document", newRequest("e", nil), signing.ErrBadRequest)
	r = newRequest("old", docFor("old"))
	r.Expires = time.Now().Add(-time.Minute)
	check("expired", r, signing.ErrBadRequest)
	check("first", newRequest("1", docFor("1")), nil)
	check("second", newRequest("2", docFor("2")), nil)
	check("again", newRequest("1", docFor("1")), nil)
	check("third", newRequest("3", docFor("3")), signing.ErrTooMany)
	if _, found, _ := m.Get("3"); found {
		t.Error("a refused request was kept")
	}

	if err := m.Decide(ctx, "nope", testSigner, true); !errors.Is(err, signing.ErrUnknownRequest) {
		t.Errorf("Decide unknown: %v", err)
	}
	if err := m.Decide(ctx, "1", testRequester, true); !errors.Is(err, signing.ErrNotSigner) {
		t.Errorf("Decide by the requester: %v", err)
	}
	if rec := get(t, m, "1"); rec.Phase != signing.Awaiting {
		t.Errorf("a refused Decide moved the request to %v", rec.Phase)
	}
}

// lostAnswer is a provider whose first Start per request reaches the
// service but whose answer is lost.
type lostAnswer struct {
	signing.Provider
	lost map[string]bool // owned by the one Run goroutine calling Start at a time per request
	mu   chan struct{}
}

func (p *lostAnswer) Start(ctx context.Context, d signing.Document) (string, error) {
	op, err := p.Provider.Start(ctx, d)
	p.mu <- struct{}{}
	defer func() { <-p.mu }()
	if err == nil && !p.lost[d.RequestID] {
		p.lost[d.RequestID] = true
		return "", errors.New("connection reset")
	}
	return op, err
}

func TestRestarts(t *testing.T) {
	ids := []string{"r1", "r2", "r3"}
	// each returns the manager for the next life; kv is restarted between.
	type life func(t *testing.T, kv *identity.MemKV, sim *signsim.Sim, fin *finisher)
	submit := func(t *testing.T, kv *identity.MemKV, sim *signsim.Sim, fin *finisher) {
		m := newManager(t, kv, sim.Provider(), fin, nil)
		for _, id := range ids {
			if err := m.Submit(t.Context(), newRequest(id, docFor(id))); err != nil {
				t.Fatal(err)
			}
		}
	}
	decide := func(t *testing.T, kv *identity.MemKV, sim *signsim.Sim, fin *finisher) {
		m := newManager(t, kv, sim.Provider(), fin, nil)
		for _, id := range ids {
			if err := m.Decide(t.Context(), id, testSigner, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	// runUntil runs a manager until every request reached phase (and,
	// for Ended, Finish was called once at least).
	runUntil := func(phase signing.Phase, p func(*signsim.Sim) signing.Provider, f func(*finisher) *finisher) life {
		return func(t *testing.T, kv *identity.MemKV, sim *signsim.Sim, fin *finisher) {
			prov := sim.Provider()
			if p != nil {
				prov = p(sim)
			}
			if f != nil {
				fin = f(fin)
			}
			m := newManager(t, kv, prov, fin, nil)
			r := run(m)
			waitFor(t, "phase "+phase.String(), func() bool {
				for _, id := range ids {
					rec, found, err := m.Get(id)
					if err != nil {
						t.Fatal(err)
					}
					if !found || rec.Phase < phase || (phase == signing.Ended && len(fin.called(id)) == 0) {
						return false
					}
				}
				return true
			})
			r.stop(t)
		}
	}
	finishAll := func(t *testing.T, kv *identity.MemKV, sim *signsim.Sim, fin *finisher) {
		m := newManager(t, kv, sim.Provider(), fin, nil)
		r := run(m)
		waitFor(t, "acknowledged", func() bool {
			for _, id := range ids {
				if rec, _, err := m.Get(id); err != nil || !rec.Acknowledged {
					return false
				}
			}
			return true
		})
		r.stop(t)
	}
	for _, tc := range []struct {
		name   string
		lives  []life
		starts int
	}{
		{"after submit", []life{submit, decide, finishAll}, 1},
		{"after decide before start", []life{submit, decide, finishAll}, 1},
		{"after start before signature", []life{submit, decide, runUntil(signing.Signing, nil, nil), finishAll}, 1},
		{"start answer lost", []life{submit, decide, runUntil(signing.Signing, func(s *signsim.Sim) signing.Provider {
			return &lostAnswer{Provider: s.Provider(), lost: map[string]bool{}, mu: make(chan struct{}, 1)}
		}, nil), finishAll}, 2},
		{"after the end before finish succeeded", []life{submit, decide, runUntil(signing.Ended, nil, func(f *finisher) *finisher {
			f.failFirst = 1 << 20 // every Finish of this life fails
			return f
		}), func(t *testing.T, kv *identity.MemKV, sim *signsim.Sim, fin *finisher) {
			fin.mu.Lock()
			fin.failFirst = 0
			fin.mu.Unlock()
			finishAll(t, kv, sim, fin)
		}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// Delay 30: a signature takes a while, so a life can stop
				// while the operation is pending.
				sim := newSim(t, signsim.Options{Delay: 30})
				kv, fin := identity.NewMemKV(), newFinisher(0)
				for _, l := range tc.lives {
					l(t, kv, sim, fin)
					kv.Close()
					kv.Reopen()
				}
				m := newManager(t, kv, sim.Provider(), fin, nil)
				for _, id := range ids {
					o := fin.checkOne(t, id, signing.Signed)
					if err := signsim.VerifySignature(docFor(id), o.Signature, sim.Certificate()); err != nil {
						t.Fatal(err)
					}
					if n := sim.Starts(id); n != tc.starts {
						t.Errorf("%s: Starts = %d, want %d", id, n, tc.starts)
					}
					if rec := get(t, m, id); !rec.Acknowledged {
						t.Errorf("%s: not acknowledged", id)
					}
				}
			})
		})
	}
}

// TestFinishRetried: Finish failing is retried until it succeeds, with
// the same outcome each time.
func TestFinishRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, signsim.Options{})
		fin := newFinisher(5)
		m := newManager(t, identity.NewMemKV(), sim.Provider(), fin, nil)
		r := run(m)
		defer r.stop(t)
		if err := m.Submit(t.Context(), newRequest("f", docFor("f"))); err != nil {
			t.Fatal(err)
		}
		if err := m.Decide(t.Context(), "f", testSigner, true); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "finish", func() bool { return len(fin.acknowledged("f")) > 0 })
		synctest.Wait()
		fin.checkOne(t, "f", signing.Signed)
		if n := len(fin.called("f")); n != 6 {
			t.Fatalf("%d Finish calls, want 6", n)
		}
	})
}

// forged is a provider that signs some other document.
type forged struct {
	signing.Provider
	sim *signsim.Sim
}

func (p forged) Status(ctx context.Context, op string) (signing.Status, error) {
	st, err := p.Provider.Status(ctx, op)
	if err == nil && st.State == signing.Signed {
		st.Signature, err = p.sim.Sign([]byte("another document"))
	}
	return st, err
}

func TestForeignSignatureRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, signsim.Options{})
		fin := newFinisher(0)
		m := newManager(t, identity.NewMemKV(), forged{sim.Provider(), sim}, fin, nil)
		r := run(m)
		defer r.stop(t)
		if err := m.Submit(t.Context(), newRequest("x", docFor("x"))); err != nil {
			t.Fatal(err)
		}
		if err := m.Decide(t.Context(), "x", testSigner, true); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "finish", func() bool { return len(fin.acknowledged("x")) > 0 })
		o := fin.checkOne(t, "x", signing.Failed)
		if !strings.Contains(o.Reason, "signature was refused") || o.Signature != nil {
			t.Fatalf("reason %q, %d signature bytes", o.Reason, len(o.Signature))
		}
	})
}

// TestDecideRacesExpiry runs Decide against a deadline that falls at
// about the same time, many times: each request ends once, and as Decide
// said.
func TestDecideRacesExpiry(t *testing.T) {
	const n = 200
	sim := newSim(t, signsim.Options{Delay: -1})
	kv, fin := identity.NewMemKV(), newFinisher(0)
	m := newManager(t, kv, sim.Provider(), fin, func(o *signing.ManagerOptions) {
		o.PollMin, o.PollMax = time.Millisecond, 2*time.Millisecond
		o.Expiry = 2 * time.Millisecond
		o.MaxPerSigner = n // one signer has them all
	})
	r := run(m)
	defer r.stop(t)
	type result struct {
		approve bool
		err     error
	}
	results := make([]chan result, n)
	id := func(i int) string { return "race-" + strconv.Itoa(i) }
	for i := range n {
		req := newRequest(id(i), docFor(id(i))) // expires 2 ms after Submit
		if err := m.Submit(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		results[i] = make(chan result, 1)
		go func() {
			time.Sleep(time.Duration(i%4) * 500 * time.Microsecond)
			approve := i%2 == 0
			results[i] <- result{approve, m.Decide(context.Background(), id(i), testSigner, approve)}
		}()
	}
	for i := range n {
		res := <-results[i]
		waitFor(t, "finish "+id(i), func() bool { return len(fin.acknowledged(id(i))) > 0 })
		o := fin.acknowledged(id(i))[0]
		var want []signing.State
		switch {
		case errors.Is(res.err, signing.ErrEnded):
			want = []signing.State{signing.Expired}
		case res.err != nil:
			t.Fatalf("Decide: %v", res.err)
		case res.approve:
			want = []signing.State{signing.Signed, signing.Expired}
		default:
			want = []signing.State{signing.Declined}
		}
		if o.State != want[0] && (len(want) == 1 || o.State != want[1]) {
			t.Fatalf("%s: Decide(approve %v) = %v, outcome %v", id(i), res.approve, res.err, o.State)
		}
		fin.checkOne(t, id(i), o.State)
	}
}

func TestTombstoneRetention(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, signsim.Options{})
		fin := newFinisher(0)
		kv := identity.NewMemKV()
		m := newManager(t, kv, sim.Provider(), fin, func(o *signing.ManagerOptions) { o.Retention = 2 * time.Hour })
		r := run(m)
		defer r.stop(t)
		if err := m.Submit(t.Context(), newRequest("old", docFor("old"))); err != nil {
			t.Fatal(err)
		}
		if err := m.Decide(t.Context(), "old", testSigner, false); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "finish", func() bool { return len(fin.acknowledged("old")) > 0 })
		synctest.Wait()
		if rec := get(t, m, "old"); !rec.Acknowledged {
			t.Fatal("no tombstone")
		}
		time.Sleep(3*time.Hour + time.Minute)
		synctest.Wait()
		if _, found, err := m.Get("old"); found || err != nil {
			t.Fatalf("tombstone past retention: found %v, %v", found, err)
		}
		if err := m.Decide(t.Context(), "old", testSigner, true); !errors.Is(err, signing.ErrUnknownRequest) {
			t.Fatalf("Decide after retention: %v", err)
		}
		n := 0
		if err := kv.Scan([]byte("signing/"), func(k, v []byte) (bool, error) { n++; return true, nil }); err != nil || n != 0 {
			t.Fatalf("%d keys left, %v", n, err)
		}
	})
}

// slowProvider counts the Status calls in flight.
type slowProvider struct {
	signing.Provider
	inFlight, most atomic.Int32
}

func (p *slowProvider) Status(ctx context.Context, op string) (signing.Status, error) {
	n := p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	for {
		m := p.most.Load()
		if n <= m || p.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(100 * time.Millisecond)
	return p.Provider.Status(ctx, op)
}

func TestConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, signsim.Options{Delay: 2})
		p := &slowProvider{Provider: sim.Provider()}
		fin := newFinisher(0)
		m := newManager(t, identity.NewMemKV(), p, fin, func(o *signing.ManagerOptions) { o.Concurrency = 3 })
		r := run(m)
		defer r.stop(t)
		synctest.Wait() // the first Run is waiting
		if err := m.Run(t.Context()); !errors.Is(err, signing.ErrRunning) {
			t.Fatalf("a second Run = %v, want ErrRunning", err)
		}
		const n = 20
		for i := range n {
			id := strconv.Itoa(i)
			if err := m.Submit(t.Context(), newRequest(id, docFor(id))); err != nil {
				t.Fatal(err)
			}
			if err := m.Decide(t.Context(), id, testSigner, true); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "all finished", func() bool {
			for i := range n {
				if len(fin.acknowledged(strconv.Itoa(i))) == 0 {
					return false
				}
			}
			return true
		})
		if most := p.most.Load(); most != 3 {
			t.Fatalf("at most %d polls in flight, want 3 (Concurrency)", most)
		}
	})
}
