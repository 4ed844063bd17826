package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignVerify(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	key, other := newKey(t), newKey(t)
	s := NewSigner(key)
	v, err := NewVerifier(Options{Keys: []ed25519.PublicKey{other.Public().(ed25519.PublicKey), key.Public().(ed25519.PublicKey)}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(Claims{User: 42, Device: 7, Expires: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil || c.User != 42 || c.Device != 7 || !c.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("Verify = %+v, %v", c, err)
	}

	f := func(name, tok string, want error) {
		t.Helper()
		if _, err := v.Verify(tok); !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", name, err, want)
		}
	}
	expired, _ := s.Sign(Claims{User: 42, Device: 7, Expires: now.Add(-time.Minute)})
	f("expired", expired, ErrExpired)
	skewed, _ := s.Sign(Claims{User: 42, Device: 7, Expires: now.Add(-10 * time.Second)})
	if _, err := v.Verify(skewed); err != nil {
		t.Fatalf("within the 30s leeway: %v", err)
	}

	stranger, _ := NewSigner(newKey(t)).Sign(Claims{User: 42, Device: 7, Expires: now.Add(time.Hour)})
	f("unknown key", stranger, ErrForged)
	parts := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[0] ^= 1
	f("tampered signature", parts[0]+"."+parts[1]+"."+base64.RawURLEncoding.EncodeToString(sig), ErrForged)
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"1","dev":"7","exp":9999999999}`))
	f("tampered claims", parts[0]+"."+claims+"."+parts[2], ErrForged)
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	f("alg none", none+"."+parts[1]+".", ErrForged)
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "42", "dev": "7", "exp": now.Add(time.Hour).Unix()})
	hs.Header["kid"] = KeyID(key.Public().(ed25519.PublicKey))
	hsTok, _ := hs.SignedString([]byte(key.Public().(ed25519.PublicKey)))
	f("HS256 with the public key as secret", hsTok, ErrForged)

	f("garbage", "not a token", ErrMalformed)
	f("empty", "", ErrMalformed)
	noDev := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": "42", "exp": now.Add(time.Hour).Unix()})
	noDev.Header["kid"] = KeyID(key.Public().(ed25519.PublicKey))
	noDevTok, _ := noDev.SignedString(key)
	f("no device", noDevTok, ErrMalformed)
	noExp := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": "42", "dev": "7"})
	noExp.Header["kid"] = KeyID(key.Public().(ed25519.PublicKey))
	noExpTok, _ := noExp.SignedString(key)
	f("no expiry", noExpTok, ErrMalformed)

	if _, err := s.Sign(Claims{User: 0, Device: 1, Expires: now}); err == nil {
		t.Fatal("signed a zero user")
	}
	if _, err := NewVerifier(Options{}); err == nil {
		t.Fatal("verifier without keys")
	}
}

func TestKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var wg sync.WaitGroup
	keys := make([]ed25519.PrivateKey, 8)
	errs := make([]error, 8)
	for i := range keys {
		wg.Go(func() { keys[i], errs[i] = LoadOrCreateKey(dir) })
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil || !keys[i].Equal(keys[0]) {
			t.Fatalf("concurrent create %d: %v, same key %v", i, errs[i], keys[i].Equal(keys[0]))
		}
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, st.Mode())
	}
	again, err := LoadOrCreateKey(dir)
	if err != nil || !again.Equal(keys[0]) {
		t.Fatalf("reload: %v", err)
	}
	names, _ := os.ReadDir(dir)
	if len(names) != 1 {
		t.Fatalf("left temporary files: %v", names)
	}
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, KeyFile), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(foreign); err == nil {
		t.Fatal("a foreign key file was accepted")
	}
	if b, _ := os.ReadFile(filepath.Join(foreign, KeyFile)); string(b) != "hello" {
		t.Fatal("a foreign key file was overwritten")
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	key, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadKey(filepath.Join(dir, KeyFile))
	if err != nil || !got.Equal(key) {
		t.Fatalf("LoadKey: %v, equal %v", err, got.Equal(key))
	}
	if _, err := LoadKey(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing key loaded")
	}
}

func TestVerifierCache(t *testing.T) {
	key := newKey(t)
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	v, err := NewVerifier(Options{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, Now: clock, CacheSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	signer := NewSigner(key)
	tok, err := signer.Sign(Claims{User: 7, Device: 1, Expires: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second is answered from the cache
		if c, err := v.Verify(tok); err != nil || c.User != 7 {
			t.Fatalf("Verify = %+v, %v", c, err)
		}
	}
	// Expiry is checked on every use, cached or not.
	now = now.Add(2 * time.Minute)
	if _, err := v.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("a cached token past its expiry: %v", err)
	}
	// The cache stays within its size.
	for u := uint64(1); u <= 5; u++ {
		tk, _ := signer.Sign(Claims{User: u, Device: 1, Expires: now.Add(time.Hour)})
		if _, err := v.Verify(tk); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(v.verified); n > 2 {
		t.Fatalf("cache holds %d tokens, cap 2", n)
	}
	// A forged token is never cached or accepted.
	if _, err := v.Verify(tok[:len(tok)-2] + "AA"); err == nil {
		t.Fatal("a tampered token verified")
	}
}

func TestVerifierSetKeys(t *testing.T) {
	a, b := newKey(t), newKey(t)
	pubA, pubB := a.Public().(ed25519.PublicKey), b.Public().(ed25519.PublicKey)
	v, err := NewVerifier(Options{Keys: []ed25519.PublicKey{pubA}})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	tokA, _ := NewSigner(a).Sign(Claims{User: 1, Device: 1, Expires: exp})
	tokB, _ := NewSigner(b).Sign(Claims{User: 2, Device: 1, Expires: exp})
	f := func(name, tok string, want error) {
		t.Helper()
		if _, err := v.Verify(tok); !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", name, err, want)
		}
	}
	f("A under A", tokA, nil) // now cached
	f("B under A", tokB, ErrForged)
	for _, bad := range [][]ed25519.PublicKey{nil, {pubB[:5]}} {
		if err := v.SetKeys(bad); err == nil {
			t.Fatalf("SetKeys(%v) accepted", bad)
		}
	}
	f("A after refused SetKeys", tokA, nil)
	if err := v.SetKeys([]ed25519.PublicKey{pubB, pubA}); err != nil {
		t.Fatal(err)
	}
	f("A under B, A", tokA, nil)
	f("B under B, A", tokB, nil)
	if err := v.SetKeys([]ed25519.PublicKey{pubB}); err != nil {
		t.Fatal(err)
	}
	f("cached A under B", tokA, ErrForged)
	f("B under B", tokB, nil)
}

// SetKeys is safe while Verify runs; once it has returned, a dropped
// key's token never verifies, not even from the cache.
func TestVerifierSetKeysConcurrent(t *testing.T) {
	a, b := newKey(t), newKey(t)
	pubA, pubB := a.Public().(ed25519.PublicKey), b.Public().(ed25519.PublicKey)
	v, err := NewVerifier(Options{Keys: []ed25519.PublicKey{pubA, pubB}})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	tokA, _ := NewSigner(a).Sign(Claims{User: 1, Device: 1, Expires: exp})
	tokB, _ := NewSigner(b).Sign(Claims{User: 2, Device: 1, Expires: exp})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := v.Verify(tokB); err != nil {
					t.Error(err)
					return
				}
				v.Verify(tokA)
			}
		})
	}
	for range 100 {
		if err := v.SetKeys([]ed25519.PublicKey{pubA, pubB}); err != nil {
			t.Fatal(err)
		}
		spin(100 * time.Microsecond) // let Verifies of tokA start under A
		if err := v.SetKeys([]ed25519.PublicKey{pubB}); err != nil {
			t.Fatal(err)
		}
		// A Verify of tokA that started under the old keys may end now:
		// it must not leave tokA in the cache.
		for deadline := time.Now().Add(200 * time.Microsecond); time.Now().Before(deadline); runtime.Gosched() {
			if _, err := v.Verify(tokA); !errors.Is(err, ErrForged) {
				t.Fatalf("dropped key's token after SetKeys: %v", err)
			}
		}
	}
	close(stop)
	wg.Wait()
}

// spin yields for d, letting other goroutines run.
func spin(d time.Duration) {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		runtime.Gosched()
	}
}
