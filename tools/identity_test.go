package tools

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/token"
)

// outboxCode waits for the code sent to phone in the file adapter's outbox.
func outboxCode(t *testing.T, path, phone string) string {
	t.Helper()
	re := regexp.MustCompile(`\b\d{6}\b`)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		lines, err := identity.ReadOutbox(path)
		if err == nil {
			for i := len(lines) - 1; i >= 0; i-- {
				if lines[i].To == phone {
					return re.FindString(lines[i].Text)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no code for %s in %s", phone, path)
	return ""
}

// TestServeAccounts runs phone login against gonets serve on its
// defaults plus the sample registry: a user signs up with the code from
// the file adapter's outbox and opens a session with the access token; a
// virtual number is refused; a key rotation is picked up while the node
// runs, and tokens of the previous key keep working.
func TestServeAccounts(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	old := keysPoll
	keysPoll = 50 * time.Millisecond
	defer func() { keysPoll = old }()
	cfg := testConfig(t)
	cfg.Identity.Registry = filepath.Join("..", "identity", "numbering-sample.csv")
	cfg.Identity.DenyOperators = []string{"Виртуальные номера"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, errc := startServe(t, ctx, cfg, io.Discard)
	addr := b["quic"][0]
	opts := client.Options{Fingerprint: b["tls"][0], NoReconnect: true, SendOnly: true, Logger: slog.New(slog.DiscardHandler)}
	outbox := filepath.Join(cfg.Node.DataDir, "sms-outbox.jsonl")
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()

	lc, err := client.StartLogin(rctx, addr, "+7 900 000-00-01", opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := client.VerifyLogin(rctx, addr, lc.Attempt, outboxCode(t, outbox, lc.Phone), client.DeviceName{Name: "test", Platform: "cli"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Created || tok.User < 1<<32 || tok.Device != 1 {
		t.Fatalf("tokens %+v", tok)
	}
	c, err := client.Dial(rctx, addr, tok.Access, opts)
	if err != nil {
		t.Fatal(err)
	}
	if c.User() != tok.User {
		t.Fatalf("session of user %d, want %d", c.User(), tok.User)
	}
	c.Close()
	if _, err := client.StartLogin(rctx, addr, "+7 958 500-12-34", opts); !errors.Is(err, client.ErrVirtualNumber) {
		t.Fatalf("a virtual number: %v, want VIRTUAL_NUMBER", err)
	}

	// Rotate the key under the running node.
	ring, err := token.ReadKeyring(cfg.Node.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	before := token.KeyID(ring.PublicKeys()[0])
	cur, _, err := token.RotateKey(cfg.Node.DataDir, time.Hour, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if cur == before {
		t.Fatal("rotation kept the key")
	}
	var next client.Tokens
	deadline := time.Now().Add(5 * time.Second)
	refresh := tok.Refresh
	for {
		if next, err = client.RefreshTokens(rctx, addr, refresh, opts); err != nil {
			t.Fatal(err)
		}
		refresh = next.Refresh
		if kidOf(t, next.Access) == cur {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node still signs with %s after the rotation to %s", kidOf(t, next.Access), cur)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for name, access := range map[string]string{"new key": next.Access, "previous key": tok.Access} {
		c, err := client.Dial(rctx, addr, access, opts)
		if err != nil {
			t.Fatalf("a token of the %s: %v", name, err)
		}
		c.Close()
	}
	if code, body := get(t, "http://"+b["http"][0]+"/metrics"); code != http.StatusOK ||
		!strings.Contains(body, "gonets_identity_logins_total 1\n") || !strings.Contains(body, `gonets_identity_refused_total{reason="virtual"} 1`) {
		t.Fatalf("/metrics = %d:\n%s", code, body)
	}
	http.DefaultClient.CloseIdleConnections()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// kidOf returns the key id in a token's header.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatalf("token header %q: %v", h, err)
	}
	var hdr struct{ Kid string }
	if err := json.Unmarshal(b, &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr.Kid
}

// TestIdentityKeyDurable: a new identity key's directory entry is synced
// before the key is used, so that a crash cannot keep the accounts
// sealed under it and lose the key.
func TestIdentityKeyDurable(t *testing.T) {
	var synced []string
	defer func(f func(string) error) { syncIdentityKeyDir = f }(syncIdentityKeyDir)
	syncIdentityKeyDir = func(d string) error {
		synced = append(synced, d)
		return syncDir(d)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "identity.key")
	k1, err := loadIdentityKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(synced) != 1 || synced[0] != dir {
		t.Fatalf("directories synced after making the key: %q, want [%q]", synced, dir)
	}
	k2, err := loadIdentityKey(path)
	if err != nil || string(k1) != string(k2) {
		t.Fatalf("key read back: %x, %v; want %x", k2, err, k1)
	}
}
