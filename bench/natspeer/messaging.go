package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/gonets/gonets/bench/result"
	"github.com/gonets/gonets/bench/stepsearch"
)

// streamName is the stream that captures a messaging workload on
// nats-jetstream.
const streamName = "GONETS"

// connsFor is how many connections carry users at opts.UsersPerConn each.
func connsFor(users, perConn int) int {
	return max((users+perConn-1)/perConn, 1)
}

// chanCap sizes a connection's receive channel for the subscriptions it
// carries.
func chanCap(subs int) int {
	return min(max(256*subs, 1024), 1<<16)
}

// subjects returns prefix.0 ... prefix.n-1.
func subjects(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = prefix + "." + strconv.Itoa(i)
	}
	return s
}

// spreadUsers opens the connections for users users, user u on
// connection u mod n, and subscribes each user to subject(u).
func (t *traffic) spreadUsers(users int, subject func(u int) string) error {
	n := connsFor(users, t.e.opts.UsersPerConn)
	for i := range n {
		perConn := (users - i + n - 1) / n
		if _, err := t.addConn("user-conn-"+strconv.Itoa(i), chanCap(perConn)); err != nil {
			return err
		}
	}
	for u := range users {
		c := t.conns[u%n]
		c.users = append(c.users, uint32(u))
		if err := t.subscribe(c, subject(u), uint32(u)); err != nil {
			return err
		}
	}
	return nil
}

// withStream creates the workload's stream on nats-jetstream.
func (t *traffic) withStream(ctx context.Context, subject string) error {
	if !t.e.jetStream() {
		return nil
	}
	if err := createStream(ctx, t.conns[0].js, streamName, subject); err != nil {
		return err
	}
	t.e.note("JetStream: stream %s captures %s; senders publish with async acks (ack latency from the scheduled time); delivery is measured on core subscriptions to the same subjects, which nats-server serves as it receives a message, before the stream has stored it: delivery latency does not wait for the fsync, the ack does", streamName, subject)
	t.e.note("JetStream: expected deliveries count every message handed to the client; sent counts the acked ones")
	return nil
}

// chat runs 1:1 chats among opts.Users users: a message from A to B is a
// publish to u.<B>.
func (e *env) chat(ctx context.Context, res *result.Result) error {
	t := newTraffic(e)
	defer func() { res.Timeline = t.close() }()
	subj := subjects("u", e.opts.Users)
	if err := t.spreadUsers(e.opts.Users, func(u int) string { return subj[u] }); err != nil {
		return err
	}
	if err := t.withStream(ctx, "u.>"); err != nil {
		return err
	}
	users := e.opts.Users
	t.senders = t.conns
	t.fanout = 1
	t.route = func(c *peerConn, rng *rand.Rand) (uint32, string) {
		from := c.users[rng.IntN(len(c.users))]
		to := rng.IntN(users - 1)
		if to >= int(from) {
			to++
		}
		return from, subj[to]
	}
	e.note("chat: %d users on %d TCP connections (%d subscriptions each at most), each user subscribed to u.<id>; a message from A to B is a publish to u.<B> from A's connection; Gonets holds one QUIC session per user", users, len(t.conns), (users+len(t.conns)-1)/len(t.conns))
	if err := t.start(users); err != nil {
		return err
	}
	t.quiet(ctx, res, users)
	res.Goal = "at least 50,000 durable msgs/s delivered with p99 at most 10 ms"
	if e.opts.Rate > 0 {
		pr := t.fixed(ctx, e.opts.Rate)
		t.fill(res, pr)
		res.Met = e.jetStream() && pr.rate >= 50000 && t.passes(pr)
		return ctx.Err()
	}
	return t.stepSearch(ctx, res)
}

