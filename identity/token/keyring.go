package token

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Key files beside KeyFile.
const (
	// PrevKeyFile is the previous signing key, kept by RotateKey so that
	// the tokens it signed stay valid until they expire. Its modification
	// time is the time of the rotation that retired it.
	PrevKeyFile = "node-token.prev.key"
	// NextKeyFile holds the new key while RotateKey installs it. Its
	// appearance is the rotation's commit point: while it exists it is the
	// current key and KeyFile the previous one, whatever PrevKeyFile holds.
	NextKeyFile = "node-token.next.key"
	// rotateLockFile keeps two rotations of one directory apart.
	rotateLockFile = "node-token.rotate.lock"
	// staleRotateLock is the age after which a rotation lock is taken to
	// be left by a crash: a rotation takes milliseconds.
	staleRotateLock = time.Minute
)

// ErrRotateTooSoon is returned by RotateKey when the previous rotation was
// less than its minimum interval ago: only one previous key is kept, so
// rotating again would drop a key whose tokens may not have expired yet.
var ErrRotateTooSoon = errors.New("token: the previous key rotation is too recent")

// Keyring is a node's signing keys: the current one, which signs, and the
// previous one, kept by RotateKey, whose tokens still verify until they
// expire. Reload re-reads the files, so a running node picks up a rotation
// made by `gonets keys rotate`. It is safe for concurrent use.
type Keyring struct {
	dir string

	mu     sync.RWMutex // guards the following
	st     keyState
	signer *Signer
}

// keyState is what the key files in a directory say.
type keyState struct {
	cur     ed25519.PrivateKey
	prev    ed25519.PrivateKey // nil if there is none
	rotated time.Time          // of the last rotation; zero if none
}

// LoadKeyring returns the keyring in dir, creating dir and a current key
// if there is none (as LoadOrCreateKey does), with the previous key if
// there is one.
func LoadKeyring(dir string) (*Keyring, error) {
	if _, err := LoadOrCreateKey(dir); err != nil {
		return nil, err
	}
	return ReadKeyring(dir)
}

// ReadKeyring is LoadKeyring but never creates a key: with no key in dir
// its error matches fs.ErrNotExist.
func ReadKeyring(dir string) (*Keyring, error) {
	st, err := readKeyState(dir)
	if err != nil {
		return nil, err
	}
	return &Keyring{dir: dir, st: st, signer: NewSigner(st.cur)}, nil
}

// Signer returns the signer of the current key. After a Reload that
// changed it, it returns another: call it for each token.
func (k *Keyring) Signer() *Signer {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.signer
}

// Current returns the current private key and its KeyID: what the node
// signs its other statements with (the digital IDs it issues), so that
// one rotation covers them and the JWKS lists what PublicKeys does.
func (k *Keyring) Current() (ed25519.PrivateKey, string) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.st.cur, KeyID(k.st.cur.Public().(ed25519.PublicKey))
}

// PublicKeys returns the keys tokens may be signed with: the current one
// first, then the previous one if there is one.
func (k *Keyring) PublicKeys() []ed25519.PublicKey {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.st.publicKeys()
}

// Rotated returns the time of the last rotation, zero if there was none.
func (k *Keyring) Rotated() time.Time {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.st.rotated
}

// Reload re-reads the key files and reports whether the keys changed.
// On error the keys stay as they were.
func (k *Keyring) Reload() (changed bool, err error) {
	return k.ReloadWith(nil)
}

