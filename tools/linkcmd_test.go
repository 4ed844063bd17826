package tools

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/gonets/gonets/identity/esiasim"
	"github.com/gonets/gonets/identity/signing/signsim"
	"github.com/gonets/gonets/identity/statesvc"
)

// stateTestNode is gonets serve with ESIA linking and signing on,
// against their simulators, as TestServeState runs it.
type stateTestNode struct {
	addr, fingerprint, publicURL, dataDir string
	signSim                               *signsim.Sim
	stop                                  func()
}

// startStateNode starts a stateTestNode; call stop before the test's
// leak check.
func startStateNode(t *testing.T) *stateTestNode {
	t.Helper()
	cfg := testConfig(t)
	cfg.Calls.Enabled = false
	signer := writeDevKey(t, cfg.Node.DataDir)
	var esiaSim atomic.Pointer[esiasim.Sim]
	esiaSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := esiaSim.Load(); s != nil {
			s.ServeHTTP(w, r)
			return
		}
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	}))
	signSim, err := signsim.New(signsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	signSrv := httptest.NewServer(signSim)
	cfg.State.ESIA.Enabled, cfg.State.ESIA.BaseURL, cfg.State.ESIA.ClientID = true, esiaSrv.URL, "gonets"
	cfg.State.Signing.Provider, cfg.State.Signing.HTTP.BaseURL = "http", signSrv.URL
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b, errc := startServe(t, ctx, cfg, io.Discard)
	n := &stateTestNode{addr: b["quic"][0], fingerprint: b["tls"][0], publicURL: b["state"][0], dataDir: cfg.Node.DataDir, signSim: signSim}
	n.stop = func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("serve: %v", err)
		}
		esiaSrv.Close()
		signSrv.Close()
	}
	s, err := esiasim.New(esiasim.Options{ClientID: "gonets", RedirectURIs: []string{n.publicURL + statesvc.CallbackPath},
		Trusted: signer.Certificate(), Person: esiasim.DevPerson(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		n.stop()
		t.Fatal(err)
	}
	esiaSim.Store(s)
	return n
}

// login logs phone in with gonets login and saves it as profile.
func (n *stateTestNode) login(t *testing.T, phone, profile string) loginLine {
	t.Helper()
	code, out, errOut := run("login", "--phone", phone, "--profile", profile, "--server", n.addr, "--fingerprint", n.fingerprint,
		"--outbox", filepath.Join(n.dataDir, "sms-outbox.jsonl"))
	if code != 0 {
		t.Fatalf("login %s: exit %d: %s", phone, code, errOut)
	}
	return decodeLogin(t, out)
}

// link links profile's user with gonets link esia --open and returns
// its output.
func (n *stateTestNode) link(t *testing.T, profile string, extra ...string) string {
	t.Helper()
	code, out, errOut := run(append([]string{"link", "esia", "--open", "--profile", profile}, extra...)...)
	if code != 0 {
		t.Fatalf("link esia --open: exit %d: %s%s", code, out, errOut)
	}
	return out
}

func TestLinkOpen(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	testProfiles(t)
	n := startStateNode(t)
	defer n.stop()
	n.login(t, "+79000000001", "alice")
	person := esiasim.DevPerson()

	// Not linked yet.
	if code, out, errOut := run("link", "show", "--profile", "alice"); code != 0 || !strings.Contains(out, "no state account linked") {
		t.Fatalf("link show before: exit %d: %q %s", code, out, errOut)
	}
	out := n.link(t, "alice")
	for _, want := range []string{"Open this URL", "/aas/oauth2/v2/ac?", "linked:     esia", person.LastName + " " + person.FirstName + " " + person.MiddleName,
		"birth date: 1990-03-15", "SNILS:      ***-***-*** 64"} {
		if !strings.Contains(out, want) {
			t.Errorf("link esia --open output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "123-456-789") {
		t.Errorf("link esia printed the SNILS unmasked:\n%s", out)
	}

	// link show: the same account, every field with --json.
	code, out, errOut := run("link", "show", "--profile", "alice", "--json")
	var j linkedJSON
	if code != 0 || json.Unmarshal([]byte(out), &j) != nil {
		t.Fatalf("link show --json: exit %d: %q %s", code, out, errOut)
	}
	if !j.Linked || j.Provider != "esia" || j.FirstName != person.FirstName || j.BirthDate != "1990-03-15" || j.SNILS != "123-456-789 64" || j.VerifiedAt == nil {
		t.Fatalf("link show --json: %+v", j)
	}
	if code, out, _ := run("link", "show", "--profile", "alice"); code != 0 || !strings.Contains(out, "SNILS:      ***-***-*** 64") {
		t.Fatalf("link show: exit %d: %q", code, out)
	}

	// A code works once.
	if code, _, errOut := run("link", "esia", "--profile", "alice", "--code", "gonets://link?code=nope"); code != 1 || !strings.Contains(errOut, "BAD_REQUEST") {
		t.Fatalf("link esia --code with an unknown code: exit %d: %s", code, errOut)
	}

	// remove, then show says none, and a second remove is NOT_LINKED.
	if code, _, errOut := run("link", "remove", "--profile", "alice"); code != 0 || !strings.Contains(errOut, "unlinked") {
		t.Fatalf("link remove: exit %d: %s", code, errOut)
	}
	if code, out, _ := run("link", "show", "--profile", "alice"); code != 0 || !strings.Contains(out, "no state account linked") {
		t.Fatalf("link show after remove: exit %d: %q", code, out)
	}
	if code, _, errOut := run("link", "remove", "--profile", "alice"); code != 1 || !strings.Contains(errOut, "NOT_LINKED") {
		t.Fatalf("second link remove: exit %d: %s", code, errOut)
	}
}

// TestLinkPrompt: without --open the command prints the URL and reads
// the deep link pasted on the terminal.
func TestLinkPrompt(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	testProfiles(t)
	n := startStateNode(t)
	defer n.stop()
	n.login(t, "+79000000001", "alice")

	// The "browser": reads the URL the command prints, consents, and
	// pastes the deep link back.
	pr, pw := io.Pipe()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- linkMain([]string{"esia", "--profile", "alice", "--json"}, pr, &out, &errOut)
	}()
	var link string
	waitUntil(t, "the link URL", func() bool {
		for l := range strings.Lines(errOut.String()) {
			if strings.HasPrefix(l, "http") {
				link = strings.TrimSpace(l)
			}
		}
		return link != "" && strings.Contains(errOut.String(), "paste the gonets://link")
	})
	cf := &clientFlags{insecure: true}
	code, err := cf.followConsent(context.Background(), link)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(pw, "  gonets://link?code="+code+"  \n")
	if c := <-done; c != 0 {
		t.Fatalf("link esia: exit %d: %s", c, errOut.String())
	}
	pw.Close()
	var j linkedJSON
	if err := json.Unmarshal([]byte(out.String()), &j); err != nil || !j.Linked || j.SNILS != "123-456-789 64" {
		t.Fatalf("link esia --json printed %q (%v)", out.String(), err)
	}

	// The input ending without a code says how to finish.
	if c := linkMain([]string{"esia", "--profile", "alice"}, strings.NewReader(""), io.Discard, &errOut); c != 1 ||
		!strings.Contains(errOut.String(), "gonets link esia --code") {
		t.Fatalf("link esia, no input: exit %d: %s", c, errOut.String())
	}
}

func TestLinkHelpers(t *testing.T) {
	for in, want := range map[string]string{
		"abc123":                        "abc123",
		" gonets://link?code=abc123\n":  "abc123",
		"gonets://link?code=a%2Bb&x=1":  "a+b",
		"https://evil/link?code=abc123": "",
		"gonets://link?state=1":         "",
		"a b":                           "",
		"":                              "",
	} {
		got, err := parseLinkCode(in)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("parseLinkCode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"123-456-789 64": "***-***-*** 64",
		"12345678964":    "*********64",
		"7":              "7",
	} {
		if got := maskSNILS(in); got != want {
			t.Errorf("maskSNILS(%q) = %q, want %q", in, got, want)
		}
	}
	if code, _, errOut := run("link"); code != 2 || !strings.Contains(errOut, "esia, show or remove") {
		t.Errorf("link: exit %d: %s", code, errOut)
	}
	if code, _, errOut := run("link", "esia", "--code", "x", "--open"); code != 2 || !strings.Contains(errOut, "exclusive") {
		t.Errorf("link esia --code --open: exit %d: %s", code, errOut)
	}
}
