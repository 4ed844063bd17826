package esia

import (
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDevKeyFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, _, err := LoadDevKey(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadDevKey of an empty dir: %v, want ErrNotExist", err)
	}
	cert, key, err := GenerateDevKey("gonets")
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "gonets" || cert.NotAfter.Sub(cert.NotBefore) < 365*24*3600*1e9*9 {
		t.Fatalf("cert %q valid %v to %v", cert.Subject.CommonName, cert.NotBefore, cert.NotAfter)
	}
	if err := WriteDevKey(dir, cert, key); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{DevKeyFile, DevCertFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	lc, lk, err := LoadDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !lc.Equal(cert) {
		t.Fatal("loaded certificate differs")
	}
	sig, err := NewDevSigner(lc, lk).Sign(context.Background(), []byte("data"))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySecret(EncodeSecret(sig), []byte("data"), cert); err != nil {
		t.Fatalf("a signature with the loaded key: %v", err)
	}

	if _, err := NewDevSigner(nil, nil).Sign(context.Background(), []byte("x")); !errors.Is(err, ErrConfig) {
		t.Fatalf("a signer without a key: %v", err)
	}
	// A key and a certificate that do not belong together are refused.
	other, _, err := GenerateDevKey("other")
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteDevKey(filepath.Join(dir, "mixed"), other, key); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadDevKey(filepath.Join(dir, "mixed")); err == nil || !strings.Contains(err.Error(), "do not belong together") {
		t.Fatalf("mixed files: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, DevCertFile), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadDevKey(dir); err == nil {
		t.Fatal("junk certificate loaded")
	}
}

func TestVerifySecret(t *testing.T) {
	cert, key, err := GenerateDevKey("operator")
	if err != nil {
		t.Fatal(err)
	}
	// Another key under a certificate of the same name.
	fakeCert, fakeKey, err := GenerateDevKey("operator")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("gonetsopenid2026.12.02 22:10:00 +0300")
	sig, err := NewDevSigner(cert, key).Sign(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	fake, err := NewDevSigner(fakeCert, fakeKey).Sign(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	// A signature by the wrong key but naming the trusted certificate's
	// issuer and serial.
	forged, err := NewDevSigner(cert, fakeKey).Sign(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	secret := EncodeSecret(sig)
	if strings.ContainsAny(secret, "+/") {
		t.Fatalf("secret %q is not URL-safe", secret)
	}
	for _, tc := range []struct {
		name   string
		secret string
		data   []byte
		ok     bool
	}{
		{"good", secret, data, true},
		{"unpadded", strings.TrimRight(secret, "="), data, true},
		{"other data", secret, []byte("gonetsopenid2026.12.02 22:10:01 +0300"), false},
		{"other key", EncodeSecret(fake), data, false},
		{"forged signer", EncodeSecret(forged), data, false},
		{"std base64", base64.StdEncoding.EncodeToString(append(sig, 0xfb, 0xff)), data, false},
		{"garbage", "AAAA", data, false},
		{"empty", "", data, false},
	} {
		err := VerifySecret(tc.secret, tc.data, cert)
		if tc.ok != (err == nil) {
			t.Errorf("%s: err %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidClient) {
			t.Errorf("%s: err %v is not ErrInvalidClient", tc.name, err)
		}
	}
}

func FuzzVerifySecret(f *testing.F) {
	cert, key, err := GenerateDevKey("operator")
	if err != nil {
		f.Fatal(err)
	}
	sig, err := NewDevSigner(cert, key).Sign(context.Background(), []byte("data"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(EncodeSecret(sig), []byte("data"))
	f.Add("MAA", []byte(""))
	f.Add("", []byte("x"))
	f.Fuzz(func(t *testing.T, secret string, data []byte) {
		// Whatever the secret, it verifies only over the signed data.
		if err := VerifySecret(secret, data, cert); err == nil && string(data) != "data" {
			t.Fatalf("secret %q verified over %q", secret, data)
		}
	})
}