// ReloadWith is Reload that, when the keys changed, first hands the new
// public keys (as PublicKeys orders them) to install, a Verifier's
// SetKeys, and switches the signer only once install has returned nil:
// no token is signed with a key its verifier does not know yet, which
// would refuse it. On install's error nothing changes. Signer waits while
// install runs. The running node calls it on SIGHUP and every few
// seconds.
func (k *Keyring) ReloadWith(install func([]ed25519.PublicKey) error) (changed bool, err error) {
	st, err := readKeyState(k.dir)
	if err != nil {
		return false, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	changed = !st.sameKeys(k.st)
	if changed && install != nil {
		if err := install(st.publicKeys()); err != nil {
			return false, err
		}
	}
	k.st.rotated = st.rotated
	if changed {
		k.st, k.signer = st, NewSigner(st.cur)
	}
	return changed, nil
}

func (s keyState) publicKeys() []ed25519.PublicKey {
	cur := s.cur.Public().(ed25519.PublicKey)
	if s.prev == nil || s.prev.Equal(s.cur) {
		return []ed25519.PublicKey{cur}
	}
	return []ed25519.PublicKey{cur, s.prev.Public().(ed25519.PublicKey)}
}

func (s keyState) sameKeys(o keyState) bool {
	return s.cur.Equal(o.cur) && (s.prev == nil) == (o.prev == nil) && (s.prev == nil || s.prev.Equal(o.prev))
}

// readKeyState reads the key files in dir. The files are read one after
// the other while a rotation may be renaming them, so it reads them twice
// and takes the state only when both reads agree.
func readKeyState(dir string) (keyState, error) {
	for range 10 {
		a, err := readKeyStateOnce(dir)
		if err != nil {
			return keyState{}, err
		}
		b, err := readKeyStateOnce(dir)
		if err != nil {
			return keyState{}, err
		}
		if a.sameKeys(b) && a.rotated.Equal(b.rotated) {
			return a, nil
		}
	}
	return keyState{}, fmt.Errorf("token: %s: the key files kept changing while read", dir)
}

func readKeyStateOnce(dir string) (keyState, error) {
	next, nextTime, err := readKeyFile(filepath.Join(dir, NextKeyFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return keyState{}, err
	}
	cur, _, err := readKeyFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return keyState{}, err
	}
	if next != nil {
		// A rotation is under way, or was cut short: it has committed.
		return keyState{cur: next, prev: cur, rotated: nextTime}, nil
	}
	prev, rotated, err := readKeyFile(filepath.Join(dir, PrevKeyFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return keyState{}, err
	}
	return keyState{cur: cur, prev: prev, rotated: rotated}, nil
}

// readKeyFile returns the key in the file at path and the file's
// modification time, both from one open file.
func readKeyFile(path string) (ed25519.PrivateKey, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("token: read key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("token: read key: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("token: read key: %w", err)
	}
	key, err := parseKey(path, b)
	return key, fi.ModTime(), err
}

// rotateMu keeps rotations in one process apart; the lock file does it
// between processes.
var rotateMu sync.Mutex

// RotateKey makes a new key the current one in dir and keeps the current
// one as the previous (PrevKeyFile, its modification time set to now),
// dropping the previous one; it returns the key ids of the new current
// and previous keys. It refuses with ErrRotateTooSoon when the previous
// rotation was less than minInterval ago, unless force: the tokens of the
// key it would drop may not have expired. A running node's Keyring picks
// the change up on Reload.
//
// No file is ever partial, KeyFile never absent, and a crash leaves the
// old keys or the new ones: the new key is written whole to NextKeyFile,
// which commits the rotation (readers take it as current and KeyFile as
// previous); then the previous key is replaced and NextKeyFile renamed
// over KeyFile. A rotation cut short by a crash is finished by the next
// RotateKey. A directory without a key is an error matching
// fs.ErrNotExist.
func RotateKey(dir string, minInterval time.Duration, force bool, now time.Time) (cur, prev string, err error) {
	rotateMu.Lock()
	defer rotateMu.Unlock()
	unlock, err := lockRotation(dir)
	if err != nil {
		return "", "", err
	}
	defer unlock()

	if _, err := os.Stat(filepath.Join(dir, NextKeyFile)); err == nil {
		if err := finishRotation(dir, now); err != nil {
			return "", "", err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("token: rotate: %w", err)
	}
	st, err := readKeyState(dir)
	if err != nil {
		return "", "", err
	}
	old := st.cur.Public().(ed25519.PublicKey)
	if st.prev != nil && !force {
		if ago := now.Sub(st.rotated); ago < minInterval {
			return "", "", fmt.Errorf("%w: the last one was %v ago (%s), less than %v; tokens of key %s may still be valid",
				ErrRotateTooSoon, ago.Round(time.Second), st.rotated.UTC().Format(time.RFC3339), minInterval,
				KeyID(st.prev.Public().(ed25519.PublicKey)))
		}
	}
	key, pemKey, err := newKeyPEM()
	if err != nil {
		return "", "", err
	}
	tmp, err := writeTemp(dir, NextKeyFile, pemKey, now)
	if err != nil {
		return "", "", err
	}
	defer os.Remove(tmp)
	if err := os.Rename(tmp, filepath.Join(dir, NextKeyFile)); err != nil {
		return "", "", fmt.Errorf("token: rotate: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return "", "", err
	}
	if err := finishRotation(dir, now); err != nil {
		return "", "", err
	}
	return KeyID(key.Public().(ed25519.PublicKey)), KeyID(old), nil
}

// finishRotation installs NextKeyFile as the current key: KeyFile (the key
// it replaces) becomes PrevKeyFile, stamped now, then NextKeyFile is
// renamed over KeyFile. Each step can be repeated after a crash.
func finishRotation(dir string, now time.Time) error {
	if _, err := LoadKey(filepath.Join(dir, NextKeyFile)); err != nil {
		return err // never install a key that does not parse
	}
	curPath := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(curPath)
	if err != nil {
		return fmt.Errorf("token: rotate: %w", err)
	}
	if _, err := parseKey(curPath, b); err != nil {
		return err
	}
	tmp, err := writeTemp(dir, PrevKeyFile, b, now)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Rename(tmp, filepath.Join(dir, PrevKeyFile)); err != nil {
		return fmt.Errorf("token: rotate: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, NextKeyFile), curPath); err != nil {
		return fmt.Errorf("token: rotate: %w", err)
	}
	return syncDir(dir)
}

// lockRotation takes dir's rotation lock file, or says who holds it. A
// lock older than staleRotateLock was left by a crash and is taken over.
func lockRotation(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, rotateLockFile)
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil {
		return nil, fmt.Errorf("token: no key to rotate in %s: %w", dir, err)
	}
	for range 2 {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("token: rotate: %w", err)
		}
		fi, serr := os.Stat(path)
		if serr != nil || time.Since(fi.ModTime()) < staleRotateLock {
			break
		}
		os.Remove(path)
	}
	return nil, fmt.Errorf("token: another rotation holds %s; if none is running, remove it", path)
}
