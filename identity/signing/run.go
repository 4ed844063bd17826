package signing

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"time"
)

// sweepEvery is how often Run deletes tombstones past Retention.
const sweepEvery = time.Hour

// maxWait caps one sleep of Run, so a clock that jumps is noticed.
const maxWait = time.Minute

// Run works on the requests until ctx ends, then waits for the calls in
// flight and returns nil. It resumes what a previous run left (see the
// package documentation), expires overdue requests, polls the signing
// service with backoff per request, calls Finish for each ended request
// until it succeeds, and deletes tombstones past Retention. At most
// Concurrency provider or Finish calls are in flight. Only one Run may
// work at a time.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer m.running.Store(false)
	sem := make(chan struct{}, m.o.Concurrency)
	done := make(chan struct{})
	inFlight := 0
	defer func() {
		for ; inFlight > 0; inFlight-- {
			<-done
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var nextSweep time.Time
	for {
		now := m.o.Now()
		if !now.Before(nextSweep) {
			m.sweep(now)
			nextSweep = now.Add(sweepEvery)
		}
		wait := min(nextSweep.Sub(now), maxWait)
		for {
			e, until := m.popDue(now)
			if e == nil {
				wait = min(wait, until)
				break
			}
			for acquired := false; !acquired; {
				select {
				case sem <- struct{}{}:
					acquired = true
				case <-done:
					inFlight--
				case <-ctx.Done():
					m.requeue(e, now)
					return nil
				}
			}
			inFlight++
			go func() {
				defer func() { <-sem; done <- struct{}{} }()
				m.step(ctx, e)
			}()
		}
		timer.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		case <-done:
			inFlight--
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// popDue takes the earliest entry due at now off the queue, marking it
// busy; or, when none is due, returns how long until one is.
func (m *Manager) popDue(now time.Time) (*entry, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.queue) == 0 {
		return nil, maxWait
	}
	if e := m.queue[0]; !e.due.After(now) {
		heap.Pop(&m.queue)
		e.busy = true
		return e, 0
	}
	return nil, m.queue[0].due.Sub(now)
}

// requeue puts a busy e back, due at due; done drops it.
func (m *Manager) requeue(e *entry, due time.Time) {
	m.mu.Lock()
	e.busy = false
	if e.kick {
		e.kick = false
		due = m.o.Now()
	}
	if !e.removed {
		e.due = due
		heap.Push(&m.queue, e)
	}
	m.mu.Unlock()
	m.signal()
}

// drop forgets an acknowledged e.
func (m *Manager) drop(e *entry) {
	m.mu.Lock()
	e.busy = false
	m.forgetLocked(e)
	m.mu.Unlock()
}

// step advances e by one move and puts it back in the queue (or drops it).
func (m *Manager) step(ctx context.Context, e *entry) {
	due, done := m.advance(ctx, e)
	if done {
		m.drop(e)
		return
	}
	m.requeue(e, due)
}

// advance makes e's next move: expire it, start it, poll it, or finish
// it. It returns when to look again, or done when e is acknowledged.
func (m *Manager) advance(ctx context.Context, e *entry) (due time.Time, done bool) {
	e.mu.Lock()
	rec, found, err := m.getLocked(e.id)
	if err != nil {
		e.mu.Unlock()
		m.o.Log.Error("signing: read request", "id", e.id, "err", err)
		return m.retryAt(e), false
	}
	if !found {
		e.mu.Unlock()
		return time.Time{}, true
	}
	now := m.o.Now()
	// A request whose operation the service holds gets a last poll first:
	// the person may have signed just before the deadline.
	if rec.Phase < Signing && !now.Before(rec.Request.Expires) {
		if err := m.endLocked(rec, Expired, nil, m.expiredReason(e, rec.Phase), now); err != nil {
			e.mu.Unlock()
			m.o.Log.Error("signing: expire request", "id", e.id, "err", err)
			return m.retryAt(e), false
		}
		e.attempt = 0
	}
	e.mu.Unlock()
	switch rec.Phase {
	case Awaiting:
		return rec.Request.Expires, false
	case Approved:
		return m.start(ctx, e, rec)
	case Signing:
		return m.poll(ctx, e, rec)
	default:
		return m.finish(ctx, e, rec)
	}
}

// expiredReason says why a request in phase expired.
func (m *Manager) expiredReason(e *entry, p Phase) string {
	r := "not decided before the deadline"
	if p != Awaiting {
		r = "not signed before the deadline"
	}
	if e.lastErr != "" {
		r += "; last error: " + e.lastErr
	}
	return r
}

// start asks the signing service to sign rec (Approved).
func (m *Manager) start(ctx context.Context, e *entry, rec *Record) (time.Time, bool) {
	cctx, cancel := context.WithTimeout(ctx, m.o.CallTimeout)
	op, err := m.o.Provider.Start(cctx, Document{
		RequestID: rec.Request.ID, Signer: rec.Request.Person, Title: rec.Request.Title,
		Data: rec.Request.Document, SHA256: rec.Request.SHA256,
	})
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return m.o.Now(), false
		}
		if errors.Is(err, ErrRejected) {
			return m.end(ctx, e, Failed, nil, "the signing service refused the document: "+err.Error())
		}
		return m.providerFailed(e, "start", err), false
	}
	if op == "" {
		return m.providerFailed(e, "start", fmt.Errorf("%w: empty operation", ErrProtocol)), false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	cur, found, err := m.getLocked(e.id)
	if err != nil || !found || cur.Phase != Approved {
		return m.o.Now(), false // changed under us, or unreadable: look again
	}
	cur.Phase, cur.Operation = Signing, op
	if err := m.putLocked(cur); err != nil {
		m.o.Log.Error("signing: record operation", "id", e.id, "err", err)
		return m.retryAt(e), false
	}
	e.attempt, e.lastErr = 0, ""
	return m.o.Now().Add(jitter(m.o.PollMin)), false
}

// poll asks the signing service where rec's operation (Signing) stands.
func (m *Manager) poll(ctx context.Context, e *entry, rec *Record) (time.Time, bool) {
	cctx, cancel := context.WithTimeout(ctx, m.o.CallTimeout)
	st, err := m.o.Provider.Status(cctx, rec.Operation)
	cancel()
	if ctx.Err() != nil {
		return m.o.Now(), false
	}
	now := m.o.Now()
	expired := !now.Before(rec.Request.Expires)
	if err != nil {
		if errors.Is(err, ErrRejected) {
			return m.end(ctx, e, Failed, nil, "the signing service refused the operation: "+err.Error())
		}
		due := m.providerFailed(e, "status", err)
		if expired {
			return m.end(ctx, e, Expired, nil, m.expiredReason(e, Signing))
		}
		return due, false
	}
	switch st.State {
	case Pending:
		if expired {
			return m.end(ctx, e, Expired, nil, m.expiredReason(e, Signing))
		}
		e.attempt++
		return now.Add(jitter(backoff(m.o.PollMin, m.o.PollMax, e.attempt))), false
	case Signed:
		cert, err := Verify(rec.Request.Document, st.Signature, m.o.Roots, now)
		if err == nil {
			err = CheckSigner(cert, rec.Request.Person, m.o.RequireSNILS)
		}
		if err != nil {
			m.o.Log.Warn("signing: signature refused", "id", e.id, "err", err)
			return m.end(ctx, e, Failed, nil, "the signature was refused: "+err.Error())
		}
		return m.end(ctx, e, Signed, st.Signature, "")
	case Declined, Expired, Failed:
		reason := st.Reason
		if reason == "" {
			reason = st.State.String() + " at the signing service"
		}
		return m.end(ctx, e, st.State, nil, reason)
	default:
		return m.providerFailed(e, "status", fmt.Errorf("%w: state %v", ErrProtocol, st.State)), false
	}
}

// providerFailed notes a failed call and returns when to retry.
func (m *Manager) providerFailed(e *entry, call string, err error) time.Time {
	m.providerErrors.Inc()
	e.lastErr = err.Error()
	if len(e.lastErr) > maxReasonLen/2 {
		e.lastErr = e.lastErr[:maxReasonLen/2]
	}
	m.o.Log.Warn("signing: provider call failed", "id", e.id, "call", call, "err", err)
	return m.retryAt(e)
}

// retryAt returns when to retry e after a failure, backing off.
func (m *Manager) retryAt(e *entry) time.Time {
	d := jitter(backoff(m.o.PollMin, m.o.PollMax, e.attempt))
	e.attempt++
	return m.o.Now().Add(d)
}

// end persists e's outcome (unless it already ended: the first outcome
// stays) and finishes it.
func (m *Manager) end(ctx context.Context, e *entry, st State, sig []byte, reason string) (time.Time, bool) {
	e.mu.Lock()
	rec, found, err := m.getLocked(e.id)
	if err == nil && found && rec.Phase != Ended {
		err = m.endLocked(rec, st, sig, reason, m.o.Now())
	}
	e.mu.Unlock()
	if err != nil {
		m.o.Log.Error("signing: end request", "id", e.id, "err", err)
		return m.retryAt(e), false
	}
	if !found {
		return time.Time{}, true
	}
	e.attempt = 0
	return m.finish(ctx, e, rec)
}

// finish calls Finish with rec's outcome (Ended) and, once it returns
// nil, replaces the record with its tombstone.
func (m *Manager) finish(ctx context.Context, e *entry, rec *Record) (time.Time, bool) {
	cctx, cancel := context.WithTimeout(ctx, m.o.CallTimeout)
	err := m.o.Finish(cctx, *rec.Outcome)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return m.o.Now(), false
		}
		m.finishErrors.Inc()
		m.o.Log.Warn("signing: finish failed", "id", e.id, "err", err)
		return m.retryAt(e), false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	tomb := *rec
	tomb.Request.Document = nil
	tomb.Outcome.Request.Document = nil
	b, err := encodeRecord(&tomb)
	if err == nil {
		if err = m.o.KV.Set(tombstoneKey(e.id), b); err == nil {
			err = m.o.KV.Delete(recordKey(e.id))
		}
	}
	if err != nil {
		// The record stays; a later step or start sees the tombstone (if
		// written) and deletes it, or calls Finish again.
		m.kvErrors.Inc()
		m.o.Log.Error("signing: acknowledge request", "id", e.id, "err", err)
		return m.retryAt(e), false
	}
	m.drop(e) // under e.mu: a Decide waiting for it finds the entry gone
	return time.Time{}, true
}

