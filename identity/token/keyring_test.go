package token

import (
	"bufio"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var ringT0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func mustSign(t *testing.T, s *Signer) string {
	t.Helper()
	tok, err := s.Sign(Claims{User: 1, Device: 1, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func keyIDs(keys []ed25519.PublicKey) []string {
	var ids []string
	for _, k := range keys {
		ids = append(ids, KeyID(k))
	}
	return ids
}

func TestKeyringRotate(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadKeyring(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadKeyring of an empty dir = %v, want fs.ErrNotExist", err)
	}
	if _, _, err := RotateKey(dir, time.Hour, false, ringT0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("RotateKey of an empty dir = %v, want fs.ErrNotExist", err)
	}
	k, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := k.PublicKeys()
	if len(a) != 1 || !k.Rotated().IsZero() {
		t.Fatalf("new keyring: %v keys, rotated %v", keyIDs(a), k.Rotated())
	}
	v, err := NewVerifier(Options{Keys: a})
	if err != nil {
		t.Fatal(err)
	}
	tokA := mustSign(t, k.Signer())
	if _, err := v.Verify(tokA); err != nil {
		t.Fatal(err)
	}
	if changed, err := k.Reload(); changed || err != nil {
		t.Fatalf("Reload with nothing new = %v, %v", changed, err)
	}

	// The first rotation: A becomes the previous key.
	cur, prev, err := RotateKey(dir, time.Hour, false, ringT0)
	if err != nil || prev != KeyID(a[0]) || cur == prev {
		t.Fatalf("RotateKey = %s, %s, %v; current was %s", cur, prev, err, KeyID(a[0]))
	}
	if fi, err := os.Stat(filepath.Join(dir, PrevKeyFile)); err != nil || !fi.ModTime().Equal(ringT0) || fi.Mode().Perm() != 0o600 {
		t.Fatalf("prev file: %v, %v", fi, err)
	}
	if changed, err := k.Reload(); !changed || err != nil {
		t.Fatalf("Reload after a rotation = %v, %v", changed, err)
	}
	if got := keyIDs(k.PublicKeys()); len(got) != 2 || got[0] != cur || got[1] != prev || !k.Rotated().Equal(ringT0) {
		t.Fatalf("after rotation: keys %v, rotated %v; want [%s %s]", got, k.Rotated(), cur, prev)
	}
	if err := v.SetKeys(k.PublicKeys()); err != nil {
		t.Fatal(err)
	}
	tokB := mustSign(t, k.Signer())
	for _, tok := range []string{tokA, tokB} {
		if _, err := v.Verify(tok); err != nil {
			t.Fatalf("after rotation: %v", err)
		}
	}
	if key, err := LoadOrCreateKey(dir); err != nil || KeyID(key.Public().(ed25519.PublicKey)) != cur {
		t.Fatalf("LoadOrCreateKey after rotation = %v, %v; want %s", key, err, cur)
	}

	// Too soon: A's tokens may still be valid. Nothing changes.
	if _, _, err := RotateKey(dir, time.Hour, false, ringT0.Add(59*time.Minute)); !errors.Is(err, ErrRotateTooSoon) {
		t.Fatalf("rotation 59m later = %v, want ErrRotateTooSoon", err)
	}
	if changed, err := k.Reload(); changed || err != nil {
		t.Fatalf("Reload after a refused rotation = %v, %v", changed, err)
	}
	// Forced: A is dropped, and its token stops verifying at once, though
	// the verifier had it cached.
	cur2, prev2, err := RotateKey(dir, time.Hour, true, ringT0.Add(59*time.Minute))
	if err != nil || prev2 != cur {
		t.Fatalf("forced RotateKey = %s, %s, %v", cur2, prev2, err)
	}
	if changed, err := k.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	if err := v.SetKeys(k.PublicKeys()); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tokA); !errors.Is(err, ErrForged) {
		t.Fatalf("token of a dropped key = %v, want ErrForged", err)
	}
	if _, err := v.Verify(tokB); err != nil {
		t.Fatalf("token of the previous key: %v", err)
	}
	// An hour after the last rotation, no force is needed.
	if _, _, err := RotateKey(dir, time.Hour, false, ringT0.Add(119*time.Minute)); err != nil {
		t.Fatalf("rotation an hour later: %v", err)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(matches) != 2 {
		t.Fatalf("files left in the key dir: %v", matches)
	}
}

// writeKeyFile writes a new key to dir/name and returns its id.
func writeKeyFile(t *testing.T, dir, name string) string {
	t.Helper()
	key, b, err := newKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return KeyID(key.Public().(ed25519.PublicKey))
}

// A rotation cut short leaves files that read as the old state (before
// NextKeyFile appeared) or the new one (after); RotateKey finishes it.
func TestRotateKeyInterrupted(t *testing.T) {
	f := func(name string, setup func(dir string) (cur, prev string)) {
		t.Helper()
		dir := t.TempDir()
		wantCur, wantPrev := setup(dir)
		k, err := ReadKeyring(dir)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := keyIDs(k.PublicKeys()); got[0] != wantCur || got[len(got)-1] != wantPrev {
			t.Fatalf("%s: keys %v, want [%s %s]", name, got, wantCur, wantPrev)
		}
		if key, err := LoadOrCreateKey(dir); err != nil || KeyID(key.Public().(ed25519.PublicKey)) != wantCur {
			t.Fatalf("%s: LoadOrCreateKey = %v", name, err)
		}
		// A rotation within the hour finishes the one cut short, then
		// refuses; the state it leaves is the same keys without leftovers.
		if _, _, err := RotateKey(dir, time.Hour, false, ringT0); err != nil && !errors.Is(err, ErrRotateTooSoon) {
			t.Fatalf("%s: RotateKey = %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(dir, NextKeyFile)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: %s left: %v", name, NextKeyFile, err)
		}
		k, err = ReadKeyring(dir)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := keyIDs(k.PublicKeys()); got[0] != wantCur && got[1] != wantCur {
			t.Fatalf("%s: after RotateKey keys %v, want %s among them", name, got, wantCur)
		}
	}
	f("temp files only", func(dir string) (string, string) {
		a := writeKeyFile(t, dir, KeyFile)
		p := writeKeyFile(t, dir, PrevKeyFile)
		writeKeyFile(t, dir, NextKeyFile+".tmp123")
		writeKeyFile(t, dir, PrevKeyFile+".tmp456")
		return a, p
	})
	f("next committed", func(dir string) (string, string) {
		a := writeKeyFile(t, dir, KeyFile)
		writeKeyFile(t, dir, PrevKeyFile)
		return writeKeyFile(t, dir, NextKeyFile), a
	})
	f("prev replaced", func(dir string) (string, string) {
		a := writeKeyFile(t, dir, KeyFile)
		b, err := os.ReadFile(filepath.Join(dir, KeyFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, PrevKeyFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		return writeKeyFile(t, dir, NextKeyFile), a
	})
}

// A NextKeyFile that is not a key is never installed.
func TestRotateKeyBadNext(t *testing.T) {
	dir := t.TempDir()
	a := writeKeyFile(t, dir, KeyFile)
	if err := os.WriteFile(filepath.Join(dir, NextKeyFile), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := RotateKey(dir, 0, true, ringT0); err == nil || !strings.Contains(err.Error(), "not a PEM") {
		t.Fatalf("RotateKey over a junk %s = %v", NextKeyFile, err)
	}
	if key, err := LoadKey(filepath.Join(dir, KeyFile)); err != nil || KeyID(key.Public().(ed25519.PublicKey)) != a {
		t.Fatalf("current key after a refused finish: %v", err)
	}
}

// TestRotateKeyKilled kills a child process that rotates in a loop, at
// random points, and checks that the keys it leaves are the last rotation
// it reported or the one after it, never a mix or a partial file.
func TestRotateKeyKilled(t *testing.T) {
	if dir := os.Getenv("GONETS_ROTATE_CHILD"); dir != "" {
		for {
			cur, prev, err := RotateKey(dir, 0, true, time.Now())
			if err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Println(cur, prev)
		}
	}
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	k, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	last := [2]string{KeyID(k.PublicKeys()[0]), ""}
	for i := range 10 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRotateKeyKilled$")
		cmd.Env = append(os.Environ(), "GONETS_ROTATE_CHILD="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		// Let it rotate a few times, a different number each round, then
		// kill it wherever it is.
		for n := 0; n < 3+i && lines.Scan(); n++ {
			f := strings.Fields(lines.Text())
			if len(f) != 2 || f[1] != last[0] {
				t.Fatalf("child: %q after %v", lines.Text(), last)
			}
			last = [2]string{f[0], f[1]}
		}
		cmd.Process.Kill()
		for lines.Scan() { // what it printed before the kill
			f := strings.Fields(lines.Text())
			if len(f) == 2 && f[1] == last[0] {
				last = [2]string{f[0], f[1]}
			}
		}
		cmd.Wait()
		os.Remove(filepath.Join(dir, rotateLockFile)) // the child's, left by the kill
		k, err := ReadKeyring(dir)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		got := keyIDs(k.PublicKeys())
		switch {
		case len(got) == 2 && got[0] == last[0] && got[1] == last[1]:
		case len(got) == 2 && got[1] == last[0]:
			last = [2]string{got[0], got[1]} // the rotation it was making had committed
		default:
			t.Fatalf("round %d: keys %v after the child reported %v", i, got, last)
		}
	}
}

// Reload, Signer and PublicKeys are safe while another goroutine rotates,
// and always see a whole state: the signer's key is the first public key.
func TestKeyringConcurrent(t *testing.T) {
	dir := t.TempDir()
	k, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(Options{Keys: k.PublicKeys()})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(stop)
		for range 10 {
			if _, _, err := RotateKey(dir, time.Hour, true, time.Now()); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := k.Reload(); err != nil {
					t.Error(err)
					return
				}
				if err := v.SetKeys(k.PublicKeys()); err != nil {
					t.Error(err)
					return
				}
				tok, err := k.Signer().Sign(Claims{User: 1, Device: 1, Expires: time.Now().Add(time.Hour)})
				if err != nil {
					t.Error(err)
					return
				}
				// A rotation between Sign and Verify may drop the key.
				if _, err := v.Verify(tok); err != nil && !errors.Is(err, ErrForged) {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if changed, err := k.Reload(); err != nil {
		t.Fatal(err)
	} else if ids := keyIDs(k.PublicKeys()); len(ids) != 2 {
		t.Fatalf("after rotations: %v (changed %v)", ids, changed)
	}
	if got, want := KeyID(k.Signer().key.Public().(ed25519.PublicKey)), KeyID(k.PublicKeys()[0]); got != want {
		t.Fatalf("signer %s, first public key %s", got, want)
	}
}

// TestKeyringReloadWithInstallsFirst: ReloadWith gives the new keys to
// the verifier before the signer uses one, so that a token signed at any
// moment of a rotation verifies; and when install fails, nothing changes.
func TestKeyringReloadWithInstallsFirst(t *testing.T) {
	dir := t.TempDir()
	k, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(Options{Keys: k.PublicKeys(), CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	old := KeyID(k.PublicKeys()[0])
	if _, _, err := RotateKey(dir, time.Hour, true, time.Now()); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("refused")
	if changed, err := k.ReloadWith(func([]ed25519.PublicKey) error { return refused }); !errors.Is(err, refused) || changed {
		t.Fatalf("ReloadWith, install failing = %v, %v", changed, err)
	}
	if got := keyIDs(k.PublicKeys()); len(got) != 1 || got[0] != old {
		t.Fatalf("keys after a failed install: %v, want [%s]", got, old)
	}
	if _, err := v.Verify(mustSign(t, k.Signer())); err != nil {
		t.Fatalf("the signer changed though install failed: %v", err)
	}

	// One rotation at a time drops no key a signer used: every token
	// signed meanwhile verifies.
	for round := range 20 {
		if round > 0 {
			if _, _, err := RotateKey(dir, time.Hour, true, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				tok, err := k.Signer().Sign(Claims{User: 1, Device: 1, Expires: time.Now().Add(time.Hour)})
				if err == nil {
					_, err = v.Verify(tok)
				}
				if err != nil {
					t.Errorf("round %d: a token signed during the reload: %v", round, err)
					return
				}
			}
		})
		if _, err := k.ReloadWith(v.SetKeys); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
	}
}
