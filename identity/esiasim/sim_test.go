package esiasim_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/gonets/gonets/identity/esia"
	"github.com/gonets/gonets/identity/esiasim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	callback      = "https://node.example/esia/callback"
	otherCallback = "https://node.example/esia/other"
)

// clock is a settable clock shared by a sim and its clients.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

// env is a simulator on 127.0.0.1 and what a test needs around it.
type env struct {
	t     *testing.T
	sim   *esiasim.Sim
	srv   *httptest.Server
	dev   *esia.DevSigner
	clock *clock
}

func newEnv(t *testing.T, mod func(*esiasim.Options)) *env {
	t.Helper()
	cert, key, err := esia.GenerateDevKey("operator")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dev: esia.NewDevSigner(cert, key), clock: &clock{}}
	o := esiasim.Options{
		ClientID:     "gonets",
		RedirectURIs: []string{callback, otherCallback},
		Trusted:      cert,
		Person:       esiasim.DevPerson(),
		Now:          e.clock.now,
		Log:          slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&o)
	}
	e.sim, err = esiasim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.sim)
	t.Cleanup(e.srv.Close)
	return e
}

// client returns an esia client of the env's simulator.
func (e *env) client(mod func(*esia.Config)) *esia.Client {
	e.t.Helper()
	c := esia.Config{
		BaseURL:     e.srv.URL,
		ClientID:    "gonets",
		Scopes:      []string{"openid", "fullname", "birthdate", "snils"},
		RedirectURI: callback,
		Signer:      e.dev,
		Issuer:      esiasim.Issuer,
		Now:         e.clock.now,
		Log:         slog.New(slog.DiscardHandler),
		HTTP:        e.srv.Client(),
	}
	if mod != nil {
		mod(&c)
	}
	cl, err := esia.New(c)
	if err != nil {
		e.t.Fatal(err)
	}
	return cl
}

