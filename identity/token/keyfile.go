package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// KeyFile is the node's signing key in its data directory: PKCS#8 PEM,
// mode 0600. While a rotation is under way (RotateKey) the key that is
// current is the one in NextKeyFile, if present.
const KeyFile = "node-token.key"

// LoadOrCreateKey returns the node's current Ed25519 signing key in dir
// (KeyFile, or NextKeyFile during a rotation), creating dir and a new key
// if there is none. A file that holds anything but an Ed25519 key is an
// error, never overwritten.
func LoadOrCreateKey(dir string) (ed25519.PrivateKey, error) {
	if key, err := LoadKey(filepath.Join(dir, NextKeyFile)); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		return parseKey(path, b)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("token: read key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("token: create %q: %w", dir, err)
	}
	key, pemKey, err := newKeyPEM()
	if err != nil {
		return nil, err
	}
	// Write a temporary file, then link it into place: the key file is
	// either absent or whole, and a key another process linked first wins.
	tmp, err := writeTemp(dir, KeyFile, pemKey, time.Time{})
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
		return LoadOrCreateKey(dir)
	} else if err != nil {
		return nil, fmt.Errorf("token: install key: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return key, nil
}

// newKeyPEM returns a new Ed25519 key and its PKCS#8 PEM encoding.
func newKeyPEM() (ed25519.PrivateKey, []byte, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("token: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("token: encode key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeTemp writes b to a new temporary file in dir named after name,
// mode 0600, with its modification time set to mtime unless that is zero,
// synced; it returns the file's path. The caller links or renames it
// into place, or removes it.
func writeTemp(dir, name string, b []byte, mtime time.Time) (string, error) {
	f, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return "", fmt.Errorf("token: create key: %w", err)
	}
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !mtime.IsZero() {
		err = os.Chtimes(f.Name(), mtime, mtime)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("token: write key: %w", err)
	}
	return f.Name(), nil
}

// syncDir makes the renames and links in dir durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // a directory cannot be opened for sync there
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("token: sync %q: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("token: sync %q: %w", dir, err)
	}
	return nil
}

// LoadKey returns the Ed25519 signing key in the file at path (PKCS#8
// PEM, as LoadOrCreateKey writes it).
func LoadKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token: read key: %w", err)
	}
	return parseKey(path, b)
}

func parseKey(path string, b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("token: %s: not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("token: %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("token: %s: a %T, not an Ed25519 key", path, k)
	}
	return key, nil
}
