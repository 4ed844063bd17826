package esia

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"
)

func newTestClient(t testing.TB, mod func(*Config)) (*Client, *DevSigner) {
	t.Helper()
	cert, key, err := GenerateDevKey("operator")
	if err != nil {
		t.Fatal(err)
	}
	dev := NewDevSigner(cert, key)
	c := Config{
		BaseURL:     "https://esia.example/",
		ClientID:    "gonets",
		Scopes:      []string{"openid", "fullname", "birthdate", "snils"},
		RedirectURI: "https://node.example/esia/callback",
		Signer:      dev,
		Log:         slog.New(slog.DiscardHandler),
		Now:         func() time.Time { return time.Date(2026, 12, 2, 22, 10, 0, 0, time.FixedZone("MSK", 3*3600)) },
	}
	if mod != nil {
		mod(&c)
	}
	cl, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return cl, dev
}

func TestAuthURL(t *testing.T) {
	cl, dev := newTestClient(t, nil)
	state := NewState()
	raw, err := cl.AuthURL(context.Background(), state)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme+"://"+u.Host+u.Path != "https://esia.example/aas/oauth2/v2/ac" {
		t.Fatalf("endpoint %s", raw)
	}
	q := u.Query()
	want := map[string]string{
		"client_id":     "gonets",
		"redirect_uri":  "https://node.example/esia/callback",
		"scope":         "openid fullname birthdate snils",
		"response_type": "code",
		"state":         state,
		"timestamp":     "2026.12.02 22:10:00 +0300",
		"access_type":   "online",
	}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	data := "gonets" + "openid fullname birthdate snils" + "2026.12.02 22:10:00 +0300" + state + "https://node.example/esia/callback"
	if err := VerifySecret(q.Get("client_secret"), []byte(data), dev.Certificate()); err != nil {
		t.Fatalf("client_secret is not a signature over the v2 concatenation: %v", err)
	}
	if _, err := cl.AuthURL(context.Background(), "not-a-uuid"); !errors.Is(err, ErrConfig) {
		t.Fatalf("bad state: %v", err)
	}
}

func TestNewState(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		s := NewState()
		if !ValidState(s) || s[14] != '4' || !strings.ContainsRune("89ab", rune(s[19])) {
			t.Fatalf("state %q is not a UUID v4", s)
		}
		if seen[s] {
			t.Fatalf("state %q twice", s)
		}
		seen[s] = true
	}
}

func TestNewConfig(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"no base":     func(c *Config) { c.BaseURL = "" },
		"no client":   func(c *Config) { c.ClientID = "" },
		"no openid":   func(c *Config) { c.Scopes = []string{"fullname"} },
		"bad scope":   func(c *Config) { c.Scopes = []string{"openid", "a b"} },
		"no signer":   func(c *Config) { c.Signer = nil },
		"no redirect": func(c *Config) { c.RedirectURI = "/cb" },
	} {
		c := Config{BaseURL: "https://e", ClientID: "c", Scopes: []string{"openid"}, RedirectURI: "https://n/cb", Signer: NewDevSigner(nil, nil)}
		mod(&c)
		if _, err := New(c); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err %v, want ErrConfig", name, err)
		}
	}
}

