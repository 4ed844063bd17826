package broker

import "github.com/VictoriaMetrics/metrics"

// DropCounters count the pushes an outbox refused, by reason. A nil
// counter is not counted.
type DropCounters struct {
	// Full counts pushes that found the outbox full and stalled it.
	Full *metrics.Counter
	// Stalled counts pushes refused while the outbox waits for the
	// client to resync.
	Stalled *metrics.Counter
	// Closed counts pushes to an outbox whose session has ended.
	Closed *metrics.Counter
}

func newDropCounters(set *metrics.Set) *DropCounters {
	return &DropCounters{
		Full:    set.NewCounter(`gonets_broker_push_drops_total{reason="full"}`),
		Stalled: set.NewCounter(`gonets_broker_push_drops_total{reason="stalled"}`),
		Closed:  set.NewCounter(`gonets_broker_push_drops_total{reason="closed"}`),
	}
}

// closeReason is why the node ended an authenticated session.
type closeReason int

const (
	closeClient          closeReason = iota // the client closed or the connection broke
	closePushTimeout                        // pushes made no progress for WriteTimeout
	closeResponseTimeout                    // responses made no progress for WriteTimeout
	closeBadFrame                           // the client sent a frame the node refused
	closeTokenExpired                       // the session's token ran out
	closeReplaced                           // the user opened more sessions than allowed
	closeDeviceEnded                        // the session's device was ended
	closeReasons
)

var closeReasonNames = [closeReasons]string{
	closeClient:          "client",
	closePushTimeout:     "push_timeout",
	closeResponseTimeout: "response_timeout",
	closeBadFrame:        "bad_frame",
	closeTokenExpired:    "token_expired",
	closeReplaced:        "replaced",
	closeDeviceEnded:     "device_ended",
}

// closeCounters count ended sessions by reason.
type closeCounters [closeReasons]*metrics.Counter

func newCloseCounters(set *metrics.Set) *closeCounters {
	var c closeCounters
	for r, name := range closeReasonNames {
		c[r] = set.NewCounter(`gonets_broker_session_closes_total{reason="` + name + `"}`)
	}
	return &c
}
