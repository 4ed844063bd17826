package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/gonets/gonets/bench/result"
	"github.com/gonets/gonets/broker/wire"
)

// Login scenario goals, on the 2 cores the node and the generator share.
const (
	loginGoalPerSec   = 2000
	refreshGoalPerSec = 10000
)

// refreshesPerConn is the batched refresh phase's requests per
// connection: the node's cap on pre-authentication requests before Hello.
const refreshesPerConn = 8

// loginFirstNumber is the first phone number the scenario signs up, +7
// 900 000-00-00: a mobile range of Russia, the node's default country.
// User k gets loginFirstNumber + k.
const loginFirstNumber = 79000000000

// preauthTimeout bounds one pre-authentication connection: its
// handshake and each request.
const preauthTimeout = 30 * time.Second

// runLogin measures phone login and token refresh, each on the
// connections a phone would use:
//
//   - login: a new user per login, on one fresh connection (a full TLS
//     handshake): login_start, the code picked from the node's SMS
//     outbox (the file adapter), login_verify, close;
//   - refresh: an existing user wakes up, resumes its TLS session on a
//     new connection, sends one token_refresh and closes;
//   - refresh ×8: the same with refreshesPerConn refreshes of one user
//     on each connection, so that the connection's share of a refresh
//     shows (handshake_share).
//
// Each phase runs Concurrency users at once, closed loop, for Warmup and
// then the measured Duration. With Users set, the login phase instead
// signs up exactly that many, all of them measured.
func runLogin(ctx context.Context, cfg Config, t *target, res *result.Result) error {
	res.Params = map[string]any{"concurrency": cfg.Concurrency, "duration_s": cfg.Duration.Seconds(),
		"warmup_s": cfg.Warmup.Seconds(), "refreshes_per_conn": refreshesPerConn}
	if cfg.Users > 0 {
		res.Params["users"] = cfg.Users
	}
	res.Goal = fmt.Sprintf("at least %d logins/s and %d refreshes/s (one a connection)", loginGoalPerSec, refreshGoalPerSec)
	outboxPath := cfg.Outbox
	if outboxPath == "" {
		if t.dir == "" {
			return errors.New("bench: login with --server needs --sms-outbox FILE, the node's identity.sms_outbox (sms = \"file\") on this machine")
		}
		outboxPath = filepath.Join(t.dir, "sms-outbox.jsonl")
	}
	ob, err := openOutbox(outboxPath)
	if err != nil {
		return err
	}
	defer ob.close()
	d, err := newPreauthDialer(t, cfg.Concurrency)
	if err != nil {
		return err
	}
	defer d.close()
	lb := &loginBench{cfg: cfg, t: t, d: d, ob: ob, res: res}

	// Logins.
	var next atomic.Int64
	signedUp := make([][]*benchUser, cfg.Concurrency)
	loginOp := func(ctx context.Context, w int) (opTimes, bool, error) {
		k := next.Add(1) - 1
		if cfg.Users > 0 && k >= int64(cfg.Users) {
			return opTimes{}, false, nil
		}
		u, ot, err := lb.login(ctx, k)
		if err == nil {
			signedUp[w] = append(signedUp[w], u)
		}
		return ot, true, err
	}
	warmup := cfg.Warmup
	if cfg.Users > 0 {
		warmup = 0 // every one of the users is measured
	}
	login, err := lb.phase(ctx, "login", warmup, cfg.Duration, loginOp, profilePath(cfg.NodeProfile, ""))
	if err != nil {
		return err
	}
	var users []*benchUser
	for _, us := range signedUp {
		users = append(users, us...)
	}
	if len(users) == 0 {
		return fmt.Errorf("bench: login: no user logged in: %v", login.firstErr)
	}
	if pid := t.pid(); pid != "" {
		if rss, _, err := memory(pid); err == nil {
			res.Metrics["node_rss_bytes_after_logins"] = float64(rss)
		}
	}
	res.Metrics["users"] = float64(len(users))
	res.Metrics["accounts_created"] = float64(countCreated(users))

	// Refreshes: a user's refreshes are one after another (each spends
	// the token the last one returned), so each worker owns every
	// Concurrency-th user and goes round them.
	owned := make([][]*benchUser, cfg.Concurrency)
	for i, u := range users {
		owned[i%cfg.Concurrency] = append(owned[i%cfg.Concurrency], u)
	}
	refresh, err := lb.phase(ctx, "refresh", cfg.Warmup, cfg.Duration, lb.refreshOp(owned, 1), profilePath(cfg.NodeProfile, "-refresh"))
	if err != nil {
		return err
	}
	batched, err := lb.phase(ctx, "refresh×8", cfg.Warmup, cfg.Duration, lb.refreshOp(owned, refreshesPerConn), "")
	if err != nil {
		return err
	}
	lb.report(login, refresh, batched)
	return nil
}

