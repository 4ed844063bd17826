package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"github.com/gonets/gonets/bench/result"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/digitalid"
)

// IDScenario is the digital ID scenario's name: gonets bench id.
const IDScenario = "id"

// idGoalPerSec is the digital ID scenario's goal: presentations verified
// per second on one core.
const idGoalPerSec = 5000

// The parties of the digital ID scenario: the node that issues, as its
// credentials name it, and the one verifier (a shop) that checks them.
const (
	idIssuerURL  = "https://node.bench.gonets.invalid"
	idIssuerKID  = "bench-1"
	idVerifierID = "https://shop.bench.gonets.invalid/age-check"
)

// IDConfig is one digital ID scenario run's parameters. The zero value of
// a field means its default, given in the comment.
type IDConfig struct {
	// Credentials is how many distinct credentials are issued, each to
	// its own holder key, and presented once a run. Default: 20,000.
	Credentials int
	// Runs is how many times the issue and verify phases are timed; the
	// figures are their medians. Default: 5.
	Runs int
	// Cores is the GOMAXPROCS of the verify phase, and its goroutines.
	// Default: 1, the goal's one core. The issue phase runs on one.
	Cores int
	// Ed25519Share is the share of holders, 0 to 1, whose device key is
	// Ed25519; the rest hold P-256 keys, as phones' secure elements do.
	// Default: 0, every holder on P-256 (gonets bench id's flag gives 0.2).
	Ed25519Share float64
	// TamperedShare is the share of presentations, 0 to 1, whose
	// age_over_18 disclosure is swapped for a forged one: each must be
	// refused. Default: 0.
	TamperedShare float64
	// Live, when set, gets a line per run.
	Live io.Writer
}

func (c IDConfig) withDefaults() IDConfig {
	if c.Credentials == 0 {
		c.Credentials = 20000
	}
	if c.Runs == 0 {
		c.Runs = 5
	}
	if c.Cores == 0 {
		c.Cores = 1
	}
	return c
}

func (c IDConfig) validate() error {
	var errs []error
	if c.Credentials < 2 || c.Runs < 1 || c.Cores < 1 {
		errs = append(errs, fmt.Errorf("bench: id: --credentials %d, --runs %d, --cores %d: at least 2, 1 and 1", c.Credentials, c.Runs, c.Cores))
	}
	if c.Cores > c.Credentials {
		errs = append(errs, fmt.Errorf("bench: id: --cores %d above --credentials %d", c.Cores, c.Credentials))
	}
	if !(c.Ed25519Share >= 0 && c.Ed25519Share <= 1) || !(c.TamperedShare >= 0 && c.TamperedShare < 1) {
		errs = append(errs, fmt.Errorf("bench: id: --ed25519-share %g and --tampered %g: shares from 0 to 1 (tampered below 1)", c.Ed25519Share, c.TamperedShare))
	}
	return errors.Join(errs...)
}

// idBench is one run of the digital ID scenario: the node's issuer, the
// verifier's key set from the node's JWKS, and the holders.
type idBench struct {
	cfg     IDConfig
	issuer  *digitalid.Issuer
	keys    *digitalid.KeySet
	holders []idHolder
}

// idHolder is one person with a phone: the device key, the attributes the
// state identity provider verified, and the credential of the last issue
// phase.
type idHolder struct {
	key   crypto.Signer
	ed    bool // key is Ed25519; otherwise P-256
	attrs identity.Attributes
	sdjwt string
	proof string
}

// idPresentation is what the verifier is shown: the presentation, the
// nonce of its QR code, the claims it asked for, and what it must decide.
type idPresentation struct {
	text     string
	nonce    string
	asked    []string
	ed       bool
	tampered bool
}

// The claims the verifier asks for: age alone, or age and name.
var (
	idAskAge     = []string{digitalid.ClaimAgeOver18}
	idAskAgeName = []string{digitalid.ClaimAgeOver18, digitalid.ClaimGivenName, digitalid.ClaimFamilyName}
)

// idRun is what one run measured.
type idRun struct {
	issues         int
	issueSeconds   float64
	issueCPU       float64
	verifies       int
	verifySeconds  float64
	verifyCPU      float64
	accepted       int
	refused        int
	tamperedCaught int
	failures       int // a genuine presentation refused, or a tampered one accepted
	firstErr       error
}

// verifyHist indexes the verify latency histograms: by holder key
// (0 P-256, 1 Ed25519) and by disclosures (0 one, 1 three).
type verifyHist [2][2]*hdrhistogram.Histogram