// group runs opts.Groups groups of opts.Members members: each user is in
// one group and subscribed to g.<group>; a post is a publish to it.
func (e *env) group(ctx context.Context, res *result.Result) error {
	t := newTraffic(e)
	defer func() { res.Timeline = t.close() }()
	t.dropEcho = true
	members := e.opts.Members
	users := e.opts.Groups * members
	subj := subjects("g", e.opts.Groups)
	if err := t.spreadUsers(users, func(u int) string { return subj[u/members] }); err != nil {
		return err
	}
	if err := t.withStream(ctx, "g.>"); err != nil {
		return err
	}
	t.senders = t.conns
	t.fanout = int64(members - 1)
	t.route = func(c *peerConn, rng *rand.Rand) (uint32, string) {
		from := c.users[rng.IntN(len(c.users))]
		return from, subj[int(from)/members]
	}
	e.note("group: %d groups of %d members, %d users on %d TCP connections (members spread over all of them), each subscribed to g.<group>; a post is a publish from the poster's connection and owes %d deliveries; nats-server also sends the poster's own subscription a copy, which is received and not counted", e.opts.Groups, members, users, len(t.conns), members-1)
	if err := t.start(users); err != nil {
		return err
	}
	t.quiet(ctx, res, users)
	pr := t.fixed(ctx, e.opts.Rate)
	t.fill(res, pr)
	res.Goal = "at least 200,000 deliveries/s"
	res.Met = res.Rate >= 200000 && t.passes(pr)
	return ctx.Err()
}

// channel runs one channel, c.1, with opts.Subscribers subscribers and
// one publisher on its own connection.
func (e *env) channel(ctx context.Context, res *result.Result) error {
	t := newTraffic(e)
	defer func() { res.Timeline = t.close() }()
	subs := e.opts.Subscribers
	if err := t.spreadUsers(subs, func(int) string { return "c.1" }); err != nil {
		return err
	}
	var pubs []*peerConn
	for i := range e.opts.Publishers {
		pub, err := t.addConn("publisher-"+strconv.Itoa(i), 1024)
		if err != nil {
			return err
		}
		pub.users = []uint32{uint32(subs)} // the owner, on each of its devices
		pubs = append(pubs, pub)
	}
	if err := t.withStream(ctx, "c.>"); err != nil {
		return err
	}
	t.senders = pubs
	t.fanout = int64(subs)
	t.route = func(c *peerConn, _ *rand.Rand) (uint32, string) { return c.users[0], "c.1" }
	e.note("channel: %d subscribers of c.1 on %d TCP connections; the owner publishes from %d connection(s) of its own, sharing the rate; Gonets holds one QUIC session per subscriber", subs, len(t.conns)-len(pubs), len(pubs))
	if err := t.start(subs); err != nil {
		return err
	}
	t.quiet(ctx, res, subs+len(pubs))
	pr := t.fixed(ctx, e.opts.Rate)
	t.fill(res, pr)
	res.Goal = "at least 1,000,000 deliveries/s to 10,000 online subscribers"
	res.Met = res.Rate >= 1e6 && subs >= 10000 && t.passes(pr)
	return ctx.Err()
}

// fixed runs the warmup, unmeasured, then the measured part at rate.
func (t *traffic) fixed(ctx context.Context, rate float64) phaseResult {
	o := t.e.opts
	if o.Warmup > 0 {
		start := time.Now().Add(50 * time.Millisecond)
		end := start.Add(o.Warmup)
		t.phase(ctx, rate, start, end, end)
	}
	start := time.Now().Add(50 * time.Millisecond)
	return t.phase(ctx, rate, start, start, start.Add(o.Duration))
}

// minStepRate is the lowest rate a step search tries on its way down.
const minStepRate = 10

