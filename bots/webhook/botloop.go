package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	neturl "net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gonets/gonets/bots/botapi"
)

// SecretHeader is the header that carries a subscription's secret.
const SecretHeader = "X-Max-Bot-Api-Secret"

const (
	// batchLimit is the most updates read at once.
	batchLimit = 100
	// pollTimeout is how long a read waits for the first update.
	pollTimeout = 30 * time.Second
	// firstBackoff is the wait after a first failure.
	firstBackoff = time.Second
	// maxDrain is the most of a response body read before closing it.
	maxDrain = 4 << 10
)

var (
	// errWoken ends a read of updates when the bot's subscriptions change.
	errWoken = errors.New("webhook: subscriptions changed")
	// errUnsubscribed ends a request whose subscription was removed.
	errUnsubscribed = errors.New("webhook: unsubscribed")
)

// botLoop delivers one bot's updates: it reads a batch from the Source,
// posts each update in order to the subscriptions that take it, and
// acknowledges the batch by reading the next one. It ends with Run's
// ctx, or when the bot has no subscription left.
type botLoop struct {
	d   *Deliverer
	bot int64

	// eps is the state of each webhook, by URL; only run uses the map.
	eps map[string]*endpoint

	mu         sync.Mutex         // guards the following
	changed    chan struct{}      // closed and replaced by wake
	cancelPoll context.CancelFunc // ends the read in progress, if any
}

func newBotLoop(d *Deliverer, bot int64) *botLoop {
	return &botLoop{d: d, bot: bot, changed: make(chan struct{})}
}

// wake tells the loop that the bot's subscriptions changed: a read of
// updates ends, a wait between attempts ends early.
func (l *botLoop) wake() {
	l.mu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	if l.cancelPoll != nil {
		l.cancelPoll()
	}
	l.mu.Unlock()
}

// generation returns the channel the next wake closes.
func (l *botLoop) generation() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

func (l *botLoop) run(ctx context.Context) {
	defer l.d.exit(l)
	var (
		marker   int64 // 0: from the last acknowledged update
		pending  bool  // marker acknowledges a delivered batch: read with it
		failures int
	)
	for ctx.Err() == nil {
		gen := l.generation()
		if !l.d.o.Store.Active(l.bot) {
			if pending {
				l.ack(ctx, marker)
				pending = false
			}
			if l.d.exitIfIdle(l) {
				return
			}
			continue
		}
		list, err := l.poll(ctx, gen, marker)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errWoken):
			continue
		case err != nil:
			l.d.o.Log.Warn("webhook: read updates", "bot", l.bot, "err", err)
			l.sleep(ctx, gen, l.d.backoff(failures, 0))
			failures++
			continue
		}
		failures, pending = 0, false
		if len(list.Updates) == 0 {
			if list.Marker != 0 {
				marker = list.Marker
			}
			continue
		}
		if l.deliverBatch(ctx, list.Updates) {
			marker, pending = list.Marker, true
		} else {
			// Not acknowledged: read again from the last acknowledged
			// update, even if the bot subscribes again before the next
			// read.
			marker = 0
		}
	}
}

// poll reads the next batch, acknowledging those before marker. A wake
// since gen ends it with errWoken.
func (l *botLoop) poll(ctx context.Context, gen <-chan struct{}, marker int64) (botapi.UpdateList, error) {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	l.mu.Lock()
	select {
	case <-gen:
		l.mu.Unlock()
		return botapi.UpdateList{}, errWoken
	default:
	}
	l.cancelPoll = func() { cancel(errWoken) }
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.cancelPoll = nil
		l.mu.Unlock()
	}()
	list, err := l.d.o.Source.Updates(pctx, l.bot, marker, batchLimit, nil, pollTimeout)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(pctx), errWoken) {
		return list, errWoken
	}
	return list, err
}

// ack acknowledges the updates before marker, on the way out.
func (l *botLoop) ack(ctx context.Context, marker int64) {
	actx, cancel := context.WithTimeout(ctx, l.d.o.RequestTimeout)
	defer cancel()
	if _, err := l.d.o.Source.Updates(actx, l.bot, marker, 1, nil, 0); err != nil && ctx.Err() == nil {
		l.d.o.Log.Warn("webhook: acknowledge updates", "bot", l.bot, "err", err)
	}
}

// outcome is how one update's delivery to one webhook ended.
type outcome int

