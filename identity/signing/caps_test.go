package signing_test

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/signing"
	"github.com/gonets/gonets/identity/signing/signsim"
)

// TestPerUserCaps refuses a requester's and a signer's requests beyond
// their caps, counts them again after a restart, and frees a place when a
// request is acknowledged.
func TestPerUserCaps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, signsim.Options{})
		kv, fin := identity.NewMemKV(), newFinisher(0)
		opt := func(o *signing.ManagerOptions) { o.MaxPerRequester, o.MaxPerSigner = 3, 2 }
		m := newManager(t, kv, sim.Provider(), fin, opt)
		req := func(id string, requester, signer uint64) signing.Request {
			r := newRequest(id, docFor(id))
			r.Requester, r.Signer = requester, signer
			return r
		}
		check := func(m *signing.Manager, r signing.Request, cap string) {
			t.Helper()
			err := m.Submit(t.Context(), r)
			switch {
			case cap == "" && err != nil:
				t.Fatalf("Submit(%s) = %v", r.ID, err)
			case cap != "" && (!errors.Is(err, signing.ErrTooMany) || !strings.Contains(err.Error(), cap)):
				t.Fatalf("Submit(%s) = %v, want ErrTooMany naming %s", r.ID, err, cap)
			}
		}
		check(m, req("a1", 10, 20), "")
		check(m, req("a2", 10, 20), "")
		check(m, req("a2", 10, 20), "") // the same request again: no new place
		check(m, req("a3", 10, 20), "MaxPerSigner")
		check(m, req("a3", 10, 21), "")
		check(m, req("a4", 10, 22), "MaxPerRequester")
		check(m, req("b1", 11, 22), "") // another requester, another signer

		m = newManager(t, kv, sim.Provider(), fin, opt) // the counts come back from the KV
		check(m, req("a4", 10, 22), "MaxPerRequester")
		check(m, req("b2", 11, 20), "MaxPerSigner")

		r := run(m)
		defer r.stop(t)
		if err := m.Decide(t.Context(), "a1", 20, false); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "finish", func() bool { return len(fin.acknowledged("a1")) > 0 })
		synctest.Wait()
		check(m, req("b2", 11, 20), "")
		check(m, req("a4", 10, 22), "")
		check(m, req("a5", 10, 23), "MaxPerRequester")
	})
}

func TestCapsOptions(t *testing.T) {
	sim := newSim(t, signsim.Options{})
	for _, o := range []signing.ManagerOptions{{MaxPerRequester: -1}, {MaxPerSigner: -1}} {
		o.KV, o.Provider, o.Finish = identity.NewMemKV(), sim.Provider(), newFinisher(0).Finish
		if _, err := signing.NewManager(o); !errors.Is(err, signing.ErrConfig) {
			t.Errorf("NewManager(%+v) = %v, want ErrConfig", o, err)
		}
	}
	// The defaults: 100 per signer, 1,000 per requester.
	m := newManager(t, identity.NewMemKV(), sim.Provider(), newFinisher(0), nil)
	for i := range 101 {
		id := "s" + strconv.Itoa(i)
		err := m.Submit(t.Context(), newRequest(id, docFor(id)))
		if i < 100 && err != nil || i == 100 && !errors.Is(err, signing.ErrTooMany) {
			t.Fatalf("Submit #%d = %v", i, err)
		}
	}
	for i := range 1000 - 100 + 1 {
		id := "r" + strconv.Itoa(i)
		r := newRequest(id, docFor(id))
		r.Signer = uint64(1000 + i) // a signer each
		err := m.Submit(t.Context(), r)
		if i < 900 && err != nil || i == 900 && !errors.Is(err, signing.ErrTooMany) {
			t.Fatalf("Submit #%d = %v", 100+i, err)
		}
	}
}

// scanGuard is a KV that fails the test on any call made inside a Scan
// callback: a sealed table takes a read lock for Scan and again for Get,
// which deadlocks when a writer waits between them.
type scanGuard struct {
	identity.KV
	t *testing.T

	mu         sync.Mutex // guards the following
	scanning   int
	nested     []string
	failDelete string // a key Delete fails for
}

