// Package report draws `gonets bench` runs as one HTML page, so a person
// can look instead of read.
//
// Write takes the runs of a bench invocation (result.Result, the same
// documents that --json prints) and writes DIR/index.html: a summary table
// of every run, the ratio of rates and p99s where one scenario ran against
// several targets (gonets beside nats-core or nats-jetstream), and per run
// a header (scenario, target, machine, parameters, goal and whether it was
// met, notes) with SVG charts: the delivery latency histogram on a log
// axis with p50/p99/p999 marked, offered and delivered rate with p99 over
// time, the step search of a chat run against its p99 goal, and the
// scenario's own metrics.
//
// The page is self-contained: inline CSS and SVG, no scripts, no external
// assets. Everything is rendered through html/template, charts included:
// the chart builders produce plain shapes (rectangles, lines, polylines,
// dots, texts) in pixel coordinates and the template writes them out, so
// every piece of text is escaped. Axis ticks are round numbers (1, 2 or 5
// times a power of ten on linear axes, decades on log ones).
//
// The package holds no state and starts no goroutines.
package report