const (
	// delivered: the webhook answered 2xx.
	delivered outcome = iota
	// skipped: the subscription does not take the update's type.
	skipped
	// givenUp: dropped for the webhook, counted in GivenUp.
	givenUp
	// abandoned: the subscription was removed, or ctx ended, before the
	// update was delivered or given up.
	abandoned
)

// deliverBatch delivers updates to each of the bot's subscriptions at
// once, in order for each, and says whether the batch is done: at least
// one subscription delivered, skipped or gave up each update. A
// subscription that fails does not hold the others back beyond the
// batch. It is not done when ctx ends or every subscription abandoned
// it (the bot unsubscribed): the batch is then not acknowledged, and
// the next read (or long polling) gets it again.
func (l *botLoop) deliverBatch(ctx context.Context, updates []botapi.Update) bool {
	recs := l.d.o.Store.records(l.bot)
	if len(recs) == 0 {
		return false
	}
	bodies := make([][]byte, len(updates))
	for i := range updates {
		b, err := json.Marshal(&updates[i])
		if err != nil {
			l.d.o.Log.Error("webhook: encode update", "bot", l.bot, "type", updates[i].UpdateType, "err", err)
			continue
		}
		bodies[i] = b
	}
	eps := l.endpoints(recs)
	done := make([]bool, len(eps))
	if len(eps) == 1 {
		done[0] = l.deliverAll(ctx, eps[0], updates, bodies)
	} else {
		var wg sync.WaitGroup
		for i, ep := range eps {
			wg.Go(func() { done[i] = l.deliverAll(ctx, ep, updates, bodies) })
		}
		wg.Wait()
	}
	return ctx.Err() == nil && slices.Contains(done, true)
}

// endpoints returns the state of each of recs' webhooks, kept from the
// last batch, and forgets those of webhooks no longer subscribed.
func (l *botLoop) endpoints(recs []record) []*endpoint {
	eps := make([]*endpoint, len(recs))
	kept := make(map[string]*endpoint, len(recs))
	for i, r := range recs {
		ep := l.eps[r.URL]
		if ep == nil {
			ep = &endpoint{url: r.URL, time: r.Time}
		}
		ep.reset(r)
		eps[i], kept[r.URL] = ep, ep
	}
	l.eps = kept
	return eps
}

// deliverAll delivers updates, whose encodings are bodies (nil for one
// that could not be encoded), in order to ep's webhook, and says
// whether it did not abandon them.
func (l *botLoop) deliverAll(ctx context.Context, ep *endpoint, updates []botapi.Update, bodies [][]byte) bool {
	for i := range updates {
		if ctx.Err() != nil {
			return false
		}
		if bodies[i] == nil {
			if r, ok := l.d.o.Store.lookup(l.bot, ep.url); ok && r.wants(updates[i].UpdateType) {
				l.d.givenUp.Add(1)
			}
			continue
		}
		if l.deliverTo(ctx, ep, updates[i].UpdateType, bodies[i]) == abandoned {
			return false
		}
	}
	return true
}

// deliverTo posts body, an update of typ, to ep's subscription until it
// answers 2xx, GiveUpAfter passes, ctx ends, or the subscription no
// longer takes it. Each attempt uses the subscription as it is then (a
// new secret applies at once). To a webhook given up on (ep.open) it
// makes one attempt, a probe, at most every MaxBackoff, and gives the
// other updates up at once. A webhook failing for DisableAfter is
// unsubscribed.
func (l *botLoop) deliverTo(ctx context.Context, ep *endpoint, typ string, body []byte) outcome {
	first := l.d.o.Now()
	for attempt := 0; ; attempt++ {
		gen := l.generation()
		r, ok := l.d.o.Store.lookup(l.bot, ep.url)
		if !ok {
			return abandoned
		}
		if !r.wants(typ) {
			return skipped
		}
		ep.reset(r)
		probe := ep.open
		if probe {
			if now := l.d.o.Now(); now.Before(ep.probeAt) {
				l.d.givenUp.Add(1)
				l.disableIfDead(ep, r, now)
				return givenUp
			}
		}
		sctx, stop := l.whileSubscribed(ctx, ep.url, gen)
		retryAfter, permanent, err := l.d.post(sctx, r, body)
		stop()
		if err == nil {
			l.d.delivered.Add(1)
			if ep.succeeded() {
				l.d.o.Log.Info("webhook: webhook answers again", "bot", l.bot, "host", hostOf(ep.url))
			}
			return delivered
		}
		if ctx.Err() != nil || errors.Is(context.Cause(sctx), errUnsubscribed) {
			return abandoned
		}
		now := l.d.o.Now()
		l.d.failed.Add(1)
		ep.failed(now)
		l.d.o.Log.Debug("webhook: delivery failed", "bot", l.bot, "type", typ, "attempt", attempt+1, "err", err)
		if l.disableIfDead(ep, r, now) {
			l.d.givenUp.Add(1)
			return givenUp
		}
		if permanent || probe || now.Sub(first) >= l.d.o.GiveUpAfter {
			if ep.gaveUp(now, l.d.o.MaxBackoff) {
				l.d.o.Log.Warn("webhook: update dropped; the webhook's next updates are dropped until it answers",
					"bot", l.bot, "type", typ, "attempts", attempt+1, "err", err)
			}
			l.d.givenUp.Add(1) // after the log, for those who wait for it
			return givenUp
		}
		if !l.sleep(ctx, gen, l.d.backoff(attempt, retryAfter)) {
			return abandoned
		}
	}
}

