package signing_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/signing"
	"github.com/gonets/gonets/identity/signing/signsim"
)

const cancelReason = "the signer unlinked their state account"

// TestCancelSigner ends the signer's requests in every phase short of
// ended, finishes each once, and leaves ended requests and other signers'
// requests alone.
func TestCancelSigner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, signsim.Options{Delay: 1 << 30}) // never signs
		kv, fin := identity.NewMemKV(), newFinisher(1)    // the first Finish of each fails
		m := newManager(t, kv, sim.Provider(), fin, nil)
		ctx := t.Context()
		submit := func(id string, signer uint64) {
			t.Helper()
			r := newRequest(id, docFor(id))
			r.Signer = signer
			if err := m.Submit(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		const other = testSigner + 1
		for _, id := range []string{"awaiting", "approved", "signing", "declined"} {
			submit(id, testSigner)
		}
		submit("others", other)
		for id, approve := range map[string]bool{"approved": true, "signing": true, "declined": false} {
			if err := m.Decide(ctx, id, testSigner, approve); err != nil {
				t.Fatal(err)
			}
		}
		r := run(m)
		waitFor(t, "signing", func() bool { return get(t, m, "signing").Phase == signing.Signing })
		waitFor(t, "declined finished", func() bool { return len(fin.acknowledged("declined")) > 0 })
		r.stop(t)
		if err := m.Decide(ctx, "approved", testSigner, true); !errors.Is(err, signing.ErrEnded) {
			t.Fatal(err)
		}
		// "approved" is Signing now too; one approved while Run is stopped
		// stays Approved.
		submit("approved2", testSigner)
		if err := m.Decide(ctx, "approved2", testSigner, true); err != nil {
			t.Fatal(err)
		}

		n, err := m.CancelSigner(ctx, testSigner, cancelReason)
		if err != nil || n != 4 {
			t.Fatalf("CancelSigner = %d, %v; want 4", n, err)
		}
		if n, err := m.CancelSigner(ctx, testSigner, "again"); err != nil || n != 0 {
			t.Fatalf("second CancelSigner = %d, %v; want 0", n, err)
		}
		for _, id := range []string{"awaiting", "approved2"} {
			if err := m.Decide(ctx, id, testSigner, true); !errors.Is(err, signing.ErrEnded) || !strings.Contains(err.Error(), "failed") {
				t.Fatalf("Decide(%s) after CancelSigner = %v", id, err)
			}
		}
		r = run(m)
		defer r.stop(t)
		for _, id := range []string{"awaiting", "approved", "signing", "approved2"} {
			waitFor(t, "finish "+id, func() bool { return len(fin.acknowledged(id)) > 0 })
		}
		synctest.Wait()
		for _, id := range []string{"awaiting", "approved", "signing", "approved2"} {
			if o := fin.checkOne(t, id, signing.Failed); o.Reason != cancelReason {
				t.Fatalf("%s: reason %q", id, o.Reason)
			}
		}
		if o := fin.checkOne(t, "declined", signing.Declined); o.Reason == cancelReason {
			t.Fatal("an ended request took the cancel's outcome")
		}
		if sim.Starts("approved2") != 0 {
			t.Fatal("a canceled request was started")
		}
		if rec := get(t, m, "others"); rec.Phase != signing.Awaiting || len(fin.called("others")) != 0 {
			t.Fatalf("another signer's request: %v", rec.Phase)
		}
		// Places are freed: the signer may be asked again.
		submit("after", testSigner)
	})
}

// TestCancelSignerRaces runs CancelSigner against Decide and polling, many
// times: each request ends once, as Decide and CancelSigner said.
func TestCancelSignerRaces(t *testing.T) {
	sim := newSim(t, signsim.Options{Delay: -1})
	kv, fin := identity.NewMemKV(), newFinisher(0)
	const n = 60 // per signer; MaxPerSigner is 100
	m := newManager(t, kv, sim.Provider(), fin, func(o *signing.ManagerOptions) {
		o.PollMin, o.PollMax = time.Millisecond, 2*time.Millisecond
	})
	r := run(m)
	defer r.stop(t)
	id := func(signer uint64, i int) string { return strconv.FormatUint(signer, 10) + "-" + strconv.Itoa(i) }
	signers := []uint64{101, 102, 103}
	decided := make(map[string]error)
	var mu sync.Mutex
	var wg sync.WaitGroup
	canceled := make([]int, len(signers))
	for si, signer := range signers {
		for i := range n {
			req := newRequest(id(signer, i), docFor(id(signer, i)))
			req.Signer = signer
			if err := m.Submit(t.Context(), req); err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				err := m.Decide(context.Background(), req.ID, signer, i%3 != 0)
				mu.Lock()
				decided[req.ID] = err
				mu.Unlock()
			})
		}
		wg.Go(func() {
			time.Sleep(time.Duration(si) * time.Millisecond)
			c, err := m.CancelSigner(context.Background(), signer, cancelReason)
			if err != nil {
				t.Error(err)
			}
			canceled[si] = c
		})
	}
	wg.Wait()
	for si, signer := range signers {
		failed := 0
		for i := range n {
			id := id(signer, i)
			waitFor(t, "finish "+id, func() bool { return len(fin.acknowledged(id)) > 0 })
			o := fin.acknowledged(id)[0]
			fin.checkOne(t, id, o.State)
			err := decided[id]
			switch {
			case o.State == signing.Failed && o.Reason == cancelReason:
				failed++
			case err != nil:
				t.Fatalf("%s: Decide = %v, yet it ended %v (%q)", id, err, o.State, o.Reason)
			case i%3 == 0 && o.State != signing.Declined, i%3 != 0 && o.State != signing.Signed:
				t.Fatalf("%s: ended %v (%q)", id, o.State, o.Reason)
			}
			if err != nil && !errors.Is(err, signing.ErrEnded) {
				t.Fatalf("%s: Decide = %v", id, err)
			}
		}
		if failed != canceled[si] {
			t.Fatalf("signer %d: CancelSigner said %d, %d ended canceled", signer, canceled[si], failed)
		}
	}
}

func TestCancelSignerContext(t *testing.T) {
	sim := newSim(t, signsim.Options{})
	m := newManager(t, identity.NewMemKV(), sim.Provider(), newFinisher(0), nil)
	if err := m.Submit(t.Context(), newRequest("x", docFor("x"))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if n, err := m.CancelSigner(ctx, testSigner, cancelReason); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("CancelSigner with an ended context = %d, %v", n, err)
	}
	if n, err := m.CancelSigner(t.Context(), testSigner, ""); n != 1 || err != nil {
		t.Fatalf("CancelSigner = %d, %v", n, err)
	}
	if rec := get(t, m, "x"); rec.Phase != signing.Ended || rec.Outcome.State != signing.Failed || rec.Outcome.Reason == "" {
		t.Fatalf("after CancelSigner: %+v", rec)
	}
}