// countCreated counts the users whose login created their account.
func countCreated(users []*benchUser) int {
	n := 0
	for _, u := range users {
		if u.created {
			n++
		}
	}
	return n
}

// refreshOp returns a refresh phase's operation: worker w refreshes its
// users of owned in turn, per refreshes a connection, skipping those
// whose token was lost; it stops when all of them are.
func (lb *loginBench) refreshOp(owned [][]*benchUser, per int) func(ctx context.Context, w int) (opTimes, bool, error) {
	turn := make([]int, len(owned))
	return func(ctx context.Context, w int) (opTimes, bool, error) {
		mine := owned[w]
		for range mine {
			u := mine[turn[w]%len(mine)]
			turn[w]++
			if !u.dead {
				ot, err := lb.refresh(ctx, u, per)
				return ot, true, err
			}
		}
		return opTimes{}, false, nil
	}
}

// profilePath returns where a phase's node profile goes: path with
// suffix before its extension, or "" for none.
func profilePath(path, suffix string) string {
	if path == "" {
		return ""
	}
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + suffix + ext
}

// loginBench is one run of the login scenario.
type loginBench struct {
	cfg Config
	t   *target
	d   *preauthDialer
	ob  *outbox
	res *result.Result
}

// benchUser is a simulated user: its phone, its TLS session cache (a
// phone resumes its TLS session when it wakes up) and its tokens. Only
// the worker that owns it touches it.
type benchUser struct {
	phone   string
	tls     *tls.Config
	refresh string
	created bool
	dead    bool // its refresh token was refused or lost: never used again
}

// opTimes are one operation's timings: one login, or one refresh
// connection with its requests.
type opTimes struct {
	total     time.Duration // from the dial until the connection's last answer
	handshake time.Duration // the dial: the TLS handshake (and, over QUIC, the stream)
	// reqs are the round trips of the connection's requests, in order;
	// n of them. For a login: login_start, then login_verify.
	reqs    [refreshesPerConn]time.Duration
	n       int
	smsWait time.Duration // a login's wait for its code in the outbox
	resumed bool
}

// login signs up user k and logs it in on one connection.
func (lb *loginBench) login(ctx context.Context, k int64) (*benchUser, opTimes, error) {
	var ot opTimes
	u := &benchUser{phone: fmt.Sprintf("+%d", loginFirstNumber+k), tls: lb.d.tlsConfig()}
	start := time.Now()
	c, resp, err := lb.d.open(ctx, u.tls, &wire.Frame{Body: &wire.Frame_LoginStart{LoginStart: &wire.LoginStart{Phone: u.phone}}}, &ot)
	if err != nil {
		return nil, ot, fmt.Errorf("login_start: %w", err)
	}
	defer c.close()
	lc := resp.GetLoginCode()
	if lc == nil {
		return nil, ot, fmt.Errorf("login_start: answered %T", resp.Body)
	}
	t1 := time.Now()
	code, err := lb.ob.code(ctx, lc.Phone, int(lc.CodeLength))
	if err != nil {
		return nil, ot, err
	}
	ot.smsWait = time.Since(t1)
	t2 := time.Now()
	resp, err = c.do(&wire.Frame{Body: &wire.Frame_LoginVerify{LoginVerify: &wire.LoginVerify{
		Attempt: lc.Attempt, Code: code, DeviceName: "bench", Platform: "cli"}}})
	if err != nil {
		return nil, ot, fmt.Errorf("login_verify: %w", err)
	}
	ot.reqs[1], ot.n = time.Since(t2), 2
	lr := resp.GetLoginResult()
	if lr == nil || lr.RefreshToken == "" {
		return nil, ot, fmt.Errorf("login_verify: answered %T", resp.Body)
	}
	ot.total = time.Since(start)
	u.refresh, u.created = lr.RefreshToken, lr.Created
	return u, ot, nil
}

