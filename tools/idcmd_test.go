package tools

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestIDIssuePresentVerify: a linked user gets a digital ID, presents
// age_over_18 alone, and a verifier with the node's JWKS accepts it; a
// tampered, an over-disclosed and a wrong-nonce presentation are refused
// with their reason.
func TestIDIssuePresentVerify(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := testProfiles(t)
	n := startStateNode(t)
	defer n.stop()
	n.login(t, "+79000000001", "alice")

	// Not linked: NOT_LINKED, with the hint.
	if code, _, errOut := run("id", "issue", "--profile", "alice", "--issuer", n.publicURL); code != 1 || !strings.Contains(errOut, "gonets link esia --profile alice") {
		t.Fatalf("id issue unlinked: exit %d: %s", code, errOut)
	}
	n.link(t, "alice")

	// The default issuer (https://127.0.0.1:7445) is not this node's.
	if code, _, errOut := run("id", "issue", "--profile", "alice"); code != 1 || !strings.Contains(errOut, "BAD_REQUEST") || !strings.Contains(errOut, "pass it with --issuer") {
		t.Fatalf("id issue with the default issuer: exit %d: %s", code, errOut)
	}
	code, out, errOut := run("id", "issue", "--profile", "alice", "--issuer", n.publicURL)
	if code != 0 || !strings.Contains(out, "age_over_18: true\n") || !strings.Contains(out, "birthdate: \"1990-03-15\"\n") {
		t.Fatalf("id issue: exit %d: %q %s", code, out, errOut)
	}
	for _, f := range []string{"alice" + deviceKeySuffix, "alice" + digitalIDSuffix} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", f, st, err)
		}
	}
	key, _ := os.ReadFile(filepath.Join(dir, "alice"+deviceKeySuffix))
	// A second issue keeps the device key.
	if code, _, errOut := run("id", "issue", "--profile", "alice", "--issuer", n.publicURL, "--json"); code != 0 || strings.Contains(errOut, "made a device key") {
		t.Fatalf("second id issue: exit %d: %s", code, errOut)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "alice"+deviceKeySuffix)); string(again) != string(key) {
		t.Fatal("a second id issue made a new device key")
	}

	_, nonce, _ := run("id", "nonce")
	nonce = strings.TrimSpace(nonce)
	if len(nonce) < 16 {
		t.Fatalf("id nonce printed %q", nonce)
	}
	const aud = "shop-42"
	present := func(claims string) string {
		t.Helper()
		code, out, errOut := run("id", "present", "--profile", "alice", "--claims", claims, "--nonce", nonce, "--aud", aud)
		if code != 0 || strings.Count(out, "\n") != 1 {
			t.Fatalf("id present %s: exit %d: %q %s", claims, code, out, errOut)
		}
		return strings.TrimSpace(out)
	}
	p := present("age_over_18")
	jwks := n.publicURL + jwksPath
	verify := func(p, nonce string, extra ...string) (int, string, string) {
		t.Helper()
		args := append([]string{"id", "verify", "--jwks", jwks, "--fingerprint", n.fingerprint, "--nonce", nonce, "--aud", aud,
			"--issuer", n.publicURL}, extra...)
		return run(append(args, p)...)
	}
	code, out, errOut = verify(p, nonce, "--claims", "age_over_18")
	if code != 0 || out != "ok\n{\"age_over_18\":true}\n" {
		t.Fatalf("id verify: exit %d: %q %s", code, out, errOut)
	}
	// The presentation on stdin, and the JWKS from a file.
	b, err := readJWKS(t.Context(), jwks, false, n.fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var so, se syncBuffer
	if code := idMain([]string{"verify", "--jwks", file, "--nonce", nonce, "--aud", aud, "-"}, strings.NewReader(p+"\n"), &so, &se); code != 0 ||
		so.String() != "ok\n{\"age_over_18\":true}\n" {
		t.Fatalf("id verify from stdin with a JWKS file: exit %d: %q %s", code, so.String(), se.String())
	}
	// An untrusted certificate: the JWKS is not fetched.
	if code, _, errOut := run("id", "verify", "--jwks", jwks, "--nonce", nonce, "--aud", aud, p); code != 1 || !strings.Contains(errOut, "not trusted") {
		t.Fatalf("id verify, the node's certificate unpinned: exit %d: %s", code, errOut)
	}

	refused := func(reason string, code int, errOut string) {
		t.Helper()
		if code != 1 || !strings.HasPrefix(errOut, "refused: "+reason+": ") {
			t.Errorf("id verify: exit %d, stderr %q; want exit 1 and refused: %s", code, errOut, reason)
		}
	}
	// One character of the disclosure changed (one that still decodes
	// to [salt, name, value]: a salt character).
	code, _, errOut = verify(tamper(t, p), nonce, "--claims", "age_over_18")
	refused("bad_disclosure", code, errOut)
	// More disclosed than asked for.
	code, _, errOut = verify(present("age_over_18,birthdate"), nonce, "--claims", "age_over_18")
	refused("over_disclosed", code, errOut)
	// Another nonce.
	code, _, errOut = verify(p, "another-nonce-123456", "--claims", "age_over_18")
	refused("wrong_nonce", code, errOut)
}

// tamper changes one character of p's first disclosure so that it still
// decodes to [salt, name, value].
func tamper(t *testing.T, p string) string {
	t.Helper()
	parts := strings.Split(p, "~")
	d := []byte(parts[1])
	for i := 4; i < len(d); i++ {
		for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") {
			if c == d[i] {
				continue
			}
			e := append([]byte(nil), d...)
			e[i] = c
			raw, err := base64.RawURLEncoding.Strict().DecodeString(string(e))
			var arr []any
			if err != nil || json.Unmarshal(raw, &arr) != nil || len(arr) != 3 || arr[1] != "age_over_18" {
				continue
			}
			parts[1] = string(e)
			return strings.Join(parts, "~")
		}
	}
	t.Fatalf("no one-character change of %q decodes", d)
	return ""
}
