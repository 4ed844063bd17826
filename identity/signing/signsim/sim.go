package signsim

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gonets/gonets/identity/signing"
	"github.com/smallstep/pkcs7"
)

// Options configures a Sim.
type Options struct {
	// Approve decides what the person does with d: Signed, Declined,
	// Expired or Failed, with a reason; Pending means not yet (it is asked
	// again at the next poll). Called after Delay polls, until it decides;
	// the decision then stays. Default: Signed.
	Approve func(d signing.Document) (signing.State, string)
	// Delay is how many polls of an operation are answered pending before
	// the decision shows. Default: 1; negative means none.
	Delay int
	// Cert and Key are the sim's CA: it issues each person's certificate
	// with them (and Sign signs with them); Key must be Cert's, and Cert
	// should be a CA. Default: a generated ECDSA P-256 self-signed
	// "Signing simulator" CA certificate.
	Cert *x509.Certificate
	Key  crypto.Signer
	// Now is the clock for the certificates' validity. Default: time.Now.
	Now func() time.Time
	// MaxCertificates caps the person certificates kept (one per SNILS);
	// past it the oldest is forgotten, and issued anew when needed.
	// Default: 10,000.
	MaxCertificates int
	// MaxOperations caps the operations kept; Start refuses beyond with
	// 503. Default: 100,000.
	MaxOperations int
	// MaxBody caps a request body of the HTTP API. Default: 4 MiB.
	MaxBody int64
}

// Sim is the simulated signing service.
type Sim struct {
	o Options

	mu     sync.Mutex // guards the following
	ops    map[string]*operation
	byReq  map[string]string // request ID → operation ID
	starts map[string]int    // request ID → Start calls
	next   int

	certMu sync.Mutex       // guards the following
	leaves map[string]*leaf // SNILS without separators → its certificate
	order  []string         // the keys of leaves, oldest first
}

// leaf is a person's certificate, issued by the sim's CA.
type leaf struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// operation is one signature at the Sim.
type operation struct {
	doc     signing.Document
	polls   int
	decided bool
	status  signing.Status
}

// ErrUnknownOperation is returned by the in-process Status for an
// operation the Sim never handed out (404 over HTTP). It wraps
// signing.ErrRejected.
var ErrUnknownOperation = fmt.Errorf("signsim: unknown operation: %w", signing.ErrRejected)

// ErrBadDocument is returned by the in-process Start for a document
// without a request ID or signer, or whose SHA256 is not its digest (400
// over HTTP). It wraps signing.ErrRejected.
var ErrBadDocument = fmt.Errorf("signsim: bad document: %w", signing.ErrRejected)

// errFull is returned by Start past MaxOperations (503 over HTTP).
var errFull = fmt.Errorf("signsim: too many operations: %w", signing.ErrUnavailable)

// New returns a Sim, generating its certificate when o has none.
func New(o Options) (*Sim, error) {
	if o.Approve == nil {
		o.Approve = func(signing.Document) (signing.State, string) { return signing.Signed, "" }
	}
	if o.Delay == 0 {
		o.Delay = 1
	} else if o.Delay < 0 {
		o.Delay = 0
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxOperations <= 0 {
		o.MaxOperations = 100000
	}
	if o.MaxCertificates <= 0 {
		o.MaxCertificates = 10000
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 4 << 20
	}
	if (o.Cert == nil) != (o.Key == nil) {
		return nil, errors.New("signsim: Cert and Key go together")
	}
	if o.Cert != nil {
		if pub, ok := o.Key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(o.Cert.PublicKey) {
			return nil, errors.New("signsim: Key is not Cert's")
		}
	} else {
		cert, key, err := generate(o.Now())
		if err != nil {
			return nil, err
		}
		o.Cert, o.Key = cert, key
	}
	return &Sim{
		o: o, ops: map[string]*operation{}, byReq: map[string]string{}, starts: map[string]int{},
		leaves: map[string]*leaf{},
	}, nil
}

// generate makes the default self-signed ECDSA P-256 CA certificate.
func generate(now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("signsim: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Signing simulator"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("signsim: certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("signsim: certificate: %w", err)
	}
	return cert, key, nil
}

// newSerial returns a random certificate serial number.
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("signsim: serial: %w", err)
	}
	return serial, nil
}

// Certificate returns the sim's CA certificate: it issued the certificate
// of every signature the Sim hands out (and signs Sign's).
func (s *Sim) Certificate() *x509.Certificate { return s.o.Cert }

// Roots returns a pool holding the sim's CA certificate, for
// signing.ManagerOptions.Roots and signing.Verify.
func (s *Sim) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.o.Cert)
	return p
}

