package signing

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gonets/gonets/identity"
)

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	// KV keeps the requests: documents and the signers' identifiers, so
	// give it a sealed table (identity.Accounts.Table). Keys hold only
	// request IDs. Required.
	KV identity.KV
	// Provider is the signing service. Required.
	Provider Provider
	// Finish is called for each request that ended, with its outcome; the
	// node posts the result into the chat. It must be idempotent (the node
	// posts with a client message id derived from the request): after a
	// crash it is called again until it returns nil, always with the same
	// outcome. Required.
	Finish func(ctx context.Context, o Outcome) error
	// Expiry is how long a request may wait for its signature; past it
	// the request ends Expired. Default: 24 h.
	Expiry time.Duration
	// PollMin and PollMax bound the wait between polls of the signing
	// service, and between retries of a failed call or Finish: PollMin
	// doubling up to PollMax, each wait jittered to between half and all
	// of it. Defaults: 1 s and 30 s.
	PollMin, PollMax time.Duration
	// CallTimeout bounds one Provider call or Finish. Default: 1 min.
	CallTimeout time.Duration
	// Concurrency caps the provider calls (and Finish calls) in flight.
	// Default: 8.
	Concurrency int
	// MaxPending caps the requests not yet acknowledged; Submit refuses
	// beyond with ErrTooMany. Default: 100,000.
	MaxPending int
	// MaxPerRequester caps the requests not yet acknowledged that one
	// user asked for; Submit refuses beyond with ErrTooMany. Default:
	// 1,000.
	MaxPerRequester int
	// MaxPerSigner caps the requests not yet acknowledged that one user
	// is asked to sign; Submit refuses beyond with ErrTooMany. Default:
	// 100.
	MaxPerSigner int
	// MaxDocument caps a document in bytes. Default: 1 MiB.
	MaxDocument int
	// Retention is how long a tombstone (an acknowledged request, without
	// its document) is kept, so Get and a late Decide answer ErrEnded.
	// Default: 30 days.
	Retention time.Duration
	// Roots, when set, are the CAs a signature's certificate must chain
	// to; when nil only the signature's integrity over the document is
	// checked (see Verify).
	Roots *x509.CertPool
	// RequireSNILS refuses a signature whose certificate carries no SNILS
	// (see CheckSigner): the request ends Failed. A certificate that
	// carries one must match the signer's whatever this says. Production
	// deployments behind a qualified-signature provider, whose
	// certificates always carry the holder's SNILS, should set it (and
	// Roots). Default: false, a certificate without a SNILS passes.
	RequireSNILS bool
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Log receives lifecycle lines and errors; never a document or a
	// person's identifiers. Default: slog.Default().
	Log *slog.Logger
	// Metrics receives the gonets_signing_* metrics. Default: a set of its
	// own.
	Metrics *metrics.Set
}

// Manager runs the node's signing requests, durably, from Submit to the
// acknowledged Finish. See the package documentation for the state
// machine. Safe for concurrent use.
type Manager struct {
	o       ManagerOptions
	wake    chan struct{} // capacity 1: something became due
	running atomic.Bool

	submitted, finishErrors, providerErrors, kvErrors *metrics.Counter

	mu           sync.Mutex // guards the following
	pending      map[string]*entry
	queue        entryQueue
	perRequester map[uint64]int // pending entries by requester
	perSigner    map[uint64]int // pending entries by signer
}

// entry is a request not yet acknowledged: all the manager keeps of it in
// memory. Its transitions are made under mu; the step that works on it
// (busy) owns attempt and lastErr.
type entry struct {
	id        string
	requester uint64     // counted in Manager.perRequester while pending
	signer    uint64     // counted in Manager.perSigner while pending
	mu        sync.Mutex // serializes the request's reads and writes in the KV; taken before Manager.mu

	// Guarded by Manager.mu.
	due     time.Time
	index   int  // in Manager.queue; -1 when not queued
	busy    bool // a step is working on it
	kick    bool // made due while busy: requeue at once
	removed bool // acknowledged, or its Submit failed

	// Owned by the busy step.
	attempt int    // consecutive failed calls, for backoff
	lastErr string // the last provider error, for an Expired reason
}

// Defaults and limits.
const (
	defaultExpiry    = 24 * time.Hour
	defaultRetention = 30 * 24 * time.Hour
	maxIDLen         = 128
	maxTitleLen      = 1024
	maxReasonLen     = 512
)

