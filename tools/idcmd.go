package tools

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/digitalid"
)

const (
	idUsage        = "usage: gonets id issue|present|verify|nonce [flags]"
	idIssueUsage   = "usage: gonets id issue [--profile NAME] [--issuer URL] [--json] [flags]"
	idPresentUsage = "usage: gonets id present --claims NAME[,NAME...] --nonce N --aud A [--profile NAME]"
	idVerifyUsage  = "usage: gonets id verify --jwks URL|FILE --nonce N --aud A [--claims NAME,...] [--issuer URL] [--max-age 30s] [--insecure | --fingerprint HEX] [PRESENTATION|-]"
	idNonceUsage   = "usage: gonets id nonce"
)

// idIssueNotes is the --help text of gonets id issue.
const idIssueNotes = `The node issues a digital ID (an SD-JWT) from the state account linked
to the login (gonets link esia), bound to a device key: an ECDSA P-256
key made on the first issue and kept beside the profile
(NAME.device-key.pem, mode 0600). The credential is kept there too
(NAME.digital-id.json, mode 0600), and the claims it holds are printed.

The request's proof names the node's issuer URL, its state.public_url
(default https://localhost:PUBLIC-PORT): --issuer defaults to
https://HOST:7445, HOST the login's node. A node that answers
BAD_REQUEST has another URL: pass it with --issuer.`

// idVerifyNotes is the --help text of gonets id verify.
const idVerifyNotes = `Verifies a presentation offline with the issuer's JWKS: read from a
file, or fetched once over HTTPS from a URL (the node serves it at
/.well-known/jwks.json on its public listener; --fingerprint pins its
self-signed certificate, --insecure checks none). The presentation is
the argument, or a line of stdin ("-" or none). --claims are the claims
asked for: each must be disclosed and no other may be. Prints "ok" and
the disclosed claims as JSON, exit 0; or "refused: REASON: detail" on
stderr, exit 1 (REASON: tampered, wrong_nonce, over_disclosed, stale...).`

// Files kept beside a profile by gonets id.
const (
	deviceKeySuffix  = ".device-key.pem"
	digitalIDSuffix  = ".digital-id.json"
	defaultIssuePort = "7445"
	maxJWKS          = 1 << 20
)

// savedID is a digital ID kept beside a profile.
type savedID struct {
	Issuer  string    `json:"issuer"`
	SDJWT   string    `json:"sd_jwt"`
	Expires time.Time `json:"expires"`
}

// runID is gonets id: a digital ID's issue, presentation and
// verification.
//
//	gonets id issue [--profile NAME] [--issuer URL]
//	gonets id present --claims age_over_18 --nonce N --aud A [--profile NAME]
//	gonets id verify --jwks URL|FILE --nonce N --aud A [--claims ...] [PRESENTATION|-]
//	gonets id nonce
func runID(args []string, stdout, stderr io.Writer) int {
	return idMain(args, os.Stdin, stdout, stderr)
}

// idMain is runID reading a presentation, when not given, from in.
func idMain(args []string, in io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "gonets id: no subcommand: issue, present, verify or nonce\n%s\n", idUsage)
		return 2
	}
	switch args[0] {
	case "issue":
		return idIssue(args[1:], stdout, stderr)
	case "present":
		return idPresent(args[1:], stdout, stderr)
	case "verify":
		return idVerify(args[1:], in, stdout, stderr)
	case "nonce":
		fs := newFlagSet("id nonce", idNonceUsage, stdout, stderr)
		if c, ok := fs.parse(args[1:]); !ok {
			return c
		}
		if fs.NArg() != 0 {
			return fs.usage("%s", fs.noArgs())
		}
		fmt.Fprintln(stdout, digitalid.NewNonce())
		return 0
	}
	if isHelp(args[0]) {
		fmt.Fprintf(stdout, "%s\nRun 'gonets id SUBCOMMAND --help' for the flags.\n", idUsage)
		return 0
	}
	fmt.Fprintf(stderr, "gonets id: unknown subcommand %q: issue, present, verify or nonce\n%s\n", args[0], idUsage)
	return 2
}