func newVerifyHist() *verifyHist {
	var h verifyHist
	for k := range h {
		for d := range h[k] {
			h[k][d] = result.NewHistogram()
		}
	}
	return &h
}

func (h *verifyHist) merge(o *verifyHist) {
	for k := range h {
		for d := range h[k] {
			h[k][d].Merge(o[k][d])
		}
	}
}

// sum returns the histogram of the entries where pick says yes.
func (h *verifyHist) sum(pick func(ed, three bool) bool) *hdrhistogram.Histogram {
	out := result.NewHistogram()
	for k := range h {
		for d := range h[k] {
			if pick(k == 1, d == 1) {
				out.Merge(h[k][d])
			}
		}
	}
	return out
}

// RunDigitalID runs the digital ID scenario in this process and returns
// its result: the node's cost to issue a credential, and how many
// presentations a verifier checks per second.
//
// Once: an Ed25519 issuer key, the node's Issuer and its JWKS, which the
// verifier parses; Credentials holders, each with its own device key
// (P-256, or Ed25519 for Ed25519Share of them) and attributes. Each run
// then has three phases:
//
//   - issue, timed, with GOMAXPROCS pinned to 1: for every holder the node checks the
//     holder's proof of possession (digitalid.VerifyProof) and issues the
//     credential (Claims and Issuer.Issue), one after another;
//   - present, not timed, on every core: each holder presents its
//     credential to the verifier with a nonce of its own, half of them
//     disclosing age_over_18 alone and half age_over_18, given_name and
//     family_name; TamperedShare of them get a forged age_over_18;
//   - verify, timed, with GOMAXPROCS pinned to Cores and as many
//     goroutines: the verifier checks each presentation as it would
//     offline (digitalid.Verify with the JWKS's keys, its audience, the
//     nonce, the claims it asked for, and a NonceCache, so the replay
//     check is on), and that age_over_18 is true.
//
// GOMAXPROCS is restored after each timed phase. CPU time is the whole
// process's (getrusage), the garbage collector's included. The phases
// carry a pprof label, phase=issue|present|verify, so that a CPU profile
// of the run can be cut to one (go tool pprof -tagfocus phase=verify).
func RunDigitalID(ctx context.Context, cfg IDConfig) (*result.Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	res := &result.Result{Scenario: IDScenario, Target: "gonets-digitalid", Started: time.Now(), Machine: machine(), Metrics: map[string]float64{}}
	res.Params = map[string]any{"credentials": cfg.Credentials, "runs": cfg.Runs, "cores": cfg.Cores,
		"ed25519_share": cfg.Ed25519Share, "tampered_share": cfg.TamperedShare}
	res.Goal = fmt.Sprintf("at least %d verifies/s on one core (GOMAXPROCS=1, replay check on)", idGoalPerSec)
	if load, err := loadAverage(); err == nil {
		res.Metrics["load_average_1m"] = load
	}
	b, err := newIDBench(cfg)
	if err != nil {
		return nil, err
	}
	issueHist, verifyH := result.NewHistogram(), newVerifyHist()
	runs := make([]idRun, 0, cfg.Runs)
	for r := range cfg.Runs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		run, err := b.run(ctx, issueHist, verifyH)
		if err != nil {
			return nil, err
		}
		runs = append(runs, run)
		if cfg.Live != nil {
			fmt.Fprintf(cfg.Live, "id run %d/%d: issue %6.0f/s, verify %6.0f/s on %d core(s)\n", r+1, cfg.Runs,
				float64(run.issues)/run.issueSeconds, float64(run.verifies)/run.verifySeconds, cfg.Cores)
		}
	}
	b.report(res, runs, issueHist, verifyH)
	res.Seconds = time.Since(res.Started).Seconds()
	return res, nil
}