// NewManager validates o, fills defaults and loads the requests not yet
// acknowledged from the KV. Call Run to work on them.
func NewManager(o ManagerOptions) (*Manager, error) {
	if o.KV == nil || o.Provider == nil || o.Finish == nil {
		return nil, fmt.Errorf("%w: KV, Provider and Finish are required", ErrConfig)
	}
	if o.Expiry == 0 {
		o.Expiry = defaultExpiry
	}
	if o.PollMin == 0 {
		o.PollMin = time.Second
	}
	if o.PollMax == 0 {
		o.PollMax = max(30*time.Second, o.PollMin)
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = time.Minute
	}
	if o.Concurrency == 0 {
		o.Concurrency = 8
	}
	if o.MaxPending == 0 {
		o.MaxPending = 100000
	}
	if o.MaxPerRequester == 0 {
		o.MaxPerRequester = 1000
	}
	if o.MaxPerSigner == 0 {
		o.MaxPerSigner = 100
	}
	if o.MaxDocument == 0 {
		o.MaxDocument = 1 << 20
	}
	if o.Retention == 0 {
		o.Retention = defaultRetention
	}
	if o.Expiry < 0 || o.PollMin < 0 || o.PollMax < o.PollMin || o.CallTimeout < 0 ||
		o.Concurrency < 0 || o.MaxPending < 0 || o.MaxPerRequester < 0 || o.MaxPerSigner < 0 ||
		o.MaxDocument < 0 || o.Retention < 0 {
		return nil, fmt.Errorf("%w: negative duration or limit, or PollMax below PollMin", ErrConfig)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	m := &Manager{
		o:              o,
		wake:           make(chan struct{}, 1),
		pending:        make(map[string]*entry),
		perRequester:   make(map[uint64]int),
		perSigner:      make(map[uint64]int),
		submitted:      o.Metrics.GetOrCreateCounter("gonets_signing_submitted_total"),
		finishErrors:   o.Metrics.GetOrCreateCounter("gonets_signing_finish_errors_total"),
		providerErrors: o.Metrics.GetOrCreateCounter("gonets_signing_provider_errors_total"),
		kvErrors:       o.Metrics.GetOrCreateCounter("gonets_signing_kv_errors_total"),
	}
	for _, st := range []State{Signed, Declined, Expired, Failed} {
		o.Metrics.GetOrCreateCounter(`gonets_signing_ended_total{state="` + st.String() + `"}`)
	}
	o.Metrics.GetOrCreateGauge("gonets_signing_pending_requests", func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		return float64(len(m.pending))
	})
	if err := m.load(); err != nil {
		return nil, err
	}
	return m, nil
}