// idIssue asks the node for a digital ID bound to the profile's device
// key and keeps it beside the profile.
func idIssue(args []string, stdout, stderr io.Writer) int {
	const name = "id issue"
	fs := newFlagSet(name, idIssueUsage, stdout, stderr)
	cf := addClientFlags(fs)
	fs.notes = idIssueNotes + "\n\n" + fs.notes
	issuer := fs.String("issuer", "", "the node's issuer `URL`, its state.public_url (default https://HOST:"+defaultIssuePort+", HOST the login's node)")
	asJSON := fs.Bool("json", false, "print the claims as JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the node")
	if c, ok := fs.parse(args); !ok {
		return c
	}
	switch {
	case fs.NArg() != 0:
		return fs.usage("%s", fs.noArgs())
	case *timeout <= 0:
		return fs.usage("--timeout %v must be positive", *timeout)
	case fs.isSet("token"):
		return fs.usage("the device key and the digital ID are kept beside a saved login: pass --profile, not --token")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	stderr = &syncWriter{w: stderr}
	if err := cf.login(ctx); err != nil {
		return cliFail(stderr, name, err)
	}
	if cf.pf == nil {
		return cliFail(stderr, name, &usageError{"the device key and the digital ID are kept beside a saved login: log in with gonets login, or pass --profile"})
	}
	if *issuer == "" {
		*issuer = "https://" + net.JoinHostPort(serverHost(cf.server), defaultIssuePort)
	}
	key, made, err := deviceKey(cf.pf)
	if err != nil {
		return cliFail(stderr, name, err)
	}
	if made {
		fmt.Fprintf(stderr, "gonets id issue: made a device key: %s\n", idPath(cf.pf, deviceKeySuffix))
	}
	proof, err := digitalid.Proof(key, *issuer, time.Now())
	if err != nil {
		return cliFail(stderr, name, err)
	}
	c, err := cf.dial(ctx, client.Options{SendOnly: true, NoReconnect: true, Logger: cliLogger(stderr)})
	if err != nil {
		return cliFail(stderr, name, err)
	}
	defer c.Close()
	sdjwt, exp, err := c.IssueCredential(ctx, proof)
	if err != nil {
		var e *client.Error
		switch {
		case errors.As(err, &e) && e.Code == wire.ErrorCode_ERROR_CODE_BAD_REQUEST:
			err = fmt.Errorf("%w (the proof names the issuer %s: if the node's state.public_url is another, pass it with --issuer URL)", err, *issuer)
		case errors.As(err, &e) && e.Code == wire.ErrorCode_ERROR_CODE_NOT_LINKED:
			err = fmt.Errorf("%w (link a state account first: gonets link esia%s)", err, profileFlag(cf.pf.name))
		}
		return cliFail(stderr, name, err)
	}
	claims, err := digitalid.Disclosable(sdjwt)
	if err != nil {
		return cliFail(stderr, name, fmt.Errorf("the node's digital ID: %w", err))
	}
	path := idPath(cf.pf, digitalIDSuffix)
	if err := writeJSONFile(path, savedID{Issuer: *issuer, SDJWT: sdjwt, Expires: exp}); err != nil {
		return cliFail(stderr, name, err)
	}
	fmt.Fprintf(stderr, "gonets id issue: saved the digital ID in %s; it expires %s\n", path, exp.Local().Format(time.DateTime))
	if err := printClaims(stdout, claims, *asJSON); err != nil {
		return cliFail(stderr, name, err)
	}
	return 0
}

// printClaims writes claims, sorted by name: one "name: value" line
// each, or one JSON object.
func printClaims(w io.Writer, claims map[string]any, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(claims)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	names := make([]string, 0, len(claims))
	for n := range claims {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		v, err := json.Marshal(claims[n])
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s: %s\n", n, v)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// idPath is the file beside pf's profile with suffix.
func idPath(pf *profileFile, suffix string) string {
	return filepath.Join(filepath.Dir(pf.path), pf.name+suffix)
}

// deviceKey returns the device key kept beside pf's profile, making it
// (ECDSA P-256, PKCS #8 PEM, mode 0600) if there is none yet.
func deviceKey(pf *profileFile) (key *ecdsa.PrivateKey, made bool, err error) {
	path := idPath(pf, deviceKeySuffix)
	key, err = loadDeviceKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	// O_EXCL: a key another gonets made meanwhile is kept, and taken.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		key, err = loadDeviceKey(path)
		return key, false, err
	}
	if err != nil {
		return nil, false, err
	}
	err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("save %s: %w", path, err)
	}
	return key, true, nil
}

// loadDeviceKey reads the device key at path; a missing one wraps
// fs.ErrNotExist.
func loadDeviceKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s: not an ECDSA P-256 key", path)
	}
	return ek, nil
}

