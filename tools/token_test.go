package tools

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gonets/gonets/identity/token"
)

func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	// --init creates the key; later runs use it.
	code, out, errOut := run("token", "--user", "5", "--device", "2", "--data", dir, "--init")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	key, err := token.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(token.Options{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{nil, {"--init"}} {
		if args != nil {
			code, out, errOut = run(append([]string{"token", "--user", "5", "--device", "2", "--data", dir}, args...)...)
			if code != 0 {
				t.Fatalf("%q: exit %d: %s", args, code, errOut)
			}
		}
		c, err := v.Verify(strings.TrimSpace(out))
		if err != nil || c.User != 5 || c.Device != 2 {
			t.Fatalf("minted token: %+v, %v", c, err)
		}
	}
}

func TestTokenRefusesWithoutNode(t *testing.T) {
	f := func(dir, want string) {
		t.Helper()
		code, out, errOut := run("token", "--user", "1", "--device", "1", "--data", dir)
		abs, _ := filepath.Abs(dir)
		if code != 1 || out != "" || !strings.Contains(errOut, want) || !strings.Contains(errOut, abs) || !strings.Contains(errOut, "--init") {
			t.Fatalf("token --data %s: exit %d, stdout %q, stderr %q; want 1 and %q", dir, code, out, errOut, want)
		}
		if _, err := os.Stat(filepath.Join(dir, token.KeyFile)); !os.IsNotExist(err) {
			t.Fatalf("a key was created in %s: %v", dir, err)
		}
	}
	// An empty directory, one that does not exist, and a store whose key
	// is gone.
	f(t.TempDir(), "no node in ")
	f(filepath.Join(t.TempDir(), "absent"), "pass --data DIR")
	lost := t.TempDir()
	if err := os.Mkdir(filepath.Join(lost, storeDir), 0o700); err != nil {
		t.Fatal(err)
	}
	f(lost, "holds a node's store but no node-token.key")
}