// load puts every unacknowledged record in the KV in memory, due at once
// unless it awaits the signer's decision. It reads the heads in one Scan
// and looks for tombstones after it: no KV call is made inside a Scan
// callback (a table may hold a read lock for the Scan, and a writer
// waiting between it and a nested read would deadlock them).
func (m *Manager) load() error {
	now := m.o.Now()
	var heads []storedHead
	err := m.o.KV.Scan([]byte(recordPrefix), func(key, value []byte) (bool, error) {
		var h storedHead
		if err := json.Unmarshal(value, &h); err != nil {
			return false, fmt.Errorf("signing: load %q: %w", key, err)
		}
		heads = append(heads, h)
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, h := range heads {
		id := h.Request.ID
		if _, found, err := m.o.KV.Get(tombstoneKey(id)); err != nil {
			return fmt.Errorf("signing: load %q: %w", id, err)
		} else if found { // acknowledged, then the node stopped before deleting the record
			if err := m.o.KV.Delete(recordKey(id)); err != nil {
				return fmt.Errorf("signing: load: delete acknowledged %q: %w", id, err)
			}
			continue
		}
		e := &entry{id: id, requester: h.Request.Requester, signer: h.Request.Signer, index: -1, due: now}
		if h.Phase == Awaiting && now.Before(h.Request.Expires) {
			e.due = h.Request.Expires
		}
		m.pending[id] = e
		m.perRequester[e.requester]++
		m.perSigner[e.signer]++
		heap.Push(&m.queue, e)
	}
	if n := len(m.pending); n > 0 {
		m.o.Log.Info("signing: resumed requests", "pending", n)
	}
	return nil
}

// Submit validates r and persists it, awaiting the signer's decision; it
// is durable when Submit returns nil. Submitting an ID again, pending or
// ended within Retention, is a no-op returning nil (the first request
// stays, whatever the second holds). Refusals: ErrBadRequest (no ID or
// one over 128 bytes, no chat, requester, signer or person, a title over
// 1 KiB, an empty document, a deadline already past), ErrHashMismatch,
// ErrTooLarge, ErrTooMany (MaxPending, MaxPerRequester or MaxPerSigner
// reached).
func (m *Manager) Submit(ctx context.Context, r Request) error {
	now := m.o.Now()
	if err := m.validate(&r, now); err != nil {
		return err
	}
	r.Document = append([]byte(nil), r.Document...)
	for {
		e, created, err := m.reserve(&r)
		if err != nil {
			return err
		}
		// e.mu is held.
		if !created {
			m.mu.Lock()
			removed := e.removed
			m.mu.Unlock()
			e.mu.Unlock()
			if removed { // its Submit failed, or it was acknowledged: look again
				continue
			}
			return nil
		}
		err = m.submitLocked(e, &r)
		e.mu.Unlock()
		return err
	}
}

// reserve returns r's entry with its mu held, creating it (created true)
// when there is none and MaxPending, MaxPerRequester and MaxPerSigner
// allow.
func (m *Manager) reserve(r *Request) (*entry, bool, error) {
	m.mu.Lock()
	if e, ok := m.pending[r.ID]; ok {
		m.mu.Unlock()
		e.mu.Lock()
		return e, false, nil
	}
	var err error
	switch {
	case len(m.pending) >= m.o.MaxPending:
		err = fmt.Errorf("%w: %d awaiting", ErrTooMany, m.o.MaxPending)
	case m.perRequester[r.Requester] >= m.o.MaxPerRequester:
		err = fmt.Errorf("%w: the requester has %d awaiting (MaxPerRequester)", ErrTooMany, m.o.MaxPerRequester)
	case m.perSigner[r.Signer] >= m.o.MaxPerSigner:
		err = fmt.Errorf("%w: the signer has %d awaiting (MaxPerSigner)", ErrTooMany, m.o.MaxPerSigner)
	}
	if err != nil {
		m.mu.Unlock()
		return nil, false, err
	}
	e := &entry{id: r.ID, requester: r.Requester, signer: r.Signer, index: -1, busy: true}
	e.mu.Lock() // new: nobody else can hold it
	m.pending[r.ID] = e
	m.perRequester[r.Requester]++
	m.perSigner[r.Signer]++
	m.mu.Unlock()
	return e, true, nil
}

// forgetLocked removes e from the pending set and its counts; m.mu is
// held and e is not queued.
func (m *Manager) forgetLocked(e *entry) {
	if e.removed {
		return
	}
	e.removed = true
	delete(m.pending, e.id)
	for _, c := range []struct {
		counts map[uint64]int
		user   uint64
	}{{m.perRequester, e.requester}, {m.perSigner, e.signer}} {
		if c.counts[c.user]--; c.counts[c.user] <= 0 {
			delete(c.counts, c.user)
		}
	}
}

// submitLocked persists r under its new entry e, or drops e when r's ID
// is already known in the KV (an acknowledged request) or on error.
func (m *Manager) submitLocked(e *entry, r *Request) error {
	drop := func() {
		m.mu.Lock()
		m.forgetLocked(e)
		m.mu.Unlock()
	}
	for _, key := range [][]byte{tombstoneKey(r.ID), recordKey(r.ID)} {
		_, found, err := m.o.KV.Get(key)
		if err != nil {
			drop()
			m.kvErrors.Inc()
			return fmt.Errorf("signing: submit %q: %w", r.ID, err)
		}
		if found {
			drop()
			return nil
		}
	}
	if err := m.putLocked(&Record{Request: *r, Phase: Awaiting}); err != nil {
		drop()
		return fmt.Errorf("signing: submit: %w", err)
	}
	m.submitted.Inc()
	m.mu.Lock()
	e.busy = false
	e.due = r.Expires
	heap.Push(&m.queue, e)
	m.mu.Unlock()
	m.signal()
	return nil
}

// validate checks r and fills Created and Expires.
func (m *Manager) validate(r *Request, now time.Time) error {
	switch {
	case r.ID == "" || len(r.ID) > maxIDLen:
		return fmt.Errorf("%w: id of %d bytes", ErrBadRequest, len(r.ID))
	case r.Chat == 0 || r.Requester == 0 || r.Signer == 0:
		return fmt.Errorf("%w: %q: chat, requester and signer are required", ErrBadRequest, r.ID)
	case r.Person.OID == "":
		return fmt.Errorf("%w: %q: the signer's person is unknown", ErrBadRequest, r.ID)
	case len(r.Title) > maxTitleLen:
		return fmt.Errorf("%w: %q: title over %d bytes", ErrBadRequest, r.ID, maxTitleLen)
	case len(r.Document) == 0:
		return fmt.Errorf("%w: %q: empty document", ErrBadRequest, r.ID)
	case len(r.Document) > m.o.MaxDocument:
		return fmt.Errorf("%w: %q: %d bytes, limit %d", ErrTooLarge, r.ID, len(r.Document), m.o.MaxDocument)
	case sha256.Sum256(r.Document) != r.SHA256:
		return fmt.Errorf("%w: %q", ErrHashMismatch, r.ID)
	}
	if r.Created.IsZero() {
		r.Created = now
	}
	if r.Expires.IsZero() {
		r.Expires = r.Created.Add(m.o.Expiry)
	}
	if !r.Expires.After(now) {
		return fmt.Errorf("%w: %q: expires %v, before now", ErrBadRequest, r.ID, r.Expires)
	}
	return nil
}

// Decide records the signer's decision from their device. Approving
// persists Approved and hands the request to Run, which starts the
// signature; declining ends the request Declined without a call to the
// signing service. Refusals: ErrUnknownRequest, ErrNotSigner (user is
// not the signer), ErrEnded (already approved, or ended: the message
// says which).
func (m *Manager) Decide(ctx context.Context, id string, user uint64, approve bool) error {
	for {
		m.mu.Lock()
		e := m.pending[id]
		m.mu.Unlock()
		if e == nil {
			return m.decideGone(id, user)
		}
		e.mu.Lock()
		m.mu.Lock()
		removed := e.removed
		m.mu.Unlock()
		if removed {
			e.mu.Unlock()
			continue
		}
		err := m.decideLocked(e, user, approve)
		e.mu.Unlock()
		return err
	}
}

// decideGone answers Decide for a request not in memory: acknowledged
// (a tombstone) or unknown.
func (m *Manager) decideGone(id string, user uint64) error {
	b, found, err := m.o.KV.Get(tombstoneKey(id))
	if err != nil {
		return fmt.Errorf("signing: decide %q: %w", id, err)
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrUnknownRequest, id)
	}
	rec, err := decodeRecord(b)
	if err != nil {
		return err
	}
	if rec.Request.Signer != user {
		return fmt.Errorf("%w: %q", ErrNotSigner, id)
	}
	if rec.Outcome == nil {
		return fmt.Errorf("%w: %q ended", ErrEnded, id)
	}
	return fmt.Errorf("%w: %q ended %v", ErrEnded, id, rec.Outcome.State)
}

func (m *Manager) decideLocked(e *entry, user uint64, approve bool) error {
	rec, found, err := m.getLocked(e.id)
	if err != nil {
		return fmt.Errorf("signing: decide: %w", err)
	}
	if !found { // acknowledged just now, or its Submit failed
		return m.decideGone(e.id, user)
	}
	if rec.Request.Signer != user {
		return fmt.Errorf("%w: %q", ErrNotSigner, e.id)
	}
	switch rec.Phase {
	case Approved, Signing:
		return fmt.Errorf("%w: %q already approved", ErrEnded, e.id)
	case Ended:
		return fmt.Errorf("%w: %q ended %v", ErrEnded, e.id, rec.Outcome.State)
	}
	now := m.o.Now()
	switch {
	case !now.Before(rec.Request.Expires):
		if err := m.endLocked(rec, Expired, nil, "not decided before the deadline", now); err != nil {
			return fmt.Errorf("signing: decide: %w", err)
		}
		m.kickLocked(e)
		return fmt.Errorf("%w: %q ended %v", ErrEnded, e.id, Expired)
	case approve:
		rec.Phase = Approved
		if err := m.putLocked(rec); err != nil {
			return fmt.Errorf("signing: decide: %w", err)
		}
	default:
		if err := m.endLocked(rec, Declined, nil, "declined by the signer", now); err != nil {
			return fmt.Errorf("signing: decide: %w", err)
		}
	}
	m.kickLocked(e)
	return nil
}

// CancelSigner ends every request of signer that has not ended yet as
// Failed with reason (for when the signer's state account is unlinked),
// and returns how many it ended. Each is finished by Run as usual: Finish
// is called with this outcome until it returns nil. A request that
// already ended (by Decide, a poll, or its deadline) keeps its outcome,
// and one ended here cannot end otherwise: the change is made under the
// request's mutex, as every transition is. An operation the signing
// service holds is not withdrawn there (the API has no call for it); a
// signature it produces later is ignored. Requests submitted while
// CancelSigner works may be left pending. It stops early, returning
// ctx's error with the count so far, when ctx ends.
func (m *Manager) CancelSigner(ctx context.Context, signer uint64, reason string) (int, error) {
	if reason == "" {
		reason = "canceled"
	}
	m.mu.Lock()
	var es []*entry
	for _, e := range m.pending {
		if e.signer == signer {
			es = append(es, e)
		}
	}
	m.mu.Unlock()
	n := 0
	for _, e := range es {
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("signing: cancel signer: %w", err)
		}
		ended, err := m.cancel(e, reason)
		if err != nil {
			return n, fmt.Errorf("signing: cancel signer: %w", err)
		}
		if ended {
			n++
		}
	}
	if n > 0 {
		m.o.Log.Info("signing: canceled the signer's requests", "requests", n)
	}
	return n, nil
}