// PersonCertificate returns the certificate the Sim signs with for the
// person with snils (separators ignored): issued by the sim's CA, its
// subject carrying the SNILS (signing.OIDSNILS) unless snils is empty.
// The same SNILS gets the same certificate while it is cached (see
// MaxCertificates) and valid.
func (s *Sim) PersonCertificate(snils string) (*x509.Certificate, error) {
	l, err := s.leaf(signing.NormalizeSNILS(snils))
	if err != nil {
		return nil, err
	}
	return l.cert, nil
}

// leaf returns the cached certificate for snils (normalized), issuing it
// when missing or expired.
func (s *Sim) leaf(snils string) (*leaf, error) {
	now := s.o.Now()
	s.certMu.Lock()
	defer s.certMu.Unlock()
	if l, ok := s.leaves[snils]; ok && now.Before(l.cert.NotAfter) {
		return l, nil
	}
	l, err := s.issue(snils, now)
	if err != nil {
		return nil, err
	}
	if _, ok := s.leaves[snils]; !ok {
		for len(s.leaves) >= s.o.MaxCertificates {
			delete(s.leaves, s.order[0])
			s.order[0] = ""
			s.order = s.order[1:]
		}
		s.order = append(s.order, snils)
	}
	s.leaves[snils] = l
	return l, nil
}

// issue makes a person's certificate for snils with the sim's CA, valid
// for a year (not past the CA's end).
func (s *Sim) issue(snils string, now time.Time) (*leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("signsim: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	subject, err := personSubject(snils)
	if err != nil {
		return nil, err
	}
	ca := s.o.Cert
	notBefore, notAfter := now.Add(-time.Hour), now.Add(365*24*time.Hour)
	if notBefore.Before(ca.NotBefore) {
		notBefore = ca.NotBefore
	}
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		RawSubject:   subject,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), s.o.Key)
	if err != nil {
		return nil, fmt.Errorf("signsim: person certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("signsim: person certificate: %w", err)
	}
	return &leaf{cert: cert, key: key}, nil
}

// oidCommonName is the subject's commonName attribute.
var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// personSubject encodes a person certificate's subject: a common name
// and, unless snils is empty, the SNILS as qualified certificates carry
// it (a NumericString; a UTF8String when it is not all digits).
func personSubject(snils string) ([]byte, error) {
	name := pkix.RDNSequence{{{Type: oidCommonName, Value: "Simulated signer"}}}
	if snils != "" {
		tag := asn1.TagNumericString
		if strings.Trim(snils, "0123456789") != "" {
			tag = asn1.TagUTF8String
		}
		name = append(name, pkix.RelativeDistinguishedNameSET{{
			Type: signing.OIDSNILS, Value: asn1.RawValue{Class: asn1.ClassUniversal, Tag: tag, Bytes: []byte(snils)},
		}})
	}
	b, err := asn1.Marshal(name)
	if err != nil {
		return nil, fmt.Errorf("signsim: person subject: %w", err)
	}
	return b, nil
}

// Starts returns how many times Start was called for requestID (over HTTP
// or in process).
func (s *Sim) Starts(requestID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts[requestID]
}

// Sign returns a detached CMS SignedData over data by the sim's CA key,
// its certificate embedded: a signature that names no person (its
// certificate carries no SNILS). Signed operations get SignAs's.
func (s *Sim) Sign(data []byte) ([]byte, error) {
	return sign(data, s.o.Cert, s.o.Key)
}

// SignAs returns a detached CMS SignedData over data by the person with
// snils (see PersonCertificate), that certificate embedded: what the Sim
// hands out for a signed operation, snils being the document's
// Signer.SNILS.
func (s *Sim) SignAs(data []byte, snils string) ([]byte, error) {
	l, err := s.leaf(signing.NormalizeSNILS(snils))
	if err != nil {
		return nil, err
	}
	return sign(data, l.cert, l.key)
}