// jwtOf returns an unsigned-looking JWT with claims (the client does not
// check the signature).
func jwtOf(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	return "eyJhbGciOiJHT1NUMzQxMF8yMDEyXzI1NiJ9." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

func TestIDTokenSubject(t *testing.T) {
	cl, _ := newTestClient(t, func(c *Config) { c.Issuer = "http://esia.gosuslugi.ru/" })
	now := cl.c.Now()
	good := map[string]any{"iss": "http://esia.gosuslugi.ru/", "aud": "gonets", "exp": now.Add(time.Hour).Unix(), "urn:esia:sbj_id": 1000299654}
	with := func(k string, v any) string {
		c := map[string]any{}
		for kk, vv := range good {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return jwtOf(c)
	}
	oid, err := cl.idTokenSubject(jwtOf(good), now)
	if err != nil || oid != "1000299654" {
		t.Fatalf("oid %q err %v", oid, err)
	}
	if oid, err := cl.idTokenSubject(with("aud", []string{"x", "gonets"}), now); err != nil || oid != "1000299654" {
		t.Fatalf("aud array: oid %q err %v", oid, err)
	}
	for name, tok := range map[string]string{
		"other aud":     with("aud", "other"),
		"other iss":     with("iss", "http://evil/"),
		"expired":       with("exp", now.Add(-time.Second).Unix()),
		"no exp":        with("exp", nil),
		"no sbj_id":     with("urn:esia:sbj_id", nil),
		"string sbj_id": with("urn:esia:sbj_id", "1000299654"),
		"zero sbj_id":   with("urn:esia:sbj_id", 0),
		"float sbj_id":  with("urn:esia:sbj_id", 1.5),
		"two parts":     "a.b",
		"bad base64":    "a.***.c",
		"not json":      "a." + base64.RawURLEncoding.EncodeToString([]byte("[")) + ".c",
	} {
		if _, err := cl.idTokenSubject(tok, now); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err %v, want ErrProtocol", name, err)
		}
	}
}

func FuzzIDTokenSubject(f *testing.F) {
	cl, _ := newTestClient(f, nil)
	now := cl.c.Now()
	f.Add(jwtOf(map[string]any{"aud": "gonets", "exp": now.Add(time.Hour).Unix(), "urn:esia:sbj_id": 1}))
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		oid, err := cl.idTokenSubject(tok, now)
		if err == nil && (oid == "" || oid == "0" || strings.TrimLeft(oid, "0123456789") != "") {
			t.Fatalf("oid %q from %q", oid, tok)
		}
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Fatalf("err %v is not ErrProtocol", err)
		}
	})
}

func TestCallbackError(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want error
	}{
		{"code=abc&state=s", nil},
		{"error=access_denied&error_description=ESIA-007004&state=s", ErrDenied},
		{"error=invalid_scope&state=s", ErrProtocol},
		{"state=s", ErrProtocol},
	} {
		q, _ := url.ParseQuery(tc.q)
		err := CallbackError(q)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.q, err, tc.want)
		}
	}
	q, _ := url.ParseQuery("error=access_denied&error_description=ESIA-007004")
	if err := CallbackError(q); !strings.Contains(err.Error(), "ESIA-007004") {
		t.Errorf("err %v does not quote the description", err)
	}
}

func TestValidSNILS(t *testing.T) {
	for s, want := range map[string]bool{
		"123-456-789 64": true,
		"123-456-789 65": false,
		"112-233-445 95": true,
		"000-000-600 06": true, // at most 001-001-998: not checked
		"123-456-78964":  false,
		"12345678964":    false,
		"123-456-7a9 64": false,
		"":               false,
	} {
		if ValidSNILS(s) != want {
			t.Errorf("ValidSNILS(%q) = %v", s, !want)
		}
	}
}

func TestAttributes(t *testing.T) {
	yes, no := true, false
	p := Person{OID: "1", FirstName: "Иван", LastName: "Иванов", MiddleName: "Иванович", BirthDate: "15.03.1990",
		SNILS: "123-456-789 64", Trusted: true, Student: &no, Pensioner: &yes}
	at := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	a := p.Attributes([]string{"openid", "fullname"}, at)
	if a.Provider != "esia" || a.Subject != "1" || !a.VerifiedAt.Equal(at) || !a.Trusted || a.FirstName != "Иван" ||
		a.MiddleName != "Иванович" || a.BirthDate != "" || a.SNILS != "" || a.Student != nil || a.Pensioner != nil {
		t.Fatalf("fullname only: %+v", a)
	}
	a = p.Attributes([]string{"openid", "birthdate", "snils", "student", "pensioner"}, at)
	if a.FirstName != "" || a.BirthDate != "1990-03-15" || a.SNILS != "123-456-789 64" || a.Student == nil || *a.Student || a.Pensioner == nil || !*a.Pensioner {
		t.Fatalf("all but fullname: %+v", a)
	}
	if b, ok := a.Birth(); !ok || b.Year() != 1990 {
		t.Fatalf("Birth %v %v", b, ok)
	}
	if (Person{BirthDate: "1990-03-15"}).BirthDateISO() != "" {
		t.Fatal("an ISO date parsed as ESIA's")
	}
}
