// Package result is the schema of a `gonets bench` run: what a scenario
// measured, in the JSON document that --json prints and --out appends, and
// that --report draws. The NATS peer (bench/natspeer, its own module)
// writes the same documents so that runs compare field by field.
package result

import (
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Result is one scenario run against one target.
type Result struct {
	// Scenario is chat, group, channel, connect, sync or storage.
	Scenario string `json:"scenario"`
	// Target is what was measured: "gonets" (a node the bench started),
	// "gonets@H:P" (a running node), "nats-core" or "nats-jetstream".
	Target string `json:"target"`
	// Params are the scenario's parameters, by flag name.
	Params map[string]any `json:"params"`
	// Started is when the run began; Seconds how long its measured part
	// lasted.
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`

	// Offered is the offered rate (messages per second) of an open-loop
	// run: its highest passing step for a step search.
	Offered float64 `json:"offered_per_s,omitempty"`
	// Sent counts the messages acknowledged; Expected the deliveries that
	// the acknowledged messages owed; Delivered those that arrived.
	Sent      int64 `json:"sent"`
	Expected  int64 `json:"expected"`
	Delivered int64 `json:"delivered"`
	// DeliveredRatio is Delivered / Expected (1 when nothing was owed).
	DeliveredRatio float64 `json:"delivered_ratio"`
	// Rate is the deliveries received per second of the measured window,
	// whenever their messages were sent (or, where nothing is delivered,
	// operations per second): the throughput. Latency and DeliveredRatio
	// cover the messages scheduled in the window.
	Rate float64 `json:"rate_per_s"`
	// Latency is from a message's scheduled send time to its delivery
	// (open loop: a stalled node cannot hide its stalls); Ack from the
	// scheduled time to the sender's ack.
	Latency Latency `json:"latency"`
	Ack     Latency `json:"ack_latency"`
	// Histogram is the delivery latency distribution, for the report.
	Histogram []Bucket `json:"histogram,omitempty"`
	// Timeline has one sample per second of the run.
	Timeline []Sample `json:"timeline,omitempty"`
	// Steps are the offered rates a step search tried, in order.
	Steps []Step `json:"steps,omitempty"`
	// Metrics are the scenario's own figures, named with their unit:
	// handshakes_per_s, rss_bytes_per_session, resumed_per_s,
	// catch_up_ms, appends_per_s, ... and the node's cost per unit of
	// work over the measured window (docs/bench.md):
	// node_cpu_us_per_message and node_cpu_us_per_delivery (µs of the
	// node's CPU per message it accepted and per delivery received),
	// node_packets_in_per_message and node_packets_out_per_message (its
	// QUIC datagrams or TCP segments), node_syncs_per_message (the WAL
	// syncs the node's store asked for per message it appended), and,
	// over a quiet window before
	// the load, node_idle_cpu_pct_per_1000_sessions (percent of one
	// core).
	Metrics map[string]float64 `json:"metrics,omitempty"`

	// Goal is the target the scenario is held to, in words, and Met
	// whether this run meets it.
	Goal string `json:"goal,omitempty"`
	Met  bool   `json:"met"`

	// Node is the measured node process (nil when it was not started by
	// the bench, or is in-process).
	Node *Process `json:"node,omitempty"`
	// Generator is the load generator's own use of the machine.
	Generator *Process `json:"generator,omitempty"`
	// SharedCores reports that node and generator ran on the same cores.
	SharedCores bool    `json:"shared_cores"`
	Machine     Machine `json:"machine"`
	// Notes are what a reader should know about this run.
	Notes []string `json:"notes,omitempty"`
}

// Latency is a latency distribution's summary, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// Bucket is one bar of a latency histogram: Count values up to UpToMS.
type Bucket struct {
	UpToMS float64 `json:"up_to_ms"`
	Count  int64   `json:"count"`
}

// Sample is one second of a run.
type Sample struct {
	// T is seconds since the run began (the end of the sample's second).
	T         float64 `json:"t"`
	Offered   float64 `json:"offered_per_s"`
	Delivered float64 `json:"delivered_per_s"`
	P99       float64 `json:"p99_ms"`
	Sessions  int     `json:"sessions,omitempty"`
}

// Step is one offered rate of a step search and how it went.
type Step struct {
	Offered        float64 `json:"offered_per_s"`
	Rate           float64 `json:"rate_per_s"`
	P50            float64 `json:"p50_ms"`
	P99            float64 `json:"p99_ms"`
	P999           float64 `json:"p999_ms"`
	DeliveredRatio float64 `json:"delivered_ratio"`
	Passed         bool    `json:"passed"`
	// The node's cost over the step, as in Result.Metrics (0 where it
	// was not measured).
	NodeCPUPerMessage        float64 `json:"node_cpu_us_per_message,omitempty"`
	NodeCPUPerDelivery       float64 `json:"node_cpu_us_per_delivery,omitempty"`
	NodePacketsInPerMessage  float64 `json:"node_packets_in_per_message,omitempty"`
	NodePacketsOutPerMessage float64 `json:"node_packets_out_per_message,omitempty"`
}

// SetCost fills a step's cost figures from a result's metrics.
func (s *Step) SetCost(m map[string]float64) {
	s.NodeCPUPerMessage = m["node_cpu_us_per_message"]
	s.NodeCPUPerDelivery = m["node_cpu_us_per_delivery"]
	s.NodePacketsInPerMessage = m["node_packets_in_per_message"]
	s.NodePacketsOutPerMessage = m["node_packets_out_per_message"]
}

// Process is a process's use of the machine over the measured part of a
// run.
type Process struct {
	PID int `json:"pid,omitempty"`
	// CPUSeconds is user plus system time; CPUPercent that over the wall
	// time (200 is both of two cores).
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUPercent float64 `json:"cpu_percent"`
	// RSSBytes is the resident set at the end, MaxRSSBytes its peak.
	RSSBytes    int64  `json:"rss_bytes"`
	MaxRSSBytes int64  `json:"max_rss_bytes"`
	CPUs        string `json:"cpus,omitempty"` // the affinity, when pinned
	// Procs, for a load generator spread over worker processes (gonets
	// bench --procs), is how many there were; the figures above are then
	// the sum over them and the process that coordinated them (PID).
	Procs int `json:"procs,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	Host      string `json:"host"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	MemBytes  int64  `json:"mem_bytes"`
	GoVersion string `json:"go_version"`
	Commit    string `json:"commit,omitempty"`
	Version   string `json:"version,omitempty"`
}

// Summarize fills a Latency from an HDR histogram of microseconds.
func Summarize(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
		Mean:  h.Mean() / 1000,
	}
}

// Buckets returns a histogram of microseconds as log-spaced bars in
// milliseconds (each bound 15% above the last, from 10 µs), for the report.
// Empty bars are left out.
func Buckets(h *hdrhistogram.Histogram) []Bucket {
	var out []Bucket
	bound := int64(10)
	var count int64
	for _, bar := range h.Distribution() {
		if bar.Count == 0 {
			continue
		}
		for bar.From > bound {
			if count > 0 {
				out = append(out, Bucket{UpToMS: float64(bound) / 1000, Count: count})
				count = 0
			}
			bound = max(bound+1, bound*115/100)
		}
		count += bar.Count
	}
	if count > 0 {
		out = append(out, Bucket{UpToMS: float64(bound) / 1000, Count: count})
	}
	return out
}

// NewHistogram returns a histogram of latencies in microseconds, from
// 1 µs to 5 minutes, at 3 significant digits.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(5*time.Minute/time.Microsecond), 3)
}