// sign returns a detached CMS SignedData (SHA-256) over data by key,
// cert embedded.
func sign(data []byte, cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(data)
	if err != nil {
		return nil, fmt.Errorf("signsim: sign: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(cert, key, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("signsim: sign: %w", err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("signsim: sign: %w", err)
	}
	return der, nil
}

// VerifySignature checks that sig is a detached CMS over doc whose
// signer's certificate is cert or was issued by cert (a Sim's
// Certificate, a CA: its person certificates chain to it), valid at the
// signing time the CMS states.
func VerifySignature(doc, sig []byte, cert *x509.Certificate) error {
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	if _, err := signing.Verify(doc, sig, roots, time.Time{}); err != nil {
		return fmt.Errorf("signsim: not signed under %q: %w", cert.Subject, err)
	}
	return nil
}

// start is Start, shared by both faces.
func (s *Sim) start(d signing.Document) (string, error) {
	if d.RequestID == "" || d.Signer.OID == "" || len(d.Data) == 0 || sha256.Sum256(d.Data) != d.SHA256 {
		s.mu.Lock()
		s.starts[d.RequestID]++
		s.mu.Unlock()
		return "", ErrBadDocument
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starts[d.RequestID]++
	if id, ok := s.byReq[d.RequestID]; ok {
		return id, nil
	}
	if len(s.ops) >= s.o.MaxOperations {
		return "", errFull
	}
	s.next++
	id := "op-" + strconv.Itoa(s.next)
	d.Data = append([]byte(nil), d.Data...)
	s.ops[id] = &operation{doc: d}
	s.byReq[d.RequestID] = id
	return id, nil
}

// status is Status, shared by both faces. The decision and the signature
// are made outside the lock, once per operation.
func (s *Sim) status(id string) (signing.Status, error) {
	s.mu.Lock()
	op, ok := s.ops[id]
	if !ok {
		s.mu.Unlock()
		return signing.Status{}, ErrUnknownOperation
	}
	op.polls++
	if op.decided || op.polls <= s.o.Delay {
		st := op.status
		s.mu.Unlock()
		return st, nil
	}
	doc := op.doc
	s.mu.Unlock()

	st := signing.Status{State: signing.Signed}
	state, reason := s.o.Approve(doc)
	switch state {
	case signing.Signed:
		sig, err := s.SignAs(doc.Data, doc.Signer.SNILS)
		if err != nil {
			st = signing.Status{State: signing.Failed, Reason: err.Error()}
		} else {
			st.Signature = sig
		}
	case signing.Declined, signing.Expired, signing.Failed:
		st = signing.Status{State: state, Reason: reason}
	default:
		return signing.Status{State: signing.Pending}, nil // still thinking: ask again next poll
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !op.decided { // a concurrent poll may have decided first: its answer stays
		op.decided, op.status = true, st
	}
	return op.status, nil
}

// Provider returns the Sim as an in-process signing.Provider.
func (s *Sim) Provider() signing.Provider { return simProvider{s} }

type simProvider struct{ s *Sim }

func (p simProvider) Start(ctx context.Context, d signing.Document) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return p.s.start(d)
}

func (p simProvider) Status(ctx context.Context, operation string) (signing.Status, error) {
	if err := ctx.Err(); err != nil {
		return signing.Status{}, err
	}
	return p.s.status(operation)
}

// ServeHTTP serves the HTTP API: POST /v1/signatures and
// GET /v1/signatures/{operation_id}, under any prefix ending in them.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const path = "/v1/signatures"
	p := r.URL.Path
	switch {
	case p == path:
		if r.Method != http.MethodPost {
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "POST only")
			return
		}
		s.serveStart(w, r)
	case len(p) > len(path)+1 && p[:len(path)+1] == path+"/":
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "GET only")
			return
		}
		s.serveStatus(w, p[len(path)+1:])
	default:
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	}
}

// startBody is the body of POST /v1/signatures.
type startBody struct {
	RequestID string `json:"request_id"`
	Signer    struct {
		OID   string `json:"oid"`
		SNILS string `json:"snils"`
	} `json:"signer"`
	Title    string `json:"title"`
	Document string `json:"document"`
	SHA256   string `json:"sha256"`
}

func (s *Sim) serveStart(w http.ResponseWriter, r *http.Request) {
	var b startBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.o.MaxBody))
	if err := dec.Decode(&b); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", "body over the limit")
			return
		}
		writeError(w, http.StatusBadRequest, "bad_json", err.Error())
		return
	}
	d := signing.Document{RequestID: b.RequestID, Signer: signing.Signer{OID: b.Signer.OID, SNILS: b.Signer.SNILS}, Title: b.Title}
	var err error
	if d.Data, err = base64.StdEncoding.DecodeString(b.Document); err != nil {
		writeError(w, http.StatusBadRequest, "bad_document", "document is not base64")
		return
	}
	h, err := hex.DecodeString(b.SHA256)
	if err != nil || len(h) != len(d.SHA256) {
		writeError(w, http.StatusBadRequest, "bad_sha256", "sha256 is not 64 hex digits")
		return
	}
	copy(d.SHA256[:], h)
	id, err := s.start(d)
	switch {
	case errors.Is(err, ErrBadDocument):
		writeError(w, http.StatusBadRequest, "bad_document", "request_id, signer.oid and a document matching sha256 are required")
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "busy", err.Error())
	default:
		writeJSON(w, http.StatusCreated, map[string]string{"operation_id": id, "state": "pending"})
	}
}

func (s *Sim) serveStatus(w http.ResponseWriter, id string) {
	st, err := s.status(id)
	if err != nil {
		writeError(w, http.StatusNotFound, "unknown_operation", "no such operation")
		return
	}
	out := map[string]string{"state": st.State.String()}
	if len(st.Signature) > 0 {
		out["signature"] = base64.StdEncoding.EncodeToString(st.Signature)
	}
	if st.Reason != "" {
		out["reason"] = st.Reason
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, name, msg string) {
	writeJSON(w, code, map[string]string{"error": name, "message": msg})
}