// idPresent prints a presentation of the saved digital ID with the
// claims asked for, to the verifier aud with its nonce.
func idPresent(args []string, stdout, stderr io.Writer) int {
	const name = "id present"
	fs := newFlagSet(name, idPresentUsage, stdout, stderr)
	claims := fs.String("claims", "", "the claims to disclose, comma-separated (gonets id issue lists them)")
	nonce := fs.String("nonce", "", "the verifier's `nonce`")
	aud := fs.String("aud", "", "the verifier's `id`")
	prof := fs.String("profile", defaultProfile, "the saved login whose digital ID to present, by `name`")
	if c, ok := fs.parse(args); !ok {
		return c
	}
	list := splitClaims(*claims)
	switch {
	case fs.NArg() != 0:
		return fs.usage("%s", fs.noArgs())
	case len(list) == 0:
		return fs.usage("--claims is required: the claims the verifier asked for")
	case *nonce == "" || *aud == "":
		return fs.usage("--nonce and --aud are required: the verifier's challenge and id")
	}
	pf, err := openProfile(*prof)
	if err != nil {
		return cliFail(stderr, name, err)
	}
	id, err := loadSavedID(pf)
	if err != nil {
		return cliFail(stderr, name, err)
	}
	key, err := loadDeviceKey(idPath(pf, deviceKeySuffix))
	if err != nil {
		return cliFail(stderr, name, err)
	}
	p, err := digitalid.Present(id.SDJWT, key, list, *aud, *nonce, time.Now())
	if err != nil {
		return cliFail(stderr, name, err)
	}
	fmt.Fprintln(stdout, p)
	return 0
}

// loadSavedID reads the digital ID kept beside pf's profile.
func loadSavedID(pf *profileFile) (*savedID, error) {
	path := idPath(pf, digitalIDSuffix)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no digital ID saved for profile %s (%s): get one with gonets id issue%s", pf.name, path, profileFlag(pf.name))
	}
	if err != nil {
		return nil, err
	}
	var id savedID
	if err := json.Unmarshal(b, &id); err != nil || id.SDJWT == "" {
		return nil, fmt.Errorf("%s is not a saved digital ID (%v): run gonets id issue%s", path, err, profileFlag(pf.name))
	}
	if !id.Expires.IsZero() && !id.Expires.After(time.Now()) {
		return nil, fmt.Errorf("the digital ID in %s expired %s: run gonets id issue%s", path, id.Expires.Local().Format(time.DateTime), profileFlag(pf.name))
	}
	return &id, nil
}

// splitClaims returns the names of a comma-separated list, blanks left
// out.
func splitClaims(s string) []string {
	var out []string
	for c := range strings.SplitSeq(s, ",") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return out
}