// newIDBench makes the issuer, the verifier's key set and the holders.
func newIDBench(cfg IDConfig) (*idBench, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bench: id: issuer key: %w", err)
	}
	iss, err := digitalid.NewIssuer(digitalid.IssuerOptions{Issuer: idIssuerURL, Key: key, KeyID: idIssuerKID})
	if err != nil {
		return nil, fmt.Errorf("bench: id: %w", err)
	}
	jwks, err := digitalid.JWKS(map[string]ed25519.PublicKey{idIssuerKID: key.Public().(ed25519.PublicKey)})
	if err != nil {
		return nil, fmt.Errorf("bench: id: %w", err)
	}
	keys, err := digitalid.ParseJWKS(jwks)
	if err != nil {
		return nil, fmt.Errorf("bench: id: %w", err)
	}
	b := &idBench{cfg: cfg, issuer: iss, keys: keys, holders: make([]idHolder, cfg.Credentials)}
	edEvery := shareMarks(cfg.Credentials, cfg.Ed25519Share)
	err = parallel(cfg.Credentials, func(i int) error {
		h := &b.holders[i]
		h.attrs = benchAttributes(i)
		if h.ed = edEvery(i); h.ed {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			h.key = k
			return err
		}
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		h.key = k
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bench: id: holder key: %w", err)
	}
	return b, nil
}

// shareMarks returns whether item i of n is among the share of them,
// spread evenly: item i is when floor((i+1)·share) grows at i.
func shareMarks(n int, share float64) func(i int) bool {
	return func(i int) bool {
		return int(float64(i+1)*share) > int(float64(i)*share)
	}
}

// tamperedMarks returns whether presentation i is to be forged: the
// tampered share counted from the end, so that it falls apart from the
// Ed25519 holders, counted from the start.
func (b *idBench) tamperedMarks() func(i int) bool {
	n := len(b.holders)
	mark := shareMarks(n, b.cfg.TamperedShare)
	return func(i int) bool { return mark(n - 1 - i) }
}

// benchAttributes returns person i's attributes, as a state identity
// provider would give them: an adult with a name, and for some a student
// or pensioner status.
func benchAttributes(i int) identity.Attributes {
	first := []string{"Иван", "Мария", "Алексей", "Ольга", "Дмитрий", "Анна"}
	last := []string{"Иванов", "Петрова", "Смирнов", "Кузнецова", "Попов", "Соколова"}
	a := identity.Attributes{Provider: "esia", Subject: fmt.Sprint(1_000_000 + i), Trusted: true,
		FirstName: first[i%len(first)], LastName: last[i%len(last)], MiddleName: "Петрович",
		BirthDate: fmt.Sprintf("%d-%02d-%02d", 1950+i%50, 1+i%12, 1+i%28)}
	if i%3 == 0 {
		yes := i%2 == 0
		a.Student = &yes
	}
	if i%5 == 0 {
		yes := i%4 == 0
		a.Pensioner = &yes
	}
	return a
}

// run runs the three phases once, adding the latencies to the histograms.
func (b *idBench) run(ctx context.Context, issueHist *hdrhistogram.Histogram, verifyH *verifyHist) (idRun, error) {
	var run idRun
	var err error
	now := time.Now()
	// The holders' proofs, made on their phones: not timed.
	labelled(ctx, "present", func() {
		err = parallel(len(b.holders), func(i int) error {
			h := &b.holders[i]
			var perr error
			h.proof, perr = digitalid.Proof(h.key, idIssuerURL, now)
			return perr
		})
	})
	if err != nil {
		return run, fmt.Errorf("bench: id: proof: %w", err)
	}
	labelled(ctx, "issue", func() { err = b.issue(&run, issueHist) })
	if err != nil {
		return run, err
	}
	var ps []idPresentation
	labelled(ctx, "present", func() { ps, err = b.present() })
	if err != nil {
		return run, err
	}
	labelled(ctx, "verify", func() { b.verify(&run, ps, verifyH) })
	return run, nil
}

// labelled runs f with the pprof label phase=phase on its goroutine and
// those it starts.
func labelled(ctx context.Context, phase string, f func()) {
	pprof.Do(ctx, pprof.Labels("phase", phase), func(context.Context) { f() })
}

// issue is the node's side: for each holder in turn, the proof checked
// and the credential issued, on one core.
func (b *idBench) issue(run *idRun, hist *hdrhistogram.Histogram) error {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	runtime.GC() // the garbage of the untimed proofs is not the issuer's
	cpu0 := processCPU()
	start := time.Now()
	for i := range b.holders {
		h := &b.holders[i]
		t0 := time.Now()
		pub, err := digitalid.VerifyProof(h.proof, idIssuerURL, t0)
		if err != nil {
			return fmt.Errorf("bench: id: proof of holder %d: %w", i, err)
		}
		h.sdjwt, err = b.issuer.Issue(h.attrs.Subject, pub, digitalid.Claims(h.attrs, t0))
		if err != nil {
			return fmt.Errorf("bench: id: issue to holder %d: %w", i, err)
		}
		hist.RecordValue(max(1, time.Since(t0).Microseconds()))
	}
	run.issueSeconds = time.Since(start).Seconds()
	run.issueCPU = processCPU() - cpu0
	run.issues = len(b.holders)
	return nil
}

