package esia

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
)

// The dev key's files in a directory, as WriteDevKey writes them.
const (
	DevCertFile = "esia-dev.crt"
	DevKeyFile  = "esia-dev.key"
)

// DevSigner signs with a key and certificate of its own (the simulator's
// dev key: ECDSA P-256, SHA-256), for tests and the demo. Its signatures
// are detached CMS SignedData carrying the certificate, as ESIA takes them
// in shape (ESIA itself wants GOST). Safe for concurrent use.
type DevSigner struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// NewDevSigner returns a signer that signs with key under cert.
func NewDevSigner(cert *x509.Certificate, key crypto.Signer) *DevSigner {
	return &DevSigner{cert: cert, key: key}
}

// Certificate returns the signer's certificate: the one a verifier trusts.
func (s *DevSigner) Certificate() *x509.Certificate { return s.cert }

// Sign returns a detached CMS signature, DER, over data.
func (s *DevSigner) Sign(ctx context.Context, data []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("esia: sign: %w", err)
	}
	if s.cert == nil || s.key == nil {
		return nil, fmt.Errorf("%w: dev signer without a certificate or key", ErrConfig)
	}
	sd, err := pkcs7.NewSignedData(data)
	if err != nil {
		return nil, fmt.Errorf("esia: sign: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(s.cert, s.key, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("esia: sign: %w", err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("esia: sign: %w", err)
	}
	return der, nil
}

// GenerateDevKey returns a new ECDSA P-256 key and a self-signed
// certificate for it, valid for 10 years, named commonName.
func GenerateDevKey(commonName string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("esia: generate dev key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("esia: generate dev key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("esia: generate dev certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("esia: generate dev certificate: %w", err)
	}
	return cert, key, nil
}

// WriteDevKey writes cert and key to dir as PEM files esia-dev.crt and
// esia-dev.key (mode 0600), creating dir (0700) if needed, for `gonets sim
// esia` and the node's dev signer to share.
func WriteDevKey(dir string, cert *x509.Certificate, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("esia: write dev key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("esia: write dev key: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, DevKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, DevCertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
}

// writeFileAtomic writes b to path (0600) through a temporary file and a
// rename, so a reader never sees half a file.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("esia: write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(b)
	if err := errors.Join(werr, f.Sync(), f.Chmod(0o600), f.Close()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("esia: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("esia: write %s: %w", path, err)
	}
	return nil
}

// LoadDevKey reads the certificate and key WriteDevKey wrote to dir. A
// missing file is an error that wraps fs.ErrNotExist.
func LoadDevKey(dir string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, DevCertFile))
	if err != nil {
		return nil, nil, fmt.Errorf("esia: load dev key: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, DevKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("esia: load dev key: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("esia: load dev key: %s holds no PEM certificate", DevCertFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("esia: load dev key: %s: %w", DevCertFile, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("esia: load dev key: %s holds no PEM private key", DevKeyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("esia: load dev key: %s: %w", DevKeyFile, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("esia: load dev key: %s holds a %T, want an ECDSA key", DevKeyFile, k)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("esia: load dev key: %s and %s do not belong together", DevKeyFile, DevCertFile)
	}
	return cert, key, nil
}

// EncodeSecret returns sig as a client_secret: URL-safe base64, padded.
func EncodeSecret(sig []byte) string {
	return base64.URLEncoding.EncodeToString(sig)
}

// VerifySecret verifies a client_secret: URL-safe base64 (padded or not)
// of a detached CMS SignedData over data, signed by trusted's key. The
// certificates the CMS carries are ignored: the signature must verify under
// trusted.
func VerifySecret(secretB64URL string, data []byte, trusted *x509.Certificate) error {
	if trusted == nil {
		return fmt.Errorf("%w: no trusted certificate", ErrConfig)
	}
	der, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(secretB64URL, "="))
	if err != nil {
		return fmt.Errorf("%w: client_secret is not URL-safe base64: %w", ErrInvalidClient, err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return fmt.Errorf("%w: client_secret: %w", ErrInvalidClient, err)
	}
	if len(p7.Signers) != 1 {
		return fmt.Errorf("%w: client_secret has %d signers, want 1", ErrInvalidClient, len(p7.Signers))
	}
	if len(p7.Content) != 0 {
		return fmt.Errorf("%w: client_secret is not a detached signature", ErrInvalidClient)
	}
	p7.Content = data
	p7.Certificates = []*x509.Certificate{trusted}
	if err := p7.Verify(); err != nil {
		return fmt.Errorf("%w: client_secret: %w", ErrInvalidClient, err)
	}
	return nil
}
