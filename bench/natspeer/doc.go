// Command natspeer is the NATS side of `gonets bench --peer nats`: it runs
// the bench's workloads (chat, group, channel, connect, sync, storage)
// against an embedded nats-server and writes the same result.Result
// documents as the gonets bench, so that runs compare field by field.
//
// It is its own Go module so that the product's go.mod never names NATS;
// the gonets bench builds it at bench time from the pinned published
// modules (go build -C bench/natspeer) and runs the binary.
//
// Two subcommands:
//
//	natspeer server [--js --store DIR] [--port P] [--cpus LIST] [--tls-cert F --tls-key F]
//	natspeer run --scenario S --target nats-core|nats-jetstream [flags] [--json]
//
// "server" runs nats-server in its own process and prints "ready ADDR" once
// it accepts clients. "run" starts that process as a child (it re-executes
// its own binary), so the node's CPU and memory are read from /proc apart
// from the load generator's, runs the scenario, and prints one result.
//
// The workload maps Gonets onto subjects: a user subscribes to u.<id>, a
// chat message from A to B is a publish to u.<B>; a group post goes to
// g.<id>, to which every member subscribes; the channel is c.1. Load is open
// loop: each sender publishes on a schedule, carries the scheduled time
// (UnixNano) in the first 8 bytes of the body and the sender's user id in
// the next 4, and latency is receive time minus scheduled time, so a
// stalled node cannot hide its stalls. For JetStream a file-backed stream
// with sync_interval: always captures the subjects, senders publish with
// asynchronous acks (ack latency is measured from the scheduled time) and
// delivery is measured on the same core subscriptions.
//
// Goroutines: per client connection one receiver that drains the
// connection's subscriptions and, while a phase runs, one sender; nats.go
// adds its own reader and flusher per connection; a timeline sampler ticks
// once a second. The run's owner (runScenario) waits for all of them
// before it returns. Receivers record in batches into one of eight
// recorder shards, each under its own mutex (recorder.go); the sampler and
// the phase's owner take each shard's lock briefly.
//
// The node's cost is measured as gonets bench measures its node's, under
// the same metric names: the server's CPU (its CPU-time clock, to the
// nanosecond) over each measured window [from, to) (each step of a step
// search has its own), divided by the messages it accepted in the window
// and by the deliveries received in it; its TCP segments in and out from
// the kernel's per-connection counts (TCP_INFO) of the generator's
// connections, which on loopback are the server's own, mirrored; and,
// over a quiet window (--idle) between connecting and the load, its CPU
// per 1,000 sessions.
//
// Fairness: the generator binds its own source ports (conn.go), because
// Linux's ephemeral port search slows connect() down past ~14,000
// connections to one address; and every result reports the CPU that the
// rest of the machine and the hypervisor took while it was measured, since
// node and generator share the same cores with whatever else runs.
package main