// cancel ends e Failed with reason unless it already ended or is gone.
func (m *Manager) cancel(e *entry, reason string) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m.mu.Lock()
	removed := e.removed
	m.mu.Unlock()
	if removed {
		return false, nil
	}
	rec, found, err := m.getLocked(e.id)
	if err != nil {
		return false, err
	}
	if !found || rec.Phase == Ended {
		return false, nil
	}
	if err := m.endLocked(rec, Failed, nil, reason, m.o.Now()); err != nil {
		return false, err
	}
	m.kickLocked(e)
	return true, nil
}

// kickLocked makes e due at once; e.mu is held.
func (m *Manager) kickLocked(e *entry) {
	m.mu.Lock()
	if e.busy {
		e.kick = true
	} else if !e.removed {
		e.due = m.o.Now()
		if e.index >= 0 {
			heap.Fix(&m.queue, e.index)
		} else {
			heap.Push(&m.queue, e)
		}
	}
	m.mu.Unlock()
	m.signal()
}

// signal wakes Run.
func (m *Manager) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Get returns the request id as the manager keeps it: pending, ended, or
// an acknowledged tombstone (without the document).
func (m *Manager) Get(id string) (Record, bool, error) {
	for _, key := range [][]byte{recordKey(id), tombstoneKey(id)} {
		b, found, err := m.o.KV.Get(key)
		if err != nil {
			return Record{}, false, fmt.Errorf("signing: get %q: %w", id, err)
		}
		if !found {
			continue
		}
		rec, err := decodeRecord(b)
		if err != nil {
			return Record{}, false, err
		}
		rec.Acknowledged = key[len("signing/")] == 't'
		return *rec, true, nil
	}
	return Record{}, false, nil
}

