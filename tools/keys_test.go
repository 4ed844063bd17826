package tools

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gonets/gonets/identity/token"
)

func TestKeysUsage(t *testing.T) {
	f := func(wantCode int, wantOut, wantErr string, args ...string) {
		t.Helper()
		code, out, errOut := run(append([]string{"keys"}, args...)...)
		if code != wantCode || !strings.Contains(out, wantOut) || !strings.Contains(errOut, wantErr) {
			t.Fatalf("keys %q: exit %d, stdout %q, stderr %q; want %d, %q, %q", args, code, out, errOut, wantCode, wantOut, wantErr)
		}
	}
	f(2, "", "no subcommand")
	f(2, "", `unknown subcommand "spin"`, "spin")
	f(0, "gonets keys rotate", "", "--help")
	f(0, "--min-interval", "", "rotate", "--help")
	f(0, "Only one previous key is kept", "", "rotate", "-h")
	f(0, "--data", "", "show", "--help")
	f(2, "", "must not be negative", "rotate", "--min-interval", "-1s", "--data", t.TempDir())
	f(2, "", `unexpected argument "x"`, "show", "x")
	f(2, "", "flag provided but not defined: -force", "show", "--force")
}

func TestKeysRefuseWithoutNode(t *testing.T) {
	for _, sub := range []string{"rotate", "show"} {
		dir := t.TempDir()
		code, out, errOut := run("keys", sub, "--data", dir)
		abs, _ := filepath.Abs(dir)
		if code != 1 || out != "" || !strings.Contains(errOut, "no node key in "+abs) {
			t.Fatalf("keys %s in an empty dir: exit %d, stdout %q, stderr %q", sub, code, out, errOut)
		}
		if matches, _ := filepath.Glob(filepath.Join(dir, "*")); len(matches) != 0 {
			t.Fatalf("keys %s created %v", sub, matches)
		}
	}
}

func TestKeysRotateShow(t *testing.T) {
	dir := t.TempDir()
	key, err := token.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	first := token.KeyID(key.Public().(ed25519.PublicKey))
	show := func(want ...string) {
		t.Helper()
		code, out, errOut := run("keys", "show", "--data", dir)
		if code != 0 {
			t.Fatalf("keys show: exit %d: %s", code, errOut)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Fatalf("keys show printed %q, want %q in it", out, w)
			}
		}
	}
	show("current   "+first, "previous  none", "rotated   never")

	code, out, errOut := run("keys", "rotate", "--data", dir)
	if code != 0 || !strings.Contains(out, "previous  "+first) {
		t.Fatalf("keys rotate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	k, err := token.ReadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys := k.PublicKeys()
	second := token.KeyID(keys[0])
	if len(keys) != 2 || token.KeyID(keys[1]) != first || !strings.Contains(out, "current   "+second) {
		t.Fatalf("after rotate: keys %d, output %q", len(keys), out)
	}
	show("current   "+second, "previous  "+first, "s ago)")

	// Again at once: refused, and nothing changes.
	code, out, errOut = run("keys", "rotate", "--data", dir)
	if code != 1 || out != "" || !strings.Contains(errOut, "too recent") || !strings.Contains(errOut, "--force") {
		t.Fatalf("second rotate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	show("current   "+second, "previous  "+first)
	for _, args := range [][]string{{"--force"}, {"--min-interval", "0s"}} {
		code, out, errOut = run(append([]string{"keys", "rotate", "--data", dir}, args...)...)
		if code != 0 || !strings.Contains(out, "previous  "+second) {
			t.Fatalf("rotate %q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
		k, err := token.ReadKeyring(dir)
		if err != nil {
			t.Fatal(err)
		}
		second = token.KeyID(k.PublicKeys()[0])
	}
	// The token command signs with the current key.
	code, out, errOut = run("token", "--user", "1", "--device", "1", "--data", dir)
	if code != 0 {
		t.Fatalf("token: exit %d: %s", code, errOut)
	}
	if k, err = token.ReadKeyring(dir); err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(token.Options{Keys: k.PublicKeys()[:1]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(strings.TrimSpace(out)); err != nil {
		t.Fatalf("token after rotations: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, token.NextKeyFile)); !os.IsNotExist(err) {
		t.Fatalf("%s left behind: %v", token.NextKeyFile, err)
	}
}