func (g *scanGuard) check(call string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.scanning > 0 {
		g.nested = append(g.nested, call)
	}
}

func (g *scanGuard) Get(key []byte) ([]byte, bool, error) {
	g.check("Get " + string(key))
	return g.KV.Get(key)
}

func (g *scanGuard) Set(key, value []byte) error {
	g.check("Set " + string(key))
	return g.KV.Set(key, value)
}

func (g *scanGuard) Delete(key []byte) error {
	g.check("Delete " + string(key))
	g.mu.Lock()
	fail := g.failDelete == string(key)
	g.mu.Unlock()
	if fail {
		return errors.New("disk full")
	}
	return g.KV.Delete(key)
}

func (g *scanGuard) Scan(prefix []byte, fn func(key, value []byte) (bool, error)) error {
	g.check("Scan " + string(prefix))
	return g.KV.Scan(prefix, func(key, value []byte) (bool, error) {
		g.mu.Lock()
		g.scanning++
		g.mu.Unlock()
		defer func() {
			g.mu.Lock()
			g.scanning--
			g.mu.Unlock()
		}()
		return fn(key, value)
	})
}

func (g *scanGuard) verify() {
	g.t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.nested) > 0 {
		g.t.Fatalf("KV calls inside a Scan callback: %q", g.nested)
	}
}

// TestNoKVCallInsideScan loads records (one acknowledged but not yet
// deleted) and sweeps tombstones through a KV that catches a call made
// inside a Scan callback.
func TestNoKVCallInsideScan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, signsim.Options{})
		mem, fin := identity.NewMemKV(), newFinisher(0)
		kv := &scanGuard{KV: mem, t: t}
		m := newManager(t, kv, sim.Provider(), fin, func(o *signing.ManagerOptions) { o.Retention = 1 })
		for _, id := range []string{"a", "b", "c"} {
			if err := m.Submit(t.Context(), newRequest(id, docFor(id))); err != nil {
				t.Fatal(err)
			}
		}
		kv.failDelete = "signing/r/b" // "b" is acknowledged, but its record stays
		r := run(m)
		for _, id := range []string{"a", "b"} {
			if err := m.Decide(t.Context(), id, testSigner, false); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "finish", func() bool { return len(fin.acknowledged("a")) > 0 && len(fin.acknowledged("b")) > 0 })
		r.stop(t)
		mustGet(t, mem, "signing/t/b")
		mustGet(t, mem, "signing/r/b")
		kv.mu.Lock()
		kv.failDelete = ""
		kv.mu.Unlock()
		m = newManager(t, kv, sim.Provider(), fin, func(o *signing.ManagerOptions) { o.Retention = 1 })
		kv.verify()
		if _, found, _ := mem.Get([]byte("signing/r/b")); found {
			t.Fatal("the acknowledged record was not deleted at load")
		}
		if rec := get(t, m, "b"); !rec.Acknowledged || rec.Outcome.State != signing.Declined {
			t.Fatalf("b after load: %+v", rec)
		}
		if rec := get(t, m, "c"); rec.Phase != signing.Awaiting || rec.Acknowledged {
			t.Fatalf("c after load: %+v", rec)
		}
		r = run(m) // sweeps the tombstones at once (Retention 1 ns)
		waitFor(t, "sweep", func() bool {
			_, foundA, _ := mem.Get([]byte("signing/t/a"))
			_, foundB, _ := mem.Get([]byte("signing/t/b"))
			return !foundA && !foundB
		})
		r.stop(t)
		kv.verify()
	})
}

func mustGet(t *testing.T, kv identity.KV, key string) []byte {
	t.Helper()
	b, found, err := kv.Get([]byte(key))
	if err != nil || !found {
		t.Fatalf("Get(%s): %v, %v", key, found, err)
	}
	return b
}
