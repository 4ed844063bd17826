package tools

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/broker/wire"
)

const (
	linkUsage       = "usage: gonets link esia [--code CODE | --open] [--json] [flags] | gonets link show [--json] [flags] | gonets link remove [flags]"
	linkESIAUsage   = "usage: gonets link esia [--profile NAME] [--code CODE | --open] [--json] [flags]"
	linkShowUsage   = "usage: gonets link show [--profile NAME] [--json] [flags]"
	linkRemoveUsage = "usage: gonets link remove [--profile NAME] [flags]"
)

// linkNotes is the --help text of gonets link esia.
const linkNotes = `gonets link esia asks the node for the URL where you consent, at
Gosuslugi (ESIA), to link your state account to this login, and prints
it. The consent ends in a redirect to the app's deep link,
gonets://link?code=...: paste that link (or its code) when asked, or
give it with --code CODE in a later run (the code works once, for this
login only). With --open the command is the browser itself: it follows
the redirects (the ESIA simulator approves at once) until the deep link,
trusting the node's public listener as the login trusts the node (its
pinned certificate, --ca, or --insecure). Human output masks the SNILS
but for its last two digits; --json prints every field.`

// maxRedirects bounds the redirects --open follows.
const maxRedirects = 10

// runLink links the login's user to a state account, shows the link or
// removes it:
//
//	gonets link esia [--code CODE | --open] [--json]
//	gonets link show [--json]
//	gonets link remove
func runLink(args []string, stdout, stderr io.Writer) int {
	return linkMain(args, os.Stdin, stdout, stderr)
}

