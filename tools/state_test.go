package tools

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/digitalid"
	"github.com/gonets/gonets/identity/esia"
	"github.com/gonets/gonets/identity/esiasim"
	"github.com/gonets/gonets/identity/signing/signsim"
	"github.com/gonets/gonets/identity/statesvc"
	"github.com/gonets/gonets/identity/status"
	"github.com/gonets/gonets/identity/status/statussim"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// stateMetricsConfig turns every state service on in cfg, at addresses
// nothing answers (a node without linked users calls none of them), so
// that their metrics are served: it writes the ESIA dev key pair into
// the data directory.
func stateMetricsConfig(t *testing.T, cfg *config) {
	t.Helper()
	writeDevKey(t, cfg.Node.DataDir)
	cfg.State.ESIA.Enabled, cfg.State.ESIA.ClientID, cfg.State.ESIA.BaseURL = true, "gonets", "http://127.0.0.1:9"
	cfg.State.Signing.Provider, cfg.State.Signing.HTTP.BaseURL = "http", "http://127.0.0.1:9"
	cfg.State.Status.Source, cfg.State.Status.HTTP.BaseURL = "http", "http://127.0.0.1:9"
}

// writeDevKey writes a new ESIA dev key pair into dir and returns its
// certificate's signer.
func writeDevKey(t *testing.T, dir string) *esia.DevSigner {
	t.Helper()
	cert, key, err := esia.GenerateDevKey("test ESIA dev signer")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := esia.WriteDevKey(dir, cert, key); err != nil {
		t.Fatal(err)
	}
	return esia.NewDevSigner(cert, key)
}

// TestStateConfig: the refusals of [state], each naming its key, and the
// services each configuration turns on.
func TestStateConfig(t *testing.T) {
	bad := func(change func(*config), want string) {
		t.Helper()
		c := defaultConfig()
		change(&c)
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validate = %v, want an error containing %q", err, want)
		}
	}
	esiaOn := func(c *config) { c.State.ESIA.Enabled, c.State.ESIA.ClientID = true, "gonets" }
	bad(func(c *config) { c.State.ESIA.Enabled = true }, "state.esia.enabled needs state.esia.client_id")
	bad(func(c *config) { esiaOn(c); c.State.ESIA.BaseURL = "" }, "state.esia.enabled needs state.esia.base_url")
	bad(func(c *config) { esiaOn(c); c.State.ESIA.BaseURL = "esia.gosuslugi.ru" }, "state.esia.base_url:")
	bad(func(c *config) { esiaOn(c); c.State.ESIA.Scopes = []string{"fullname"} }, "openid is required")
	bad(func(c *config) { esiaOn(c); c.Node.PublicAddr = "off" }, "state.esia.enabled needs the public listener")
	bad(func(c *config) { esiaOn(c); c.State.ESIA.Signer = "http" }, `state.esia.signer = "http" needs state.esia.signer_http.url`)
	bad(func(c *config) { esiaOn(c); c.State.ESIA.Signer = "gost" }, `state.esia.signer "gost"`)
	bad(func(c *config) { esiaOn(c); c.State.ESIA.RedirectURI = "/esia/callback" }, "state.esia.redirect_uri")
	bad(func(c *config) { esiaOn(c); c.Identity.Enabled = false }, "state.esia.enabled needs identity.enabled")
	bad(func(c *config) { c.State.Signing.Provider = "http" }, `state.signing.provider = "http" needs state.signing.http.base_url`)
	bad(func(c *config) { c.State.Signing.Provider = "cryptopro" }, `state.signing.provider "cryptopro"`)
	bad(func(c *config) { c.State.Signing.Provider = "sim"; c.Identity.Enabled = false }, "state.signing.provider needs identity.enabled")
	bad(func(c *config) { c.State.Status.Source = "http" }, `state.status.source = "http" needs state.status.http.base_url`)
	bad(func(c *config) { c.State.Status.Source = "smev" }, `state.status.source "smev"`)
	bad(func(c *config) {
		c.State.Status.Source, c.State.Status.HTTP.BaseURL, c.Identity.Enabled = "http", "http://127.0.0.1:1", false
	}, "state.status.source needs identity.enabled")
	bad(func(c *config) { c.State.Status.Concurrency = -1 }, "state.status.concurrency -1 is negative")
	bad(func(c *config) { c.State.CredentialTTL = duration(-time.Hour) }, "state.credential_ttl -1h0m0s is negative")
	bad(func(c *config) { c.State.PublicURL = "https://chat.example.org/?x=1" }, "state.public_url:")

	// --check-config loads the ESIA dev key pair as serve would.
	c := testConfig(t)
	esiaOn(&c)
	if err := checkConfig(c, io.Discard); err == nil || !strings.Contains(err.Error(), "gonets sim esia --dir") {
		t.Errorf("checkConfig without the dev key pair = %v, want the command that writes it", err)
	}
	writeDevKey(t, c.Node.DataDir)
	if err := checkConfig(c, io.Discard); err != nil {
		t.Errorf("checkConfig with the dev key pair: %v", err)
	}
	c.State.Status.Source, c.State.Status.HTTP.BaseURL, c.State.Status.HTTP.HeaderName = "http", "http://127.0.0.1:9", "Bad Header"
	if err := checkConfig(c, io.Discard); err == nil || !strings.Contains(err.Error(), "state.status.http") {
		t.Errorf("checkConfig with a bad header name = %v, want a state.status.http error", err)
	}

	parts := func(change func(*config), digital, esiaOn bool, signing, status string) {
		t.Helper()
		c := defaultConfig()
		change(&c)
		if err := c.validate(); err != nil {
			t.Fatal(err)
		}
		d, e, s, st := c.stateParts()
		if d != digital || e != esiaOn || s != signing || st != status {
			t.Errorf("stateParts = %v %v %q %q, want %v %v %q %q", d, e, s, st, digital, esiaOn, signing, status)
		}
	}
	parts(func(*config) {}, true, false, "", "")
	// Digital IDs are on by default, so that a node without accounts or
	// a public listener is no error: they are off there.
	parts(func(c *config) { c.Identity.Enabled = false }, false, false, "", "")
	parts(func(c *config) { c.Node.PublicAddr = "off" }, false, false, "", "")
	parts(func(c *config) { esiaOn(c); c.State.Signing.Provider = "sim" }, true, true, "sim", "")
}

