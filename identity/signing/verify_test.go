package signing_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/gonets/gonets/identity/signing"
	"github.com/gonets/gonets/identity/signing/signsim"
	"github.com/smallstep/pkcs7"
)

func TestVerify(t *testing.T) {
	cert0, key := testCert(t)
	sim := newSim(t, signsim.Options{Cert: cert0, Key: key})
	other := newSim(t, signsim.Options{})
	doc := []byte("the document")
	sig, err := sim.Sign(doc)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := signing.Verify(doc, sig, nil, time.Time{})
	if err != nil || !cert.Equal(sim.Certificate()) {
		t.Fatalf("Verify = %v, %v", cert, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(sim.Certificate())
	if _, err := signing.Verify(doc, sig, roots, time.Now()); err != nil {
		t.Fatalf("Verify with the sim's root: %v", err)
	}
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(other.Certificate())
	if _, err := signing.Verify(doc, sig, otherRoots, time.Now()); !errors.Is(err, signing.ErrSignature) {
		t.Fatalf("Verify with another root: %v", err)
	}
	if err := signsim.VerifySignature(doc, sig, other.Certificate()); err == nil {
		t.Fatal("VerifySignature accepted another signer")
	}

	if !sim.Certificate().Equal(cert0) {
		t.Fatal("the sim does not sign with its Options.Cert")
	}
	sd, err := pkcs7.NewSignedData(doc)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(cert0, key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	attached, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), sig...)
	tampered[len(tampered)-5] ^= 0x40
	for name, c := range map[string]struct{ doc, sig []byte }{
		"other document": {[]byte("the document!"), sig},
		"empty":          {doc, nil},
		"garbage":        {doc, []byte("not der")},
		"tampered":       {doc, tampered},
		"attached":       {doc, attached},
	} {
		if _, err := signing.Verify(c.doc, c.sig, nil, time.Time{}); !errors.Is(err, signing.ErrSignature) {
			t.Errorf("%s: Verify = %v, want ErrSignature", name, err)
		}
	}
}

// testCert returns a self-signed ECDSA certificate and its key.
func testCert(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Test signer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func FuzzVerify(f *testing.F) {
	sim, err := signsim.New(signsim.Options{})
	if err != nil {
		f.Fatal(err)
	}
	doc := []byte("fuzzed document")
	sig, err := sim.Sign(doc)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc, sig)
	f.Add(doc, sig[:len(sig)/2])
	f.Add([]byte{}, []byte{0x30, 0x80, 0, 0})
	f.Add(doc, []byte("garbage"))
	f.Fuzz(func(t *testing.T, doc, sig []byte) {
		cert, err := signing.Verify(doc, sig, nil, time.Time{})
		if (err == nil) != (cert != nil) {
			t.Fatalf("Verify = %v, %v", cert, err)
		}
		if err != nil && !errors.Is(err, signing.ErrSignature) {
			t.Fatalf("Verify error %v is not ErrSignature", err)
		}
	})
}
