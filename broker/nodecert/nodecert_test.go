package nodecert

import (
	"crypto/tls"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c1, created, err := LoadOrCreate(dir, []string{"node.example", "10.0.0.7"})
	if err != nil || !created {
		t.Fatalf("first start: created %v, %v", created, err)
	}
	c2, created, err := LoadOrCreate(dir, nil)
	if err != nil || created || Fingerprint(c2.Certificate[0]) != Fingerprint(c1.Certificate[0]) {
		t.Fatalf("restart: created %v, %v, same cert %v", created, err,
			Fingerprint(c2.Certificate[0]) == Fingerprint(c1.Certificate[0]))
	}
	leaf := c1.Leaf
	if leaf == nil || leaf.VerifyHostname("node.example") != nil || leaf.VerifyHostname("127.0.0.1") != nil || leaf.VerifyHostname("10.0.0.7") != nil {
		t.Fatalf("certificate names: %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if st, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}
	// A damaged certificate is an error and stays as it was.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, CertFile), []byte("junk"), 0o644)
	if _, _, err := LoadOrCreate(bad, nil); err == nil {
		t.Fatal("damaged certificate accepted")
	}
	if b, _ := os.ReadFile(filepath.Join(bad, CertFile)); string(b) != "junk" {
		t.Fatal("damaged certificate overwritten")
	}
}

func TestPinnedHandshake(t *testing.T) {
	cert, _, err := LoadOrCreate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.(*tls.Conn).Handshake()
				io.WriteString(c, "hi")
			}()
		}
	}()
	dial := func(fp string) error {
		cfg, err := PinnedConfig(fp, &tls.Config{MinVersion: tls.VersionTLS13})
		if err != nil {
			return err
		}
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = io.ReadAll(c)
		return err
	}
	fp := Fingerprint(cert.Certificate[0])
	if err := dial(fp); err != nil {
		t.Fatalf("right pin: %v", err)
	}
	if err := dial(strings.ToUpper(fp)); err != nil {
		t.Fatalf("upper-case pin: %v", err)
	}
	other, _, _ := LoadOrCreate(t.TempDir(), nil)
	if err := dial(Fingerprint(other.Certificate[0])); !errors.Is(err, ErrFingerprint) {
		t.Fatalf("wrong pin: %v, want ErrFingerprint", err)
	}
	if _, err := PinnedConfig("abc", nil); err == nil {
		t.Fatal("short fingerprint accepted")
	}
}