// TestServeState runs the state services through gonets serve against
// the ESIA, signing and status simulators: a user logs in by phone,
// links their Gosuslugi account in a "browser" that follows the
// redirects, sees the person's names in Linked, gets a digital ID that
// verifies under the node's JWKS, finds their application's status in
// the Госуслуги chat, and signs a document another user sends them at
// the signing service.
func TestServeState(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	cfg.Calls.Enabled = false
	signer := writeDevKey(t, cfg.Node.DataDir)
	person := esiasim.DevPerson()

	// ESIA's simulator needs the node's redirect URI, which carries the
	// public listener's port: it is built once the node has started.
	var esiaSim atomic.Pointer[esiasim.Sim]
	esiaSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := esiaSim.Load(); s != nil {
			s.ServeHTTP(w, r)
			return
		}
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	}))
	defer esiaSrv.Close()
	signSim, err := signsim.New(signsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	signSrv := httptest.NewServer(signSim)
	defer signSrv.Close()
	statuses := statussim.New()
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	statuses.Add(person.OID, "100500", "Загранпаспорт", status.Status{Code: "accepted", Title: "Заявление принято", At: at})
	statusSrv := httptest.NewServer(statuses)
	defer statusSrv.Close()

	cfg.State.ESIA.Enabled, cfg.State.ESIA.BaseURL, cfg.State.ESIA.ClientID = true, esiaSrv.URL, "gonets"
	cfg.State.Signing.Provider, cfg.State.Signing.HTTP.BaseURL = "http", signSrv.URL
	// As in production: the signature must chain to the (simulated)
	// qualified CA and name the signer's SNILS.
	rootsFile := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(rootsFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: signSim.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.State.Signing.Roots, cfg.State.Signing.RequireSNILS = rootsFile, true
	cfg.State.Status.Source, cfg.State.Status.HTTP.BaseURL = "http", statusSrv.URL
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, errc := startServe(t, ctx, cfg, io.Discard)
	publicURL := b["state"][0]
	_, port, _ := strings.Cut(b["https"][0], "127.0.0.1:")
	if publicURL != "https://127.0.0.1:"+port {
		t.Fatalf("state banner line %q, want the default public URL on the public port %s", b["state"], port)
	}
	s, err := esiasim.New(esiasim.Options{ClientID: "gonets", RedirectURIs: []string{publicURL + statesvc.CallbackPath},
		Trusted: signer.Certificate(), Person: person, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	esiaSim.Store(s)

	addr := b["quic"][0]
	opts := client.Options{Fingerprint: b["tls"][0], NoReconnect: true, SendOnly: true, Logger: slog.New(slog.DiscardHandler)}
	rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
	defer rcancel()
	login := func(phone string) *client.Client {
		t.Helper()
		lc, err := client.StartLogin(rctx, addr, phone, opts)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := client.VerifyLogin(rctx, addr, lc.Attempt, outboxCode(t, filepath.Join(cfg.Node.DataDir, "sms-outbox.jsonl"), lc.Phone),
			client.DeviceName{Name: "test", Platform: "cli"}, opts)
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(rctx, addr, tok.Access, opts)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := login("+7 900 000-00-01")
	defer c.Close()

	// Link: the browser goes to ESIA, which approves and sends it back
	// to the node's callback ("127.0.0.1" there is the public listener).
	link, _, err := c.LinkStart(rctx, "esia")
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the node's self-signed certificate
	defer tr.CloseIdleConnections()
	// The browser follows ESIA's redirect to the callback, which sends
	// it on to the app's deep link with the code that finishes the link.
	browser := &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if req.URL.Scheme == "gonets" {
				return http.ErrUseLastResponse
			}
			return nil
		}}
	resp, err := browser.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	app, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || err != nil || app.Scheme != "gonets" || app.Query().Get("code") == "" ||
		!strings.Contains(string(page), "Вернитесь в приложение") || resp.Request.URL.Path != statesvc.CallbackPath {
		t.Fatalf("the link's last page %s: %d %q\n%s", resp.Request.URL, resp.StatusCode, resp.Header.Get("Location"), page)
	}
	acct, err := c.LinkFinish(rctx, app.Query().Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	if !acct.Linked || acct.Provider != "esia" || acct.FirstName != person.FirstName || acct.LastName != person.LastName ||
		acct.MiddleName != person.MiddleName || acct.BirthDate != "1990-03-15" {
		t.Fatalf("linked account %+v", acct)
	}

	// The JWKS holds the node's current key, and a digital ID verifies
	// under it.
	resp, err = browser.Get(publicURL + jwksPath)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/jwk-set+json" ||
		resp.Header.Get("Cache-Control") != "max-age=300" {
		t.Fatalf("GET %s: %d %v", jwksPath, resp.StatusCode, resp.Header)
	}
	ks, err := digitalid.ParseJWKS(jwks)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := token.ReadKeyring(cfg.Node.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	_, kid := ring.Current()
	if _, ok := ks.Key(kid); !ok {
		t.Fatalf("JWKS %s lacks the current key %s", jwks, kid)
	}
	_, holder, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := digitalid.Proof(holder, publicURL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cred, _, err := c.IssueCredential(rctx, proof)
	if err != nil {
		t.Fatal(err)
	}
	if got := kidOf(t, cred); got != kid {
		t.Fatalf("the digital ID is signed with %q, want the current key %q", got, kid)
	}

	// The application's status, once, in the Госуслуги chat.
	waitUntil(t, "the application status in the Госуслуги chat", func() bool {
		return len(applicationStatuses(t, rctx, c)) > 0
	})
	if got := applicationStatuses(t, rctx, c); len(got) != 1 || got[0].OrderId != "100500" || got[0].Code != "accepted" {
		t.Fatalf("application statuses %v", got)
	}

	// A document another user sends them to sign is signed at the
	// signing service, and the outcome comes back in the chat.
	other := login("+7 900 000-00-02")
	defer other.Close()
	chat, err := other.CreateChat(rctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{c.User()}, "")
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte("Договор аренды № 7")
	ack, err := other.SignRequest(rctx, client.SignRequestOptions{Chat: chat.Chat, Signer: c.User(), Title: "Договор", Document: doc})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SignDecision(rctx, fmt.Sprintf("%d.%d", chat.Chat, ack.Seq), true); err != nil {
		t.Fatal(err)
	}
	var res *wire.SignResult
	waitUntil(t, "the signing result in the chat", func() bool {
		res = signResult(t, rctx, other, chat.Chat)
		return res != nil
	})
	if res.State != "signed" {
		t.Fatalf("signing result %v", res)
	}
	if err := signsim.VerifySignature(doc, res.Signature, signSim.Certificate()); err != nil {
		t.Fatalf("the signature: %v", err)
	}

	other.Close()
	c.Close()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// signResult returns the signing result in chat, nil when none yet.
func signResult(t *testing.T, ctx context.Context, c *client.Client, chat uint64) *wire.SignResult {
	t.Helper()
	h, err := c.History(ctx, chat, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range h.Messages {
		if m.Kind != wire.MsgKind_MSG_KIND_SERVICE {
			continue
		}
		var ev wire.Service
		if err := proto.Unmarshal(m.Body, &ev); err != nil {
			t.Fatal(err)
		}
		if r := ev.GetSignResult(); r != nil {
			return r
		}
	}
	return nil
}

// applicationStatuses returns the application statuses in c's chats with
// the Госуслуги service user.
func applicationStatuses(t *testing.T, ctx context.Context, c *client.Client) []*wire.ApplicationStatus {
	t.Helper()
	page, err := c.Sync(ctx, 0, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []*wire.ApplicationStatus
	for _, d := range page.Dialogs {
		if d.Kind != wire.ChatKind_CHAT_KIND_DIRECT {
			continue
		}
		h, err := c.History(ctx, d.Chat, 1, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range h.Messages {
			if m.Sender != uint64(storage.GosuslugiUser) || m.Kind != wire.MsgKind_MSG_KIND_SERVICE {
				continue
			}
			var ev wire.Service
			if err := proto.Unmarshal(m.Body, &ev); err != nil {
				t.Fatal(err)
			}
			if s := ev.GetApplicationStatus(); s != nil {
				out = append(out, s)
			}
		}
	}
	return out
}

// TestPublicJWKS: the JWKS follows a key rotation at once, the callback
// is not served while ESIA linking is off, and the banner says which
// state services are on.
func TestPublicJWKS(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	cfg.Calls.Enabled = false
	s := startStreamNode(t, cfg)
	defer s.stop()
	kids := func() []string {
		t.Helper()
		resp, err := s.client.Get(s.base + jwksPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		ks, err := digitalid.ParseJWKS(b)
		if err != nil {
			t.Fatalf("GET %s: %d %s: %v", jwksPath, resp.StatusCode, b, err)
		}
		return ks.KeyIDs()
	}
	_, before := s.n.keys.Current()
	if got := kids(); len(got) != 1 || got[0] != before {
		t.Fatalf("JWKS kids %q, want [%s]", got, before)
	}
	cur, _, err := token.RotateKey(cfg.Node.DataDir, time.Hour, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s.n.reloadKeys()
	if got := kids(); len(got) != 2 || !slices.Contains(got, cur) || !slices.Contains(got, before) {
		t.Fatalf("JWKS kids after the rotation %q, want %s and %s", got, cur, before)
	}
	resp, err := s.client.Get(s.base + statesvc.CallbackPath + "?state=x&code=y")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("the callback with ESIA off: %d, want 404", resp.StatusCode)
	}
	var b strings.Builder
	s.n.printBanner(&b)
	if want := "  state https://127.0.0.1:" + s.n.publicPort() + "  (digital IDs; JWKS " + jwksPath + ")\n"; !strings.Contains(b.String(), want) {
		t.Errorf("banner lacks %q:\n%s", want, b.String())
	}
}