// refresh refreshes u's tokens per times, one after another on one
// connection, resuming u's TLS session.
func (lb *loginBench) refresh(ctx context.Context, u *benchUser, per int) (opTimes, error) {
	var ot opTimes
	start := time.Now()
	next := func() *wire.Frame {
		return &wire.Frame{Body: &wire.Frame_TokenRefresh{TokenRefresh: &wire.TokenRefresh{RefreshToken: u.refresh}}}
	}
	c, resp, err := lb.d.open(ctx, u.tls, next(), &ot)
	if err != nil {
		// Sent and not answered, or refused: the token may be spent.
		u.dead = true
		return ot, fmt.Errorf("token_refresh: %w", err)
	}
	defer c.close()
	for i := range per {
		if i > 0 {
			t0 := time.Now()
			if resp, err = c.do(next()); err != nil {
				u.dead = true
				return ot, fmt.Errorf("token_refresh: %w", err)
			}
			ot.reqs[i] = time.Since(t0)
		}
		lr := resp.GetLoginResult()
		if lr == nil || lr.RefreshToken == "" {
			u.dead = true
			return ot, fmt.Errorf("token_refresh: answered %T", resp.Body)
		}
		u.refresh = lr.RefreshToken
		ot.n = i + 1
	}
	ot.total = time.Since(start)
	return ot, nil
}

// phaseResult is what one phase measured over its window.
type phaseResult struct {
	name    string
	seconds float64 // the window's
	ops     int64   // connections completed in the window
	reqs    int64   // their requests
	failed  int64   // operations that failed, warm-up included
	resumed int64   // connections in the window that resumed a TLS session
	cost    *cost
	gen     *result.Process
	// total, handshake, req and smsWait are the latencies of the
	// operations completed in the window.
	total, handshake, req, smsWait *hdrhistogram.Histogram
	firstErr                       error
	profile                        string // the node profile written, or ""
}

// workerTally is one worker's share of a phase.
type workerTally struct {
	ops, reqs, failed, resumed     int64
	total, handshake, req, smsWait *hdrhistogram.Histogram
	firstErr                       error
}

// phase runs op on Concurrency workers, closed loop, for warmup and then
// d, measuring the window after the warm-up: the node's CPU and packets,
// the generator's CPU, and the operations completed in it. A worker stops
// when op says there is no more work; when all have, the window ends
// early. With profile set, the node's CPU profile over the window is
// written there.
func (lb *loginBench) phase(ctx context.Context, name string, warmup, d time.Duration,
	op func(ctx context.Context, w int) (opTimes, bool, error), profile string) (*phaseResult, error) {
	n := lb.cfg.Concurrency
	start := time.Now()
	begin := start.Add(warmup)
	end := begin.Add(d)
	tallies := make([]*workerTally, n)
	var done atomic.Int64 // operations completed, for the live line
	var wg sync.WaitGroup
	for w := range n {
		tl := &workerTally{total: result.NewHistogram(), handshake: result.NewHistogram(), req: result.NewHistogram(), smsWait: result.NewHistogram()}
		tallies[w] = tl
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(end) {
				ot, more, err := op(ctx, w)
				now := time.Now()
				if err != nil {
					tl.failed++
					tl.firstErr = cmpErr(tl.firstErr, err)
				} else if ot.n > 0 {
					done.Add(1)
					if !now.Before(begin) && !now.After(end) {
						tl.record(ot)
					}
				}
				if !more {
					return
				}
			}
		})
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	stopLive := lb.live(name, &done, start, begin)
	defer stopLive()
	if wait := time.Until(begin); wait > 0 {
		select {
		case <-time.After(wait):
		case <-allDone:
			return nil, fmt.Errorf("bench: %s: the work ran out in the warm-up (%d done): %v", name, done.Load(), firstErrOf(tallies))
		case <-ctx.Done():
			<-allDone
			return nil, ctx.Err()
		}
	}
	meter, err := startCost(ctx, lb.t, lb.cfg.ServerCPUs, lb.d.count)
	if err != nil {
		<-allDone
		return nil, err
	}
	gen := startMeter("self", lb.cfg.ClientCPUs)
	profiled := make(chan error, 1)
	if profile != "" && lb.t.httpURL != "" {
		go func() { profiled <- lb.t.profile(ctx, d, profile) }()
	} else {
		profile = ""
		profiled <- nil
	}
	select {
	case <-time.After(time.Until(end)):
	case <-allDone:
	case <-ctx.Done():
	}
	spent, err := meter.read(ctx)
	closed := time.Now()
	pr := &phaseResult{name: name, seconds: closed.Sub(begin).Seconds(), cost: spent, gen: gen.read(), profile: profile,
		total: result.NewHistogram(), handshake: result.NewHistogram(), req: result.NewHistogram(), smsWait: result.NewHistogram()}
	<-allDone
	if perr := <-profiled; perr != nil {
		lb.res.Notes = append(lb.res.Notes, fmt.Sprintf("node profile of %s: %v", name, perr))
		pr.profile = ""
	}
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	for _, tl := range tallies {
		pr.add(tl)
	}
	if pr.ops == 0 {
		return nil, fmt.Errorf("bench: %s: nothing completed in the window: %v", name, pr.firstErr)
	}
	return pr, nil
}

