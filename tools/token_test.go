package tools

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"

	"github.com/gonets/gonets/identity/token"
)

func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	var out, errw bytes.Buffer
	if code := Main([]string{"token", "--user", "5", "--device", "2", "--data", dir}, &out, &errw); code != 0 {
		t.Fatalf("exit %d: %s", code, errw.String())
	}
	key, err := token.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(token.Options{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(strings.TrimSpace(out.String()))
	if err != nil || c.User != 5 || c.Device != 2 {
		t.Fatalf("minted token: %+v, %v", c, err)
	}
	if code := Main([]string{"token", "--user", "5"}, &out, &errw); code != 2 {
		t.Fatalf("missing --device: exit %d", code)
	}
}
