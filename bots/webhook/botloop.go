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

// errWoken ends a read of updates when the bot's subscriptions change.
var errWoken = errors.New("webhook: subscriptions changed")

// botLoop delivers one bot's updates: it reads a batch from the Source,
// posts each update in order to the subscriptions that take it, and
// acknowledges the batch by reading the next one. It ends with Run's
// ctx, or when the bot has no subscription left.
type botLoop struct {
	d   *Deliverer
	bot int64

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
		if list.Marker != 0 {
			marker = list.Marker
		}
		if len(list.Updates) == 0 {
			continue
		}
		pending = l.deliverBatch(ctx, list.Updates)
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

// deliverBatch delivers updates in order and says whether all were
// delivered or given up. It stops early when ctx ends or the bot has
// no subscription left: the batch is then not acknowledged, and long
// polling reads it again.
func (l *botLoop) deliverBatch(ctx context.Context, updates []botapi.Update) bool {
	for i := range updates {
		if ctx.Err() != nil || !l.d.o.Store.Active(l.bot) {
			return false
		}
		l.deliver(ctx, &updates[i])
	}
	return ctx.Err() == nil
}

// deliver posts u to every subscription that takes its type, at once,
// and returns when each has it or gave it up.
func (l *botLoop) deliver(ctx context.Context, u *botapi.Update) {
	var urls []string
	for _, r := range l.d.o.Store.records(l.bot) {
		if r.wants(u.UpdateType) {
			urls = append(urls, r.URL)
		}
	}
	if len(urls) == 0 {
		return
	}
	body, err := json.Marshal(u)
	if err != nil {
		l.d.givenUp.Add(uint64(len(urls)))
		l.d.o.Log.Error("webhook: encode update", "bot", l.bot, "type", u.UpdateType, "err", err)
		return
	}
	if len(urls) == 1 {
		l.deliverTo(ctx, urls[0], u.UpdateType, body)
		return
	}
	var wg sync.WaitGroup
	for _, url := range urls {
		wg.Go(func() { l.deliverTo(ctx, url, u.UpdateType, body) })
	}
	wg.Wait()
}

// deliverTo posts body, an update of typ, to the subscription of url
// until it answers 2xx, GiveUpAfter passes, ctx ends, or the
// subscription no longer takes it. Each attempt uses the subscription
// as it is then (a new secret applies at once).
func (l *botLoop) deliverTo(ctx context.Context, url, typ string, body []byte) {
	first := l.d.o.Now()
	for attempt := 0; ; attempt++ {
		gen := l.generation()
		r, ok := l.d.o.Store.lookup(l.bot, url)
		if !ok || !r.wants(typ) {
			return
		}
		retryAfter, permanent, err := l.d.post(ctx, r, body)
		if err == nil {
			l.d.delivered.Add(1)
			return
		}
		if ctx.Err() != nil {
			return
		}
		l.d.failed.Add(1)
		l.d.o.Log.Debug("webhook: delivery failed", "bot", l.bot, "type", typ, "attempt", attempt+1, "err", err)
		if permanent || l.d.o.Now().Sub(first) >= l.d.o.GiveUpAfter {
			l.d.givenUp.Add(1)
			l.d.o.Log.Warn("webhook: update dropped", "bot", l.bot, "type", typ,
				"attempts", attempt+1, "err", err)
			return
		}
		if !l.sleep(ctx, gen, l.d.backoff(attempt, retryAfter)) {
			return
		}
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
