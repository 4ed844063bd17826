package tools

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/gonets/gonets/identity/esia"
)

// startSimESIA runs gonets sim esia with args until the test ends and
// returns the base URL its line on stdout names, and the line.
func startSimESIA(t *testing.T, args ...string) (base, line string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr lockedBuffer
	codec := make(chan int, 1)
	go func() {
		code := simESIA(ctx, args, pw, &stderr)
		pw.Close()
		codec <- code
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-codec; code != 0 {
			t.Errorf("gonets sim esia exited %d: %s", code, stderr.String())
		}
		if !strings.Contains(stderr.String(), "esia simulator stopped") {
			t.Errorf("stderr %q", stderr.String())
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no line on stdout (%v): stderr %s", err, stderr.String())
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`on (http://127\.0\.0\.1:\d+) `).FindStringSubmatch(line)
	if m == nil || strings.HasSuffix(m[1], ":0") {
		t.Fatalf("line %q names no address", line)
	}
	return m[1], line
}

// simFlow signs in through the simulator at base with the dev key in dir
// and returns the person, or the callback's error.
func simFlow(t *testing.T, base, dir, redirect string, scopes ...string) (esia.Person, error) {
	t.Helper()
	cert, key, err := esia.LoadDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	cl, err := esia.New(esia.Config{BaseURL: base, ClientID: "gonets", Scopes: scopes, RedirectURI: redirect,
		Signer: esia.NewDevSigner(cert, key), HTTP: &http.Client{Transport: tr}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	state := esia.NewState()
	u, err := cl.AuthURL(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	if q.Get("state") != state || !strings.HasPrefix(loc.String(), redirect+"?") {
		t.Fatalf("redirect %s", loc)
	}
	if err := esia.CallbackError(q); err != nil {
		return esia.Person{}, err
	}
	tok, err := cl.Exchange(ctx, q.Get("code"), q.Get("state"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := cl.Person(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	return p, nil
}

func TestSimESIA(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := filepath.Join(t.TempDir(), "data")
	const cb = "http://127.0.0.1:7445/esia/callback"

	t.Run("made key, default person", func(t *testing.T) {
		base, line := startSimESIA(t, "--addr", "127.0.0.1:0", "--dir", dir, "--redirect", cb, "--redirect", "http://localhost/cb")
		if !strings.Contains(line, "dev key made in "+dir) {
			t.Fatalf("line %q", line)
		}
		p, err := simFlow(t, base, dir, cb, "openid", "fullname", "birthdate", "snils")
		if err != nil {
			t.Fatal(err)
		}
		if p.OID != "1000299654" || p.LastName != "Иванов" || p.BirthDateISO() != "1990-03-15" || p.SNILS != "123-456-789 64" || !p.Trusted {
			t.Fatalf("person %+v", p)
		}
		// The second allowed redirect works too.
		if _, err := simFlow(t, base, dir, "http://localhost/cb", "openid"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("loaded key, person from a file", func(t *testing.T) {
		pf := filepath.Join(t.TempDir(), "person.json")
		if err := os.WriteFile(pf, []byte(`{"oid":"42","firstName":"Пётр","lastName":"Петров","birthDate":"01.02.1950","trusted":false,"pensioner":true}`), 0o600); err != nil {
			t.Fatal(err)
		}
		base, line := startSimESIA(t, "--addr", "127.0.0.1:0", "--dir", dir, "--redirect", cb, "--person-json", pf)
		if !strings.Contains(line, "dev key loaded") {
			t.Fatalf("line %q", line)
		}
		p, err := simFlow(t, base, dir, cb, "openid", "fullname", "pensioner")
		if err != nil {
			t.Fatal(err)
		}
		if p.OID != "42" || p.FirstName != "Пётр" || p.BirthDate != "" || p.Trusted || p.Pensioner == nil || !*p.Pensioner {
			t.Fatalf("person %+v", p)
		}
	})
	t.Run("deny", func(t *testing.T) {
		base, _ := startSimESIA(t, "--addr", "127.0.0.1:0", "--dir", dir, "--redirect", cb, "--deny")
		if _, err := simFlow(t, base, dir, cb, "openid"); !errors.Is(err, esia.ErrDenied) {
			t.Fatalf("err %v, want ErrDenied", err)
		}
	})
}

func TestSimESIAUsage(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "p.json")
	if err := os.WriteFile(pf, []byte(`{"oid":"42","nickname":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"sim"}, 2, "no system"},
		{[]string{"sim", "ldap"}, 2, `unknown system "ldap"`},
		{[]string{"sim", "--help"}, 0, "gonets sim esia --help"},
		{[]string{"sim", "esia", "--help"}, 0, "--person-json"},
		{[]string{"sim", "esia", "--addr", "0.0.0.0:0", "--dir", dir}, 2, "not a loopback address"},
		{[]string{"sim", "esia", "--addr", "nonsense", "--dir", dir}, 2, "--addr"},
		{[]string{"sim", "esia", "--client-id", "", "--dir", dir}, 2, "--client-id must not be empty"},
		{[]string{"sim", "esia", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"sim", "esia", "--addr", "127.0.0.1:0", "--dir", dir, "--person-json", pf}, 1, `unknown field "nickname"`},
		{[]string{"sim", "esia", "--addr", "127.0.0.1:0", "--dir", dir, "--redirect", "/relative"}, 1, "not an absolute URL"},
	} {
		var out, errw bytes.Buffer
		code := Main(tc.args, &out, &errw)
		if code != tc.code || !strings.Contains(out.String()+errw.String(), tc.want) {
			t.Errorf("%q: exit %d, output %q; want %d and %q", tc.args, code, out.String()+errw.String(), tc.code, tc.want)
		}
	}
}