// authorize opens the client's AuthURL as a browser would, without
// following the simulator's redirect into the redirect URI, and returns
// the status and, for a redirect, its query.
func (e *env) authorize(cl *esia.Client, state string) (int, url.Values, string) {
	e.t.Helper()
	u, err := cl.AuthURL(context.Background(), state)
	if err != nil {
		e.t.Fatal(err)
	}
	browser := &http.Client{
		Transport:     e.srv.Client().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := browser.Get(u)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusFound {
		return resp.StatusCode, nil, string(body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != callback && got != otherCallback {
		e.t.Fatalf("redirect to %s", loc)
	}
	return resp.StatusCode, loc.Query(), ""
}

// code runs the authorisation and returns the code of its redirect.
func (e *env) code(cl *esia.Client) (code, state string) {
	e.t.Helper()
	state = esia.NewState()
	status, q, body := e.authorize(cl, state)
	if status != http.StatusFound {
		e.t.Fatalf("authorize: %d %s", status, body)
	}
	if err := esia.CallbackError(q); err != nil {
		e.t.Fatal(err)
	}
	if q.Get("state") != state {
		e.t.Fatalf("callback state %q, want %q", q.Get("state"), state)
	}
	return q.Get("code"), q.Get("state")
}

func TestFlow(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		scopes []string
		check  func(esia.Person)
	}{
		{[]string{"openid", "fullname", "birthdate", "snils"}, func(p esia.Person) {
			a := p.Attributes([]string{"openid", "fullname", "birthdate", "snils"}, time.Now())
			if a.FirstName != "Иван" || a.LastName != "Иванов" || a.MiddleName != "Иванович" || a.BirthDate != "1990-03-15" ||
				a.SNILS != "123-456-789 64" || !a.Trusted || a.Student != nil || a.Subject != "1000299654" {
				t.Errorf("attributes %+v", a)
			}
		}},
		{[]string{"openid", "fullname", "snils"}, func(p esia.Person) {
			if p.BirthDate != "" || p.BirthDateISO() != "" {
				t.Errorf("birth date %q without the birthdate scope", p.BirthDate)
			}
			if a := p.Attributes([]string{"openid", "fullname", "snils"}, time.Now()); a.BirthDate != "" || a.SNILS == "" {
				t.Errorf("attributes %+v", a)
			}
		}},
		{[]string{"openid", "student", "pensioner"}, func(p esia.Person) {
			a := p.Attributes([]string{"openid", "student", "pensioner"}, time.Now())
			if a.FirstName != "" || a.SNILS != "" || a.Student == nil || *a.Student || a.Pensioner == nil || *a.Pensioner || !a.Trusted {
				t.Errorf("attributes %+v", a)
			}
		}},
	} {
		cl := e.client(func(c *esia.Config) { c.Scopes = tc.scopes })
		code, state := e.code(cl)
		tok, err := cl.Exchange(context.Background(), code, state)
		if err != nil {
			t.Fatalf("%v: exchange: %v", tc.scopes, err)
		}
		if tok.OID != "1000299654" || tok.Access == "" || !tok.Expires.After(e.clock.now().Add(59*time.Minute)) || len(tok.Scopes) != len(tc.scopes) {
			t.Fatalf("token %+v", tok)
		}
		p, err := cl.Person(context.Background(), tok)
		if err != nil {
			t.Fatalf("%v: person: %v", tc.scopes, err)
		}
		if p.OID != "1000299654" || !p.Trusted {
			t.Fatalf("person %+v", p)
		}
		tc.check(p)
	}
	if e.sim.Issued() != 3 || e.sim.Tokens() != 3 || len(e.sim.Refused()) != 0 {
		t.Fatalf("issued %d tokens %d refused %v", e.sim.Issued(), e.sim.Tokens(), e.sim.Refused())
	}
}

// exchangeRaw posts the token request form and returns the answer.
func (e *env) exchangeRaw(code, state string) map[string]any {
	e.t.Helper()
	ts := e.clock.now().Format(esia.TimestampLayout)
	newState := esia.NewState()
	scope := "openid fullname"
	sig, err := e.dev.Sign(context.Background(), []byte("gonets"+scope+ts+newState+callback+code))
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.srv.Client().PostForm(e.srv.URL+"/aas/oauth2/v3/te", url.Values{
		"client_id": {"gonets"}, "code": {code}, "grant_type": {"authorization_code"}, "client_secret": {esia.EncodeSecret(sig)},
		"state": {newState}, "redirect_uri": {callback}, "scope": {scope}, "timestamp": {ts}, "token_type": {"Bearer"},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("token: %d %v %v", resp.StatusCode, r, err)
	}
	if r["state"] != newState {
		e.t.Fatalf("state %v, want %s", r["state"], newState)
	}
	return r
}

func TestIDToken(t *testing.T) {
	e := newEnv(t, nil)
	cl := e.client(func(c *esia.Config) { c.Scopes = []string{"openid", "fullname"} })
	code, state := e.code(cl)
	r := e.exchangeRaw(code, state)
	var claims jwt.MapClaims
	tok, err := jwt.ParseWithClaims(r["id_token"].(string), &claims, func(*jwt.Token) (any, error) { return e.sim.IDTokenKey(), nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience("gonets"), jwt.WithIssuer(esiasim.Issuer), jwt.WithExpirationRequired())
	if err != nil || !tok.Valid {
		t.Fatalf("id_token: %v", err)
	}
	if claims["urn:esia:sbj_id"] != float64(1000299654) || claims["sub"] != "1000299654" {
		t.Fatalf("claims %v", claims)
	}
}

func TestRefusals(t *testing.T) {
	t.Run("wrong client_secret", func(t *testing.T) {
		e := newEnv(t, nil)
		cert, key, err := esia.GenerateDevKey("operator")
		if err != nil {
			t.Fatal(err)
		}
		bad := e.client(func(c *esia.Config) { c.Signer = esia.NewDevSigner(cert, key) })
		status, q, body := e.authorize(bad, esia.NewState())
		if status != http.StatusBadRequest || q != nil || !strings.Contains(body, `"error":"invalid_client"`) {
			t.Fatalf("authorize with another key: %d %v %s", status, q, body)
		}
		// A code got with the right key, exchanged with the wrong one.
		code, state := e.code(e.client(nil))
		if _, err := bad.Exchange(context.Background(), code, state); !errors.Is(err, esia.ErrInvalidClient) {
			t.Fatalf("exchange with another key: %v", err)
		}
		if n := e.sim.Refused()["client_secret"]; n != 2 {
			t.Fatalf("refused %v", e.sim.Refused())
		}
	})
	t.Run("expired timestamp", func(t *testing.T) {
		e := newEnv(t, nil)
		late := e.client(func(c *esia.Config) { c.Now = func() time.Time { return e.clock.now().Add(-6 * time.Minute) } })
		status, _, body := e.authorize(late, esia.NewState())
		if status != http.StatusBadRequest || !strings.Contains(body, "timestamp") {
			t.Fatalf("authorize with an old timestamp: %d %s", status, body)
		}
		code, state := e.code(e.client(nil))
		if _, err := late.Exchange(context.Background(), code, state); !errors.Is(err, esia.ErrProtocol) || !strings.Contains(err.Error(), "timestamp") {
			t.Fatalf("exchange with an old timestamp: %v", err)
		}
		if n := e.sim.Refused()["timestamp"]; n != 2 {
			t.Fatalf("refused %v", e.sim.Refused())
		}
	})
	t.Run("reused code", func(t *testing.T) {
		e := newEnv(t, nil)
		cl := e.client(nil)
		code, state := e.code(cl)
		tok, err := cl.Exchange(context.Background(), code, state)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Person(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Exchange(context.Background(), code, state); !errors.Is(err, esia.ErrInvalidGrant) {
			t.Fatalf("second exchange: %v", err)
		}
		if _, err := cl.Person(context.Background(), tok); !errors.Is(err, esia.ErrInvalidGrant) {
			t.Fatalf("person with a token of a reused code: %v", err)
		}
		if e.sim.Tokens() != 0 || e.sim.Refused()["code_reused"] != 1 || e.sim.Refused()["token"] != 1 {
			t.Fatalf("tokens %d refused %v", e.sim.Tokens(), e.sim.Refused())
		}
	})
	t.Run("unknown and expired code", func(t *testing.T) {
		e := newEnv(t, nil)
		cl := e.client(nil)
		if _, err := cl.Exchange(context.Background(), "nosuchcode", esia.NewState()); !errors.Is(err, esia.ErrInvalidGrant) {
			t.Fatalf("unknown code: %v", err)
		}
		code, state := e.code(cl)
		e.clock.advance(6 * time.Minute)
		if _, err := cl.Exchange(context.Background(), code, state); !errors.Is(err, esia.ErrInvalidGrant) {
			t.Fatalf("expired code: %v", err)
		}
		if r := e.sim.Refused(); r["code_unknown"] != 1 || r["code_expired"] != 1 || e.sim.Codes() != 0 {
			t.Fatalf("refused %v codes %d", r, e.sim.Codes())
		}
	})
	t.Run("wrong redirect", func(t *testing.T) {
		e := newEnv(t, nil)
		evil := e.client(func(c *esia.Config) { c.RedirectURI = "https://evil.example/esia/callback" })
		status, q, body := e.authorize(evil, esia.NewState())
		if status != http.StatusBadRequest || q != nil || !strings.Contains(body, "redirect_uri") {
			t.Fatalf("authorize to an unregistered redirect: %d %v %s", status, q, body)
		}
		// A code issued for callback, exchanged naming the other allowed URI.
		code, state := e.code(e.client(nil))
		other := e.client(func(c *esia.Config) { c.RedirectURI = otherCallback })
		if _, err := other.Exchange(context.Background(), code, state); !errors.Is(err, esia.ErrInvalidGrant) {
			t.Fatalf("exchange with another redirect: %v", err)
		}
		if r := e.sim.Refused(); r["redirect_uri"] != 1 || r["code_redirect"] != 1 {
			t.Fatalf("refused %v", r)
		}
	})
	t.Run("denied", func(t *testing.T) {
		e := newEnv(t, func(o *esiasim.Options) { o.Deny = true })
		state := esia.NewState()
		status, q, _ := e.authorize(e.client(nil), state)
		if status != http.StatusFound || q.Get("state") != state || q.Get("code") != "" {
			t.Fatalf("denied: %d %v", status, q)
		}
		if err := esia.CallbackError(q); !errors.Is(err, esia.ErrDenied) {
			t.Fatalf("CallbackError: %v", err)
		}
		if e.sim.Issued() != 0 || e.sim.Refused()["denied"] != 1 {
			t.Fatalf("issued %d refused %v", e.sim.Issued(), e.sim.Refused())
		}
	})
	t.Run("expired token and another oid", func(t *testing.T) {
		e := newEnv(t, nil)
		cl := e.client(nil)
		code, state := e.code(cl)
		tok, err := cl.Exchange(context.Background(), code, state)
		if err != nil {
			t.Fatal(err)
		}
		other := tok
		other.OID = "1000000001"
		if _, err := cl.Person(context.Background(), other); !errors.Is(err, esia.ErrProtocol) || !strings.Contains(err.Error(), "403") {
			t.Fatalf("another person's record: %v", err)
		}
		e.clock.advance(61 * time.Minute)
		if _, err := cl.Person(context.Background(), tok); !errors.Is(err, esia.ErrInvalidGrant) {
			t.Fatalf("expired token: %v", err)
		}
	})
}

func TestBounded(t *testing.T) {
	e := newEnv(t, func(o *esiasim.Options) { o.MaxEntries = 2 })
	cl := e.client(nil)
	e.code(cl)
	e.code(cl)
	if status, _, _ := e.authorize(cl, esia.NewState()); status != http.StatusServiceUnavailable {
		t.Fatalf("a third code: %d", status)
	}
	e.clock.advance(6 * time.Minute) // the two expire and are evicted
	code, state := e.code(cl)
	if _, err := cl.Exchange(context.Background(), code, state); err != nil {
		t.Fatal(err)
	}
	if e.sim.Codes() != 1 || e.sim.Refused()["full"] != 1 {
		t.Fatalf("codes %d refused %v", e.sim.Codes(), e.sim.Refused())
	}
}

func TestNewOptions(t *testing.T) {
	cert, _, err := esia.GenerateDevKey("x")
	if err != nil {
		t.Fatal(err)
	}
	good := esiasim.Options{ClientID: "c", RedirectURIs: []string{callback}, Trusted: cert, Person: esiasim.DevPerson()}
	if _, err := esiasim.New(good); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*esiasim.Options){
		"no client":    func(o *esiasim.Options) { o.ClientID = "" },
		"no redirects": func(o *esiasim.Options) { o.RedirectURIs = nil },
		"relative":     func(o *esiasim.Options) { o.RedirectURIs = []string{"/cb"} },
		"no cert":      func(o *esiasim.Options) { o.Trusted = nil },
		"bad oid":      func(o *esiasim.Options) { o.Person.OID = "abc" },
		"bad snils":    func(o *esiasim.Options) { o.Person.SNILS = "123-456-789 65" },
		"bad birth":    func(o *esiasim.Options) { o.Person.BirthDate = "1990-03-15" },
	} {
		o := good
		mod(&o)
		if _, err := esiasim.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if !esia.ValidSNILS(esiasim.DevPerson().SNILS) {
		t.Fatal("DevPerson's SNILS is not valid")
	}
}