// record counts an operation completed in the window.
func (tl *workerTally) record(ot opTimes) {
	tl.ops++
	tl.reqs += int64(ot.n)
	if ot.resumed {
		tl.resumed++
	}
	tl.total.RecordValue(ot.total.Microseconds())
	tl.handshake.RecordValue(ot.handshake.Microseconds())
	for _, r := range ot.reqs[:ot.n] {
		tl.req.RecordValue(r.Microseconds())
	}
	if ot.smsWait > 0 {
		tl.smsWait.RecordValue(ot.smsWait.Microseconds())
	}
}

// add merges a worker's tally into the phase's.
func (pr *phaseResult) add(tl *workerTally) {
	pr.ops += tl.ops
	pr.reqs += tl.reqs
	pr.failed += tl.failed
	pr.resumed += tl.resumed
	pr.total.Merge(tl.total)
	pr.handshake.Merge(tl.handshake)
	pr.req.Merge(tl.req)
	pr.smsWait.Merge(tl.smsWait)
	pr.firstErr = cmpErr(pr.firstErr, tl.firstErr)
}

// firstErrOf returns the first error the workers met.
func firstErrOf(tallies []*workerTally) error {
	var err error
	for _, tl := range tallies {
		err = cmpErr(err, tl.firstErr)
	}
	return err
}

// live prints a phase's progress each second, when the run has a live
// writer, until the returned function is called.
func (lb *loginBench) live(name string, done *atomic.Int64, start, begin time.Time) func() {
	if lb.cfg.Live == nil {
		return func() {}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		last := int64(0)
		for {
			select {
			case <-stop:
				fmt.Fprintln(lb.cfg.Live)
				return
			case now := <-tick.C:
				n := done.Load()
				what := "measuring"
				if now.Before(begin) {
					what = "warm-up"
				}
				fmt.Fprintf(lb.cfg.Live, "\rlogin    %-10s %5.0fs  %8d/s  (%s)   ", name, now.Sub(start).Seconds(), n-last, what)
				last = n
			}
		}
	})
	return func() { close(stop); wg.Wait() }
}