// present makes each holder's presentation to the verifier, with a nonce
// of its own, on every core: the phones' work, not timed.
func (b *idBench) present() ([]idPresentation, error) {
	ps := make([]idPresentation, len(b.holders))
	tampered := b.tamperedMarks()
	now := time.Now()
	err := parallel(len(b.holders), func(i int) error {
		h := &b.holders[i]
		p := idPresentation{nonce: digitalid.NewNonce(), asked: idAskAge, ed: h.ed, tampered: tampered(i)}
		if i%2 == 1 {
			p.asked = idAskAgeName
		}
		var err error
		if p.text, err = digitalid.Present(h.sdjwt, h.key, p.asked, idVerifierID, p.nonce, now); err != nil {
			return fmt.Errorf("bench: id: present %d: %w", i, err)
		}
		if p.tampered {
			if p.text, err = forgeAge(p.text); err != nil {
				return err
			}
		}
		ps[i] = p
		return nil
	})
	return ps, err
}

// forgeAge swaps a presentation's age_over_18 disclosure for one the
// holder made up, with a fresh salt: what someone under age would try.
func forgeAge(p string) (string, error) {
	seg := strings.Split(p, "~")
	for i := 1; i < len(seg)-1; i++ {
		raw, err := base64.RawURLEncoding.DecodeString(seg[i])
		if err != nil {
			return "", fmt.Errorf("bench: id: forge: %w", err)
		}
		var d []any
		if json.Unmarshal(raw, &d) != nil || len(d) != 3 || d[1] != digitalid.ClaimAgeOver18 {
			continue
		}
		forged, err := json.Marshal([]any{digitalid.NewNonce(), digitalid.ClaimAgeOver18, true})
		if err != nil {
			return "", fmt.Errorf("bench: id: forge: %w", err)
		}
		seg[i] = base64.RawURLEncoding.EncodeToString(forged)
		return strings.Join(seg, "~"), nil
	}
	return "", errors.New("bench: id: forge: no age_over_18 disclosure")
}

// verify is the verifier's side: every presentation checked, with
// GOMAXPROCS pinned to Cores and Cores goroutines, each taking its own
// slice of them, against one NonceCache.
func (b *idBench) verify(run *idRun, ps []idPresentation, hist *verifyHist) {
	n := b.cfg.Cores
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(n))
	cache := digitalid.NewNonceCache(time.Minute, len(ps))
	tallies := make([]idRun, n)
	hists := make([]*verifyHist, n)
	for w := range hists {
		hists[w] = newVerifyHist()
	}
	runtime.GC() // the garbage of the untimed presentations is not the verifier's
	cpu0 := processCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range n {
		lo, hi := w*len(ps)/n, (w+1)*len(ps)/n
		wg.Go(func() { b.verifySlice(&tallies[w], ps[lo:hi], cache, hists[w]) })
	}
	wg.Wait()
	run.verifySeconds = time.Since(start).Seconds()
	run.verifyCPU = processCPU() - cpu0
	for w, t := range tallies {
		run.verifies += t.verifies
		run.accepted += t.accepted
		run.refused += t.refused
		run.tamperedCaught += t.tamperedCaught
		run.failures += t.failures
		run.firstErr = cmpErr(run.firstErr, t.firstErr)
		hist.merge(hists[w])
	}
}

// verifySlice verifies ps one after another, as one verifier's goroutine.
// A genuine presentation's latency goes into hist; a tampered one's does
// not.
func (b *idBench) verifySlice(t *idRun, ps []idPresentation, cache *digitalid.NonceCache, hist *verifyHist) {
	for i := range ps {
		p := &ps[i]
		t0 := time.Now()
		r, err := digitalid.Verify(p.text, digitalid.VerifyOptions{Keys: b.keys, Issuer: idIssuerURL, Audience: idVerifierID,
			Nonce: p.nonce, Allowed: p.asked, Required: p.asked, Replay: cache})
		ok := err == nil && r.Claims[digitalid.ClaimAgeOver18] == true
		d := time.Since(t0)
		t.verifies++
		switch {
		case ok && !p.tampered:
			t.accepted++
			k, disc := 0, 0
			if p.ed {
				k = 1
			}
			if len(p.asked) > 1 {
				disc = 1
			}
			hist[k][disc].RecordValue(max(1, d.Microseconds()))
		case !ok && p.tampered:
			t.refused++
			t.tamperedCaught++
		case ok: // tampered, and accepted
			t.accepted++
			t.failures++
			t.firstErr = cmpErr(t.firstErr, errors.New("bench: id: a forged age_over_18 was accepted"))
		default:
			t.refused++
			t.failures++
			if err == nil {
				err = fmt.Errorf("age_over_18 is %v", r.Claims[digitalid.ClaimAgeOver18])
			}
			t.firstErr = cmpErr(t.firstErr, fmt.Errorf("bench: id: a genuine presentation was refused: %w", err))
		}
	}
}