// linkMain is runLink reading the deep link, when prompted for, from in.
func linkMain(args []string, in io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "gonets link: no subcommand: esia, show or remove\n%s\n", linkUsage)
		return 2
	}
	sub, synopsis := args[0], ""
	switch sub {
	case "esia":
		synopsis = linkESIAUsage
	case "show":
		synopsis = linkShowUsage
	case "remove":
		synopsis = linkRemoveUsage
	default:
		if isHelp(sub) {
			fmt.Fprintf(stdout, "%s\nRun 'gonets link esia --help' for the flags.\n", linkUsage)
			return 0
		}
		fmt.Fprintf(stderr, "gonets link: unknown subcommand %q: esia, show or remove\n%s\n", sub, linkUsage)
		return 2
	}
	name := "link " + sub
	fs := newFlagSet(name, synopsis, stdout, stderr)
	cf := addClientFlags(fs)
	var code string
	var open, asJSON bool
	if sub == "esia" {
		fs.StringVar(&code, "code", "", "finish a link with this `code`: the app's deep link gonets://link?code=... or the bare code")
		fs.BoolVar(&open, "open", false, "act as the browser: follow the consent's redirects to the deep link")
		fs.notes = linkNotes + "\n\n" + fs.notes
	}
	if sub != "remove" {
		fs.BoolVar(&asJSON, "json", false, "print the linked account as JSON, every field")
	}
	timeout := fs.Duration("timeout", 30*time.Second, "how long the whole command may take (the consent included)")
	if c, ok := fs.parse(args[1:]); !ok {
		return c
	}
	switch {
	case fs.NArg() != 0:
		return fs.usage("%s", fs.noArgs())
	case code != "" && open:
		return fs.usage("--code and --open are exclusive: pass one")
	case *timeout <= 0:
		return fs.usage("--timeout %v must be positive", *timeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	stderr = &syncWriter{w: stderr}
	c, err := cf.dial(ctx, client.Options{SendOnly: true, NoReconnect: true, Logger: cliLogger(stderr)})
	if err != nil {
		return cliFail(stderr, name, err)
	}
	defer c.Close()
	var acct client.LinkedAccount
	switch sub {
	case "show":
		acct, err = c.Linked(ctx)
	case "remove":
		if err = c.Unlink(ctx); err == nil {
			fmt.Fprintf(stderr, "gonets link remove: unlinked; the node erased the account's attributes\n")
			return 0
		}
	case "esia":
		acct, err = linkESIA(ctx, cf, c, linkSource{code: code, open: open, in: in, json: asJSON}, stdout, stderr)
	}
	if err != nil {
		return cliFail(stderr, name, linkError(err))
	}
	if err := printLinked(stdout, acct, asJSON); err != nil {
		return cliFail(stderr, name, err)
	}
	return 0
}

// linkSource says where gonets link esia takes the deep link's code.
type linkSource struct {
	code string    // --code: given
	open bool      // --open: follow the consent's redirects
	in   io.Reader // else the terminal
	json bool      // --json: the URL goes to stderr, not stdout
}

// linkESIA links c's user to their Gosuslugi account: with a code given,
// it finishes the link the code came from; otherwise it starts one,
// prints the URL and takes the code from the redirects (--open) or the
// terminal.
func linkESIA(ctx context.Context, cf *clientFlags, c *client.Client, src linkSource, stdout, stderr io.Writer) (client.LinkedAccount, error) {
	if src.code != "" {
		code, err := parseLinkCode(src.code)
		if err != nil {
			return client.LinkedAccount{}, err
		}
		return c.LinkFinish(ctx, code)
	}
	u, exp, err := c.LinkStart(ctx, "esia")
	if err != nil {
		return client.LinkedAccount{}, err
	}
	out := stdout
	if src.json {
		out = stderr
	}
	fmt.Fprintf(out, "Open this URL to link your Gosuslugi account (it works once, until %s):\n%s\n", exp.Local().Format(time.TimeOnly), u)
	var code string
	if src.open {
		code, err = cf.followConsent(ctx, u)
	} else {
		code, err = promptLinkCode(bufio.NewReader(src.in), stderr, cf)
	}
	if err != nil {
		return client.LinkedAccount{}, err
	}
	return c.LinkFinish(ctx, code)
}

// promptLinkCode asks for the deep link on out and reads it from in.
func promptLinkCode(in *bufio.Reader, out io.Writer, cf *clientFlags) (string, error) {
	for {
		fmt.Fprintf(out, "After consenting, paste the gonets://link?code=... link (or its code): ")
		line, err := in.ReadString('\n')
		if s := strings.TrimSpace(line); s != "" {
			return parseLinkCode(s)
		}
		if err != nil {
			fmt.Fprintln(out)
			prof := ""
			if cf.pf != nil {
				prof = profileFlag(cf.pf.name)
			}
			return "", fmt.Errorf("no code: the input ended (%v); open the URL, then run gonets link esia --code 'gonets://link?code=...'%s", err, prof)
		}
	}
}

// parseLinkCode returns the code of s: the app's deep link
// (gonets://link?code=...) or the bare code.
func parseLinkCode(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") && !strings.Contains(s, "?") {
		if s == "" || strings.ContainsAny(s, " \t&=") {
			return "", fmt.Errorf("%q is neither the deep link gonets://link?code=... nor a code", s)
		}
		return s, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "gonets" || u.Query().Get("code") == "" {
		return "", fmt.Errorf("%q is not the app's deep link gonets://link?code=...", s)
	}
	return u.Query().Get("code"), nil
}

// followConsent is the browser of gonets link esia --open: it GETs u and
// follows the redirects until the one to the app's deep link, and
// returns its code.
func (f *clientFlags) followConsent(ctx context.Context, u string) (string, error) {
	cfg, err := f.httpsConfig()
	if err != nil {
		return "", err
	}
	tr := &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment}
	defer tr.CloseIdleConnections()
	browser := &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme == "gonets" {
			return http.ErrUseLastResponse
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("--open: %w", err)
	}
	resp, err := browser.Do(req)
	if err != nil {
		return "", fmt.Errorf("--open: %w", err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(io.LimitReader(resp.Body, 2<<10))
	if loc := resp.Header.Get("Location"); strings.HasPrefix(loc, "gonets:") {
		return parseLinkCode(loc)
	}
	return "", fmt.Errorf("--open: the consent did not end in the app's deep link: %s answered %s: %s",
		resp.Request.URL.Redacted(), resp.Status, strings.Join(strings.Fields(string(page)), " "))
}

// httpsConfig returns the TLS configuration of the HTTPS requests the
// client commands make beside their sessions (the node's public
// listener, a JWKS): none checked with --insecure; else a certificate
// with the fingerprint the login pins (--fingerprint, or a local node's
// data directory) passes, whatever the host, as it is the node's; else a
// chain to the system roots (and the --ca ones) valid for the host.
func (f *clientFlags) httpsConfig() (*tls.Config, error) {
	if f.insecure {
		return &tls.Config{InsecureSkipVerify: true}, nil
	}
	var pin string
	var roots *x509.CertPool
	switch {
	case f.fingerprint != "":
		pin = f.fingerprint
	case f.ca != "":
		pool, err := caPool(f.ca)
		if err != nil {
			return nil, err
		}
		roots = pool
	case f.dataGiven() || isLocalHost(serverHost(f.server)):
		if !f.dataGiven() && !exists(filepath.Join(f.data, nodecert.CertFile)) {
			break
		}
		fp, err := localFingerprint(f.data)
		if err != nil {
			return nil, err
		}
		pin = fp
	}
	return pinnedTLS(pin, roots), nil
}

// pinnedTLS returns a TLS configuration that accepts the certificate
// with SHA-256 fingerprint pin (hex; "" for none) and chains to roots
// (nil: the system's) valid for the host dialled.
func pinnedTLS(pin string, roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // VerifyConnection checks, on every handshake
		VerifyConnection: func(cs tls.ConnectionState) error {
			certs := cs.PeerCertificates
			if len(certs) == 0 {
				return errors.New("the server sent no certificate")
			}
			fp := nodecert.Fingerprint(certs[0].Raw)
			if pin != "" && strings.EqualFold(fp, pin) {
				return nil
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			if _, err := certs[0].Verify(x509.VerifyOptions{DNSName: cs.ServerName, Roots: roots, Intermediates: inter}); err != nil {
				return fmt.Errorf("the certificate of %s (SHA-256 %s) is not trusted: %w", cs.ServerName, fp, err)
			}
			return nil
		},
	}
}

// linkError adds to a refused link request what it means.
func linkError(err error) error {
	var e *client.Error
	if !errors.As(err, &e) {
		return err
	}
	switch e.Code {
	case wire.ErrorCode_ERROR_CODE_STATE_SERVICES_OFF:
		return fmt.Errorf("%w (this node does not link Gosuslugi accounts: its operator turns on state.esia)", err)
	case wire.ErrorCode_ERROR_CODE_NOT_LINKED:
		return fmt.Errorf("%w (link one first: gonets link esia)", err)
	case wire.ErrorCode_ERROR_CODE_BAD_REQUEST:
		return fmt.Errorf("%w (the code works once, for the login that started the link, within 5 minutes of the consent: run gonets link esia again)", err)
	}
	return err
}

// linkedJSON is gonets link's --json output: every field.
type linkedJSON struct {
	Linked     bool       `json:"linked"`
	Provider   string     `json:"provider,omitempty"`
	Trusted    bool       `json:"trusted"`
	VerifiedAt *time.Time `json:"verified_at,omitempty"`
	Scopes     []string   `json:"scopes,omitempty"`
	FirstName  string     `json:"first_name,omitempty"`
	LastName   string     `json:"last_name,omitempty"`
	MiddleName string     `json:"middle_name,omitempty"`
	BirthDate  string     `json:"birth_date,omitempty"`
	SNILS      string     `json:"snils,omitempty"`
	Student    *bool      `json:"student,omitempty"`
	Pensioner  *bool      `json:"pensioner,omitempty"`
}

// printLinked writes a: as JSON, every field; else for people, the SNILS
// masked.
func printLinked(w io.Writer, a client.LinkedAccount, asJSON bool) error {
	if asJSON {
		j := linkedJSON{Linked: a.Linked, Provider: a.Provider, Trusted: a.Trusted, Scopes: a.Scopes,
			FirstName: a.FirstName, LastName: a.LastName, MiddleName: a.MiddleName, BirthDate: a.BirthDate,
			SNILS: a.SNILS, Student: a.Student, Pensioner: a.Pensioner}
		if !a.VerifiedAt.IsZero() {
			j.VerifiedAt = &a.VerifiedAt
		}
		b, err := json.Marshal(j)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	if !a.Linked {
		_, err := fmt.Fprintln(w, "no state account linked (gonets link esia links one)")
		return err
	}
	var b strings.Builder
	trust := "not confirmed"
	if a.Trusted {
		trust = "confirmed"
	}
	fmt.Fprintf(&b, "linked:     %s (%s account)\n", a.Provider, trust)
	if n := strings.Join(strings.Fields(a.LastName+" "+a.FirstName+" "+a.MiddleName), " "); n != "" {
		fmt.Fprintf(&b, "name:       %s\n", n)
	}
	if a.BirthDate != "" {
		fmt.Fprintf(&b, "birth date: %s\n", a.BirthDate)
	}
	if a.SNILS != "" {
		fmt.Fprintf(&b, "SNILS:      %s\n", maskSNILS(a.SNILS))
	}
	for _, s := range []struct {
		name string
		v    *bool
	}{{"student", a.Student}, {"pensioner", a.Pensioner}} {
		if s.v != nil {
			fmt.Fprintf(&b, "%-11s %s\n", s.name+":", yesNo(*s.v))
		}
	}
	if !a.VerifiedAt.IsZero() {
		fmt.Fprintf(&b, "verified:   %s\n", a.VerifiedAt.Local().Format(time.DateTime))
	}
	if len(a.Scopes) > 0 {
		fmt.Fprintf(&b, "scopes:     %s\n", strings.Join(a.Scopes, " "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// maskSNILS replaces every digit of s but the last two with '*', keeping
// its dashes and spaces: "123-456-789 64" → "***-***-*** 64".
func maskSNILS(s string) string {
	digits := 0
	for _, r := range s {
		if r >= '0' && r <= '9' {
			digits++
		}
	}
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			digits--
			if digits >= 2 {
				r = '*'
			}
		}
		b.WriteRune(r)
	}
	return b.String()
}

// yesNo is "yes" for true.
func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}
