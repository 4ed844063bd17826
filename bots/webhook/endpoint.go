package webhook

import (
	neturl "net/url"
	"time"
)

// endpoint is what a bot's loop knows of one of its webhooks between
// deliveries: whether it is failing, since when, and when to try it
// again. Only the goroutine delivering to the webhook uses it.
type endpoint struct {
	url string
	// time is the subscription's Time: a new subscription of the same
	// URL starts afresh.
	time int64
	// open: an update was given up to the webhook and none delivered
	// since; updates are given up at once, without a request, except
	// for one attempt (a probe) at or after probeAt.
	open    bool
	probeAt time.Time
	// failingSince is the first failed attempt since the last success;
	// zero if the last attempt succeeded.
	failingSince time.Time
}

// reset starts afresh if r is a new subscription of the URL.
func (e *endpoint) reset(r record) {
	if r.Time != e.time {
		*e = endpoint{url: e.url, time: r.Time}
	}
}

// succeeded records a delivery; it says whether the webhook was given
// up on until then.
func (e *endpoint) succeeded() (wasOpen bool) {
	wasOpen = e.open
	e.open, e.probeAt, e.failingSince = false, time.Time{}, time.Time{}
	return wasOpen
}

// failed records a failed attempt at now.
func (e *endpoint) failed(now time.Time) {
	if e.failingSince.IsZero() {
		e.failingSince = now
	}
}

// gaveUp records an update given up at now: the next attempt waits for
// next; it says whether the webhook was working until then.
func (e *endpoint) gaveUp(now time.Time, next time.Duration) (opened bool) {
	opened = !e.open
	e.open, e.probeAt = true, now.Add(next)
	return opened
}

// hostOf is url's host, which logs name instead of the URL: a
// webhook's path can be its credential.
func hostOf(url string) string {
	u, err := neturl.Parse(url)
	if err != nil {
		return ""
	}
	return u.Host
}