// idVerify verifies a presentation offline with the issuer's JWKS.
func idVerify(args []string, in io.Reader, stdout, stderr io.Writer) int {
	const name = "id verify"
	fs := newFlagSet(name, idVerifyUsage, stdout, stderr)
	fs.notes = idVerifyNotes
	jwks := fs.String("jwks", "", "the issuer's JWKS: an https `URL` or a file")
	nonce := fs.String("nonce", "", "the `nonce` this verifier asked with")
	aud := fs.String("aud", "", "this verifier's `id`")
	claims := fs.String("claims", "", "the claims asked for, comma-separated: required, and no others allowed (default: any)")
	issuer := fs.String("issuer", "", "accept only this issuer `URL` (default: any the JWKS's keys signed)")
	maxAge := fs.Duration("max-age", 30*time.Second, "how old the presentation may be")
	insecure := fs.Bool("insecure", false, "fetch the JWKS without checking the server's certificate (tests only)")
	fingerprint := fs.String("fingerprint", "", "fetch the JWKS only from the server certificate with this SHA-256 `hex` fingerprint (or one the system roots sign)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long fetching the JWKS may take")
	if c, ok := fs.parse(args); !ok {
		return c
	}
	switch {
	case fs.NArg() > 1:
		return fs.usage("unexpected argument %q: give one presentation, or - for stdin", fs.Arg(1))
	case *jwks == "":
		return fs.usage("--jwks is required: the issuer's keys, a URL or a file")
	case *nonce == "" || *aud == "":
		return fs.usage("--nonce and --aud are required: the challenge asked with and this verifier's id")
	case *maxAge <= 0 || *timeout <= 0:
		return fs.usage("--max-age and --timeout must be positive")
	case *insecure && *fingerprint != "":
		return fs.usage("--insecure and --fingerprint are exclusive: pass one")
	}
	p := fs.Arg(0)
	if p == "" || p == "-" {
		line, err := bufio.NewReaderSize(in, 64<<10).ReadString('\n')
		if p = strings.TrimSpace(line); p == "" {
			return cliFail(stderr, name, fmt.Errorf("no presentation on stdin (%v)", err))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	b, err := readJWKS(ctx, *jwks, *insecure, *fingerprint)
	if err != nil {
		return cliFail(stderr, name, err)
	}
	keys, err := digitalid.ParseJWKS(b)
	if err != nil {
		return cliFail(stderr, name, fmt.Errorf("--jwks %s: %w", *jwks, err))
	}
	o := digitalid.VerifyOptions{Keys: keys, Issuer: *issuer, Audience: *aud, Nonce: *nonce, MaxAge: *maxAge}
	if list := splitClaims(*claims); len(list) > 0 {
		o.Allowed, o.Required = list, list
	}
	res, err := digitalid.Verify(p, o)
	if err != nil {
		fmt.Fprintf(stderr, "refused: %s: %v\n", digitalid.Reason(err), err)
		return 1
	}
	out, err := json.Marshal(res.Claims)
	if err != nil {
		return cliFail(stderr, name, err)
	}
	fmt.Fprintf(stdout, "ok\n%s\n", out)
	return 0
}

// readJWKS reads the JWKS at src: fetched when an https URL, else read
// from the file.
func readJWKS(ctx context.Context, src string, insecure bool, fingerprint string) ([]byte, error) {
	if strings.HasPrefix(src, "http://") {
		return nil, fmt.Errorf("--jwks %s: the keys are fetched over HTTPS only", src)
	}
	if !strings.HasPrefix(src, "https://") {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("--jwks: %w", err)
		}
		return b, nil
	}
	cfg := pinnedTLS(fingerprint, nil)
	if insecure {
		cfg.VerifyConnection = nil
	}
	tr := &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, fmt.Errorf("--jwks: %w", err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("--jwks: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("--jwks %s: %w", src, err)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("--jwks %s: %s", src, resp.Status)
	case len(b) > maxJWKS:
		return nil, fmt.Errorf("--jwks %s: over %d bytes", src, maxJWKS)
	}
	return b, nil
}