// stepSearch runs the bench's step search (bench/stepsearch): up from
// opts.StepStart by opts.StepFactor until a step fails (down, when the
// first one fails, until one passes), then two bisections of the bracket;
// it reports the highest passing step.
func (t *traffic) stepSearch(ctx context.Context, res *result.Result) error {
	o := t.e.opts
	if o.Warmup > 0 {
		start := time.Now().Add(50 * time.Millisecond)
		end := start.Add(o.Warmup)
		t.phase(ctx, o.StepStart, start, end, end)
	}
	var best, first *phaseResult
	down := false
	_, err := stepsearch.Run(stepsearch.Options{Start: o.StepStart, Factor: o.StepFactor, Min: minStepRate, MaxSteps: o.MaxSteps, Refine: 2},
		func(rate float64) (bool, error) {
			start := time.Now().Add(50 * time.Millisecond)
			pr := t.phase(ctx, rate, start, start, start.Add(o.StepDuration))
			if err := ctx.Err(); err != nil {
				return false, err
			}
			ok := t.passes(pr)
			res.Steps = append(res.Steps, t.step(pr, ok))
			if first == nil {
				first = &pr
				down = !ok
			}
			if ok && (best == nil || pr.rate > best.rate) {
				best = &pr
			}
			if !ok {
				t.e.note("step %.0f/s failed: %s", pr.rate, t.why(pr))
			}
			return ok, nil
		})
	if err != nil {
		return err
	}
	if best == nil {
		t.fill(res, *first)
		res.Offered = 0
		t.e.note("no step passed: the figures are the first step's (%.0f/s)", first.rate)
	} else {
		t.fill(res, *best)
		res.Met = t.e.jetStream() && best.rate >= 50000
	}
	if down && best != nil {
		t.e.note("the first step failed, so the search went down by the same factor to the first step that passed, then bisected")
	}
	if !t.e.jetStream() {
		t.e.note("the goal is for durable messages: core NATS stores nothing, so it cannot meet it")
	}
	rule := fmt.Sprintf("step search: %s steps from %.0f/s, x%g each, then two bisections; a step passes with p99 <= %s and >= %.1f%% delivered", o.StepDuration, o.StepStart, o.StepFactor, o.P99, 100*o.MinDelivered)
	if t.e.jetStream() {
		rule += ", and on JetStream also p99 ack <= the same bound and that share acked (the ack is what makes a message durable)"
	}
	t.e.note("%s", rule)
	return nil
}

// passes reports whether a phase meets the step search's bounds. On
// JetStream the acks (durability) are held to the same bounds as the
// deliveries.
func (t *traffic) passes(pr phaseResult) bool { return t.why(pr) == "" }

// why says how a phase misses the step search's bounds ("" when it
// does not).
func (t *traffic) why(pr phaseResult) string {
	o := t.e.opts
	limit := float64(o.P99.Microseconds())
	switch {
	case pr.published+pr.pubErrs == 0:
		return "nothing was sent"
	case float64(pr.published) < o.MinDelivered*float64(pr.published+pr.pubErrs):
		return fmt.Sprintf("%d of %d publishes failed", pr.pubErrs, pr.published+pr.pubErrs)
	case float64(pr.delivered) < o.MinDelivered*float64(pr.expected):
		return fmt.Sprintf("delivered %.2f%%", 100*ratio(pr.delivered, pr.expected))
	case float64(pr.lat.ValueAtQuantile(99)) > limit:
		return fmt.Sprintf("p99 %.2f ms", float64(pr.lat.ValueAtQuantile(99))/1000)
	}
	if !t.e.jetStream() {
		return ""
	}
	switch {
	case float64(pr.acked) < o.MinDelivered*float64(pr.published):
		return fmt.Sprintf("acked %.2f%% (%d failed)", 100*ratio(pr.acked, pr.published), pr.ackErrs)
	case float64(pr.ack.ValueAtQuantile(99)) > limit:
		return fmt.Sprintf("ack p99 %.2f ms", float64(pr.ack.ValueAtQuantile(99))/1000)
	}
	return ""
}

// ratio is a/b, 1 when b is 0.
func ratio(a, b int64) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

// step summarizes a phase for res.Steps.
func (t *traffic) step(pr phaseResult, passed bool) result.Step {
	l := result.Summarize(pr.lat)
	s := result.Step{
		Offered:        pr.rate,
		Rate:           float64(pr.delivered) / pr.seconds,
		P50:            l.P50,
		P99:            l.P99,
		P999:           l.P999,
		DeliveredRatio: ratio(pr.delivered, pr.expected),
		Passed:         passed,
	}
	s.SetCost(t.cost(pr))
	return s
}

