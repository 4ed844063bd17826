package esia

import (
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Outcomes of a call, the outcome label of gonets_esia_requests_total.
const (
	outcomeOK           = "ok"
	outcomeDenied       = "denied"
	outcomeInvalidGrant = "invalid_grant"
	outcomeRejected     = "rejected"
	outcomeProtocol     = "protocol"
	outcomeUnavailable  = "unavailable"
	outcomeCanceled     = "canceled"
)

// callMetrics counts the calls to one endpoint by outcome and times them.
type callMetrics struct {
	set      *metrics.Set
	endpoint string
	latency  *metrics.PrometheusHistogram
}

func newCallMetrics(set *metrics.Set, endpoint string) *callMetrics {
	m := &callMetrics{set: set, endpoint: endpoint,
		latency: set.GetOrCreatePrometheusHistogram(`gonets_esia_request_duration_seconds{endpoint="` + endpoint + `"}`)}
	for _, o := range []string{outcomeOK, outcomeDenied, outcomeInvalidGrant, outcomeRejected, outcomeProtocol, outcomeUnavailable, outcomeCanceled} {
		m.counter(o)
	}
	return m
}

func (m *callMetrics) counter(outcome string) *metrics.Counter {
	return m.set.GetOrCreateCounter(`gonets_esia_requests_total{endpoint="` + m.endpoint + `",outcome="` + outcome + `"}`)
}

// done records a call that started at start and ended with err.
func (m *callMetrics) done(start time.Time, err error) {
	m.latency.UpdateDuration(start)
	m.counter(outcomeOf(err)).Inc()
}
