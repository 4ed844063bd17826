package signing_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/signing"
	"github.com/gonets/gonets/identity/signing/signsim"
)

const (
	testSigner    = 4
	testRequester = 3
)

// newRequest returns a valid request id over doc.
func newRequest(id string, doc []byte) signing.Request {
	return signing.Request{
		ID: id, Chat: 1, Message: 2, Requester: testRequester, Signer: testSigner,
		Person: signing.Signer{OID: "1000", SNILS: "112-233-445 95"},
		Title:  "Contract " + id, Document: doc, SHA256: sha256.Sum256(doc),
	}
}

// finisher records Finish calls; it fails the first failFirst calls of
// each request.
type finisher struct {
	failFirst int

	mu    sync.Mutex // guards the following
	calls map[string][]signing.Outcome
	acked map[string][]signing.Outcome
}

func newFinisher(failFirst int) *finisher {
	return &finisher{failFirst: failFirst, calls: map[string][]signing.Outcome{}, acked: map[string][]signing.Outcome{}}
}

func (f *finisher) Finish(ctx context.Context, o signing.Outcome) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := o.Request.ID
	f.calls[id] = append(f.calls[id], o)
	if len(f.calls[id]) <= f.failFirst {
		return errors.New("chat unavailable")
	}
	f.acked[id] = append(f.acked[id], o)
	return nil
}

// acknowledged returns the successful Finish outcomes of id.
func (f *finisher) acknowledged(id string) []signing.Outcome {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.acked[id])
}

// called returns all Finish calls of id.
func (f *finisher) called(id string) []signing.Outcome {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls[id])
}

// checkOne checks that id was acknowledged exactly once, that every call
// carried the same outcome, and returns it.
func (f *finisher) checkOne(t *testing.T, id string, want signing.State) signing.Outcome {
	t.Helper()
	acked := f.acknowledged(id)
	if len(acked) != 1 {
		t.Fatalf("%s: %d acknowledged Finish calls, want 1", id, len(acked))
	}
	o := acked[0]
	for _, c := range f.called(id) {
		if c.State != o.State || string(c.Signature) != string(o.Signature) || c.Reason != o.Reason || !c.At.Equal(o.At) {
			t.Fatalf("%s: Finish saw two outcomes: %v %q and %v %q", id, c.State, c.Reason, o.State, o.Reason)
		}
	}
	if o.State != want {
		t.Fatalf("%s: outcome %v (%q), want %v", id, o.State, o.Reason, want)
	}
	return o
}

// runner is a Manager with its Run loop.
type runner struct {
	m      *signing.Manager
	cancel context.CancelFunc
	done   chan error
}

// newManager returns a manager over kv with the test's defaults.
func newManager(t *testing.T, kv identity.KV, p signing.Provider, f *finisher, opt func(*signing.ManagerOptions)) *signing.Manager {
	t.Helper()
	o := signing.ManagerOptions{
		KV: kv, Provider: p, Finish: f.Finish,
		PollMin: 10 * time.Millisecond, PollMax: 100 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler),
	}
	if opt != nil {
		opt(&o)
	}
	m, err := signing.NewManager(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// run starts m's loop.
func run(m *signing.Manager) *runner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- m.Run(ctx) }()
	return r
}

// stop ends the loop and waits for it.
func (r *runner) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// waitFor waits (in real or bubble time) until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// newSim returns a simulator or fails the test.
func newSim(t *testing.T, o signsim.Options) *signsim.Sim {
	t.Helper()
	s, err := signsim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// get returns id's record or fails the test.
func get(t *testing.T, m *signing.Manager, id string) signing.Record {
	t.Helper()
	rec, found, err := m.Get(id)
	if err != nil || !found {
		t.Fatalf("Get(%s): found %v, %v", id, found, err)
	}
	return rec
}

func docFor(id string) []byte { return []byte(fmt.Sprintf("%%PDF-1.7 document %s", id)) }