// cost returns the node's cost over a phase's window, named as gonets
// bench names its node's (docs/bench.md): CPU and TCP segments per
// message the node accepted (on nats-jetstream the acks received in the
// window; on nats-core the messages published in it, which it takes as
// they come) and per delivery received in the window.
func (t *traffic) cost(pr phaseResult) map[string]float64 {
	m := map[string]float64{}
	if pr.from.node.at.IsZero() || pr.to.node.at.IsZero() {
		return m
	}
	cpu := 1e6 * (pr.to.node.cpuSeconds - pr.from.node.cpuSeconds)
	in := pr.to.segs.sent - pr.from.segs.sent
	out := pr.to.segs.received - pr.from.segs.received
	m["node_packets_in"], m["node_packets_out"] = float64(in), float64(out)
	accepted := pr.published
	if t.e.jetStream() {
		accepted = pr.toAcks - pr.fromAcks
	}
	per := func(unit string, n int64) {
		if n > 0 {
			m["node_cpu_us_per_"+unit] = cpu / float64(n)
			m["node_packets_in_per_"+unit] = float64(in) / float64(n)
			m["node_packets_out_per_"+unit] = float64(out) / float64(n)
		}
	}
	per("message", accepted)
	per("delivery", pr.toDel-pr.fromDel)
	return m
}

// idleSettle is how long the sessions rest before the quiet window, as
// in gonets bench: what their setup left (the server's first PING, 2 s
// after each connection) does not count as idle. A window shorter than
// that settles as long as it lasts.
const idleSettle = 3 * time.Second

// quiet measures the node over opts.Idle while sessions sessions are
// connected and nothing is sent, after idleSettle, before the load.
func (t *traffic) quiet(ctx context.Context, res *result.Result, sessions int) {
	select {
	case <-time.After(min(idleSettle, t.e.opts.Idle)):
	case <-ctx.Done():
		return
	}
	from := t.e.mark()
	select {
	case <-time.After(t.e.opts.Idle):
	case <-ctx.Done():
		return
	}
	t.e.idle(res, from, t.e.mark(), sessions)
}

// fill writes a phase's figures into res.
func (t *traffic) fill(res *result.Result, pr phaseResult) {
	js := t.e.jetStream()
	res.Offered = pr.rate
	res.Seconds = pr.seconds
	res.Sent = pr.published
	if js {
		res.Sent = pr.acked
		res.Ack = result.Summarize(pr.ack)
		setMetric(res, "ack_ratio", ratio(pr.acked, pr.published))
		setMetric(res, "ack_errors", float64(pr.ackErrs))
		setMetric(res, "acks_per_s", float64(pr.acked)/pr.seconds)
	}
	res.Expected = pr.expected
	res.Delivered = pr.delivered
	res.Rate = float64(pr.delivered) / pr.seconds
	res.Latency = result.Summarize(pr.lat)
	res.Histogram = result.Buckets(pr.lat)
	t.e.spent(res, pr.from, pr.to)
	for k, v := range t.cost(pr) {
		setMetric(res, k, v)
	}
	setMetric(res, "deliveries_per_s", res.Rate)
	setMetric(res, "published", float64(pr.published))
	setMetric(res, "publish_errors", float64(pr.pubErrs))
	setMetric(res, "connections", float64(len(t.conns)))
	setMetric(res, "client_dropped", float64(t.dropped()))
	setMetric(res, "sender_late_p50_ms", float64(pr.late.ValueAtQuantile(50))/1000)
	setMetric(res, "sender_late_p99_ms", float64(pr.late.ValueAtQuantile(99))/1000)
	t.e.note("latency runs from the scheduled send time to the receiver's clock read; it includes the sender's own lateness (p99 %.2f ms here: Go timers under 1 ms round up to about 1 ms on an idle process)", float64(pr.late.ValueAtQuantile(99))/1000)
}