// sweep deletes tombstones whose outcome is older than Retention.
func (m *Manager) sweep(now time.Time) {
	const batch = 10000
	var old [][]byte
	err := m.o.KV.Scan([]byte(tombstonePrefix), func(key, value []byte) (bool, error) {
		rec, err := decodeRecord(value)
		if err == nil && rec.Outcome == nil {
			err = fmt.Errorf("signing: tombstone in phase %v", rec.Phase)
		}
		if err != nil {
			m.o.Log.Error("signing: sweep: bad tombstone, deleting it", "key", string(key), "err", err)
			old = append(old, key)
		} else if now.Sub(rec.Outcome.At) > m.o.Retention {
			old = append(old, key)
		}
		return len(old) < batch, nil
	})
	if err != nil {
		m.kvErrors.Inc()
		m.o.Log.Error("signing: sweep tombstones", "err", err)
	}
	for _, key := range old {
		if err := m.o.KV.Delete(key); err != nil {
			m.kvErrors.Inc()
			m.o.Log.Error("signing: sweep tombstones", "err", err)
			return
		}
	}
}

// entryQueue is a min-heap of entries by due time.
type entryQueue []*entry

func (q entryQueue) Len() int           { return len(q) }
func (q entryQueue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q entryQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *entryQueue) Push(x any) {
	e := x.(*entry)
	e.index = len(*q)
	*q = append(*q, e)
}
func (q *entryQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*q = old[:len(old)-1]
	return e
}