// report fills the result from the runs: rates and costs are the runs'
// medians, latencies those of every run together.
func (b *idBench) report(res *result.Result, runs []idRun, issueHist *hdrhistogram.Histogram, vh *verifyHist) {
	m := res.Metrics
	median := func(f func(r idRun) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	perSec := func(r idRun) float64 { return float64(r.verifies) / r.verifySeconds }
	us := func(h *hdrhistogram.Histogram, q float64) float64 { return float64(h.ValueAtQuantile(q)) }
	m["verifies_per_s"] = median(perSec)
	m["verifies_per_s_min"] = minOf(runs, perSec)
	m["verifies_per_s_max"] = -minOf(runs, func(r idRun) float64 { return -perSec(r) })
	m["verify_us"] = median(func(r idRun) float64 { return 1e6 * r.verifySeconds / float64(r.verifies) })
	m["verify_cpu_us"] = median(func(r idRun) float64 { return 1e6 * r.verifyCPU / float64(r.verifies) })
	m["verifies_per_cpu_s"] = median(func(r idRun) float64 { return float64(r.verifies) / r.verifyCPU })
	all := vh.sum(func(bool, bool) bool { return true })
	m["verify_p50_us"], m["verify_p99_us"] = us(all, 50), us(all, 99)
	for _, c := range []struct {
		name      string
		ed, three bool
	}{{"p256_1", false, false}, {"p256_3", false, true}, {"ed25519_1", true, false}, {"ed25519_3", true, true}} {
		h := vh.sum(func(ed, three bool) bool { return ed == c.ed && three == c.three })
		if h.TotalCount() > 0 {
			m["verify_"+c.name+"_p50_us"] = us(h, 50)
		}
	}
	m["issues_per_s"] = median(func(r idRun) float64 { return float64(r.issues) / r.issueSeconds })
	m["issue_us"] = median(func(r idRun) float64 { return 1e6 * r.issueSeconds / float64(r.issues) })
	m["issue_cpu_us"] = median(func(r idRun) float64 { return 1e6 * r.issueCPU / float64(r.issues) })
	m["issue_p50_us"], m["issue_p99_us"] = us(issueHist, 50), us(issueHist, 99)

	var verifies, accepted, refused, caught, failures int
	var firstErr error
	for _, r := range runs {
		verifies += r.verifies
		accepted += r.accepted
		refused += r.refused
		caught += r.tamperedCaught
		failures += r.failures
		firstErr = cmpErr(firstErr, r.firstErr)
	}
	tampered, isTampered := 0, b.tamperedMarks()
	for i := range b.holders {
		if isTampered(i) {
			tampered++
		}
	}
	ed := 0
	for _, h := range b.holders {
		if h.ed {
			ed++
		}
	}
	m["credentials"] = float64(len(b.holders))
	m["holders_ed25519"], m["holders_p256"] = float64(ed), float64(len(b.holders)-ed)
	m["verifies"], m["accepted"], m["refused"] = float64(verifies), float64(accepted), float64(refused)
	m["tampered"], m["tampered_refused"] = float64(tampered*len(runs)), float64(caught)
	m["failures"] = float64(failures)
	m["cores"] = float64(b.cfg.Cores)

	res.Rate = m["verifies_per_s"]
	res.Latency = result.Summarize(all)
	res.Ack = result.Summarize(issueHist)
	res.Histogram = result.Buckets(all)
	genuine := int64(verifies - tampered*len(runs))
	res.Sent, res.Expected = int64(verifies), genuine
	res.Delivered = int64(accepted - (tampered*len(runs) - caught)) // the genuine ones accepted
	res.DeliveredRatio = float64(res.Delivered) / float64(genuine)
	res.Notes = append(res.Notes,
		"generator and verifier in one process: the holders' proofs and presentations are made between the timed phases, on every core, and are not timed",
		fmt.Sprintf("%d credentials from one Ed25519 issuer key, %d holders on P-256 and %d on Ed25519; a run issues them all, then presents each once with its own nonce (half age_over_18 alone, half with given_name and family_name) and verifies them all against one NonceCache",
			len(b.holders), len(b.holders)-ed, ed),
		fmt.Sprintf("GOMAXPROCS=%d for the verify phase, 1 for the issue phase; rates, µs and CPU per operation are the median of %d runs, p50/p99 of every run together; CPU is the process's (getrusage: user+sys), the garbage collector's included", b.cfg.Cores, len(runs)),
		"issue: the node's work per credential request in process: VerifyProof, Claims and Issuer.Issue, one request after another (its latency is the result's ack_latency); over the wire (IssueCredential, which needs a node with a linked Gosuslugi account) it is not measured here",
		"the result's latency is one Verify of a genuine presentation")
	if tampered > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d presentations a run carry a forged age_over_18 disclosure and must be refused; they count in verifies/s, not in the latencies", tampered))
	}
	if firstErr != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("%d verify failures; the first: %v", failures, firstErr))
	}
	if b.cfg.Cores != 1 {
		res.Notes = append(res.Notes, fmt.Sprintf("on %d cores: the goal is one core's, not judged here", b.cfg.Cores))
	}
	res.Met = failures == 0 && b.cfg.Cores == 1 && m["verifies_per_s"] >= idGoalPerSec
}