// report fills the result from the three phases.
func (lb *loginBench) report(login, refresh, batched *phaseResult) {
	res, m := lb.res, lb.res.Metrics
	ms := func(h *hdrhistogram.Histogram, q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
	perSec := func(p *phaseResult, n int64) float64 { return float64(n) / p.seconds }
	m["logins_per_s"] = perSec(login, login.ops)
	m["refreshes_per_s"] = perSec(refresh, refresh.reqs)
	m["refreshes_batched_per_s"] = perSec(batched, batched.reqs)
	m["login_p50_ms"], m["login_p99_ms"] = ms(login.total, 50), ms(login.total, 99)
	m["login_handshake_p50_ms"], m["login_handshake_p99_ms"] = ms(login.handshake, 50), ms(login.handshake, 99)
	m["login_sms_wait_p50_ms"], m["login_sms_wait_p99_ms"] = ms(login.smsWait, 50), ms(login.smsWait, 99)
	m["refresh_p50_ms"], m["refresh_p99_ms"] = ms(refresh.total, 50), ms(refresh.total, 99)
	m["refresh_handshake_p50_ms"], m["refresh_handshake_p99_ms"] = ms(refresh.handshake, 50), ms(refresh.handshake, 99)
	m["refresh_batched_request_p50_ms"], m["refresh_batched_request_p99_ms"] = ms(batched.req, 50), ms(batched.req, 99)
	m["refresh_resumed_ratio"] = float64(refresh.resumed) / float64(refresh.ops)
	m["login_failures"] = float64(login.failed)
	m["refresh_failures"] = float64(refresh.failed + batched.failed)
	m["dial_retries"] = float64(lb.d.retries.Load())
	login.cost.per(res, "login", login.ops)
	refresh.cost.per(res, "refresh", refresh.reqs)
	batched.cost.per(res, "refresh_batched", batched.reqs)
	if login.cost.Node != nil {
		m["node_rss_bytes"] = float64(batched.cost.Node.RSSBytes)
		m["node_cpu_pct_login"] = 100 * login.cost.Node.CPUSeconds / login.seconds
		m["node_cpu_pct_refresh"] = 100 * refresh.cost.Node.CPUSeconds / refresh.seconds
		// A refresh alone costs r, a connection h: one a connection
		// costs h + r, eight h/8 + r each.
		a, b := m["node_cpu_us_per_refresh"], m["node_cpu_us_per_refresh_batched"]
		h := (a - b) * refreshesPerConn / (refreshesPerConn - 1)
		m["node_cpu_us_per_connection"] = h
		m["handshake_share"] = h / a
	}
	if login.gen != nil && refresh.gen != nil {
		m["generator_cpu_us_per_login"] = login.gen.CPUSeconds * 1e6 / float64(login.ops)
		m["generator_cpu_us_per_refresh"] = refresh.gen.CPUSeconds * 1e6 / float64(refresh.reqs)
	}
	res.Node = login.cost.Node
	res.Generator = login.gen
	login.cost.totals(res, login.gen) // other_cpu_percent: the login window's
	for _, p := range []*phaseResult{refresh, batched} {
		c := p.cost
		if c.Node == nil || p.gen == nil || c.MachineBusy == 0 || c.Seconds <= 0 {
			continue
		}
		other := max(0, 100*(c.MachineBusy-c.Node.CPUSeconds-p.gen.CPUSeconds)/c.Seconds)
		m["other_cpu_percent_"+map[*phaseResult]string{refresh: "refresh", batched: "refresh_batched"}[p]] = other
		if other >= 10 {
			res.Notes = append(res.Notes, fmt.Sprintf("in the %s window other processes used %.0f%% CPU (100 = one core): its figures are disturbed", p.name, other))
		}
	}
	res.Seconds = login.seconds + refresh.seconds + batched.seconds
	res.Rate = m["logins_per_s"]
	res.Latency = result.Summarize(login.total)
	res.Ack = result.Summarize(refresh.total)
	res.Histogram = result.Buckets(login.total)
	ok := login.ops + refresh.reqs + batched.reqs
	failed := login.failed + refresh.failed + batched.failed
	res.Sent, res.Expected, res.Delivered = ok+failed, ok+failed, ok
	res.DeliveredRatio = float64(ok) / float64(ok+failed)
	res.Notes = append(res.Notes,
		"the node's identity.limit_number, limit_address and limit_prefix are raised (bench/node.go): every login comes from 127.0.0.1, and the numbers share ranges of 10,000",
		fmt.Sprintf("%d users at a time, each operation on its own connection over %s: a login is a full TLS handshake, login_start, its code read back from the node's SMS outbox file, login_verify; a refresh resumes the user's TLS session and sends token_refresh (1, or %d in a row per connection)",
			lb.cfg.Concurrency, lb.d.via(), refreshesPerConn),
		"latency (p50/p99 above) is a whole login, from the dial to login_result; ack latency a whole one-refresh connection")
	if lb.t.pid() != "" {
		res.Notes = append(res.Notes, "node CPU and RSS (node column) are those of the login window; node_cpu_us_per_connection is the one-a-connection refresh's CPU less the batched one's, per connection")
	}
	for _, p := range []*phaseResult{login, refresh, batched} {
		if p.failed > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %d failed; the first: %v", p.name, p.failed, p.firstErr))
		}
		if p.profile != "" {
			res.Notes = append(res.Notes, fmt.Sprintf("node CPU profile of the %s window: %s", p.name, p.profile))
		}
	}
	res.Met = failed == 0 && m["logins_per_s"] >= loginGoalPerSec && m["refreshes_per_s"] >= refreshGoalPerSec
}