// getLocked reads id's unacknowledged record; the entry's mu is held.
func (m *Manager) getLocked(id string) (*Record, bool, error) {
	b, found, err := m.o.KV.Get(recordKey(id))
	if err != nil || !found {
		if err != nil {
			m.kvErrors.Inc()
		}
		return nil, false, err
	}
	rec, err := decodeRecord(b)
	return rec, err == nil, err
}

// putLocked writes rec; the entry's mu is held.
func (m *Manager) putLocked(rec *Record) error {
	b, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	if err := m.o.KV.Set(recordKey(rec.Request.ID), b); err != nil {
		m.kvErrors.Inc()
		return fmt.Errorf("signing: write %q: %w", rec.Request.ID, err)
	}
	return nil
}

// endLocked persists rec as ended with the outcome; the entry's mu is
// held and rec is not ended.
func (m *Manager) endLocked(rec *Record, st State, sig []byte, reason string, now time.Time) error {
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	next := *rec
	next.Phase = Ended
	next.Outcome = &Outcome{Request: rec.Request, State: st, Signature: sig, Reason: reason, At: now}
	if err := m.putLocked(&next); err != nil {
		return err
	}
	*rec = next
	m.o.Metrics.GetOrCreateCounter(`gonets_signing_ended_total{state="` + st.String() + `"}`).Inc()
	m.o.Log.Info("signing: request ended", "id", rec.Request.ID, "state", st.String(), "reason", reason)
	return nil
}