// disableIfDead unsubscribes r, ep's subscription, if it has been
// failing for DisableAfter at now; it says whether it did.
func (l *botLoop) disableIfDead(ep *endpoint, r record, now time.Time) bool {
	if l.d.o.DisableAfter < 0 || ep.failingSince.IsZero() ||
		now.Sub(ep.failingSince) < l.d.o.DisableAfter {
		return false
	}
	removed, err := l.d.o.Store.removeRecord(l.bot, r)
	if err != nil {
		l.d.o.Log.Error("webhook: remove a failing subscription", "bot", l.bot, "host", hostOf(r.URL), "err", err)
		return false
	}
	if removed {
		l.d.disabled.Add(1)
		l.d.o.Log.Warn("webhook: subscription removed: its webhook failed for too long",
			"bot", l.bot, "host", hostOf(r.URL), "failing_since", ep.failingSince)
	}
	return removed
}

// whileSubscribed returns a context that ends with ctx or when the
// bot's subscription of url is removed (seen at a wake since gen), so
// that an unsubscribe ends a request in flight. stop ends it and waits
// for the goroutine that watches.
func (l *botLoop) whileSubscribed(ctx context.Context, url string, gen <-chan struct{}) (_ context.Context, stop func()) {
	sctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-sctx.Done():
				return
			case <-gen:
				gen = l.generation()
				if _, ok := l.d.o.Store.lookup(l.bot, url); !ok {
					cancel(errUnsubscribed)
					return
				}
			}
		}
	}()
	return sctx, func() {
		cancel(nil)
		<-done
	}
}

// sleep waits for d, a wake since gen, or the end of ctx (false).
func (l *botLoop) sleep(ctx context.Context, gen <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-gen:
	case <-t.C:
	}
	return true
}

// backoff is the wait after failure number attempt (from 0): from 1 s
// doubling up to MaxBackoff, half of it random, or the endpoint's
// Retry-After if longer (capped as well).
func (d *Deliverer) backoff(attempt int, retryAfter time.Duration) time.Duration {
	b := min(firstBackoff, d.o.MaxBackoff)
	for i := 0; i < attempt && b < d.o.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.o.MaxBackoff)
	b = b/2 + rand.N(b/2+1)
	if retryAfter > b {
		b = min(retryAfter, d.o.MaxBackoff)
	}
	return b
}

// post makes one attempt to deliver body to r. permanent reports an
// error no retry can fix: a URL this Deliverer's policy refuses.
func (d *Deliverer) post(ctx context.Context, r record, body []byte) (retryAfter time.Duration, permanent bool, err error) {
	if _, err := d.pol.parseURL(r.URL); err != nil {
		return 0, true, err
	}
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return 0, false, ctx.Err()
	}
	defer func() { <-d.sem }()
	rctx, cancel := context.WithTimeout(ctx, d.o.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, r.URL, bytes.NewReader(body))
	if err != nil {
		return 0, true, fmt.Errorf("webhook: request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gonets-webhook")
	if r.Secret != "" {
		req.Header.Set(SecretHeader, r.Secret)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		// Name the host only: a webhook's path can be its credential
		// (the SDK's default is derived from the bot's token).
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, false, fmt.Errorf("webhook: post to %s: %w", req.URL.Host, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, false, nil
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			retryAfter = time.Duration(min(s, 86400)) * time.Second
		}
	}
	return retryAfter, false, fmt.Errorf("webhook: %s answered %s", req.URL.Host, resp.Status)
}