// minOf returns the least f over runs.
func minOf(runs []idRun, f func(r idRun) float64) float64 {
	least := f(runs[0])
	for _, r := range runs[1:] {
		least = min(least, f(r))
	}
	return least
}

// parallel calls f(i) for i in [0, n) on as many goroutines as there are
// cores, and returns the first error.
func parallel(n int, f func(i int) error) error {
	workers := min(n, runtime.NumCPU())
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w * n / workers; i < (w+1)*n/workers && errs[w] == nil; i++ {
				errs[w] = f(i)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// processCPU returns the CPU seconds this process has used, user and
// system, all threads, from getrusage.
func processCPU() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// loadAverage returns the machine's load average over the last minute.
func loadAverage() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, err
	}
	var load float64
	_, err = fmt.Sscan(string(b), &load)
	return load, err
}

// WriteDigitalID prints a digital ID scenario's result for a person: the
// verify and issue figures, the machine, the goal and the notes.
func WriteDigitalID(w io.Writer, r *result.Result) {
	m := r.Metrics
	cores := int(m["cores"])
	fmt.Fprintf(w, "verify: %.0f verifies/s on %d core(s) (median of %v runs; %.0f – %.0f), %.1f µs/verify, CPU %.1f µs/verify (getrusage)\n",
		m["verifies_per_s"], cores, r.Params["runs"], m["verifies_per_s_min"], m["verifies_per_s_max"], m["verify_us"], m["verify_cpu_us"])
	fmt.Fprintf(w, "        one verify p50 %.0f µs, p99 %.0f µs; p50 by holder key and disclosures:", m["verify_p50_us"], m["verify_p99_us"])
	for _, k := range []string{"p256_1", "p256_3", "ed25519_1", "ed25519_3"} {
		if v, ok := m["verify_"+k+"_p50_us"]; ok {
			fmt.Fprintf(w, " %s %.0f µs", k, v)
		}
	}
	fmt.Fprintf(w, "\n        %.0f verified, %.0f accepted, %.0f refused (%.0f of %.0f tampered refused), %.0f failures\n",
		m["verifies"], m["accepted"], m["refused"], m["tampered_refused"], m["tampered"], m["failures"])
	fmt.Fprintf(w, "issue:  %.0f issues/s on 1 core (VerifyProof + Claims + Issue), %.1f µs/issue, CPU %.1f µs/issue; p50 %.0f µs, p99 %.0f µs\n",
		m["issues_per_s"], m["issue_us"], m["issue_cpu_us"], m["issue_p50_us"], m["issue_p99_us"])
	mc := r.Machine
	fmt.Fprintf(w, "machine: %s, %d cores, %s, %s; load average %.2f at the start\n", mc.CPUModel, mc.CPUs, mc.GoVersion, mc.OS, m["load_average_1m"])
	fmt.Fprintf(w, "goal: %s: met=%v\n", r.Goal, r.Met)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}
