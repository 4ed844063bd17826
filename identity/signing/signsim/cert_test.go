package signsim_test

import (
	"context"
	"encoding/asn1"
	"testing"
	"time"

	"github.com/gonets/gonets/identity/signing"
	"github.com/gonets/gonets/identity/signing/signsim"
)

// TestPersonCertificates issues one certificate per SNILS, under the
// sim's CA, carrying the SNILS as a NumericString; the cache is bounded.
func TestPersonCertificates(t *testing.T) {
	sim, err := signsim.New(signsim.Options{MaxCertificates: 2})
	if err != nil {
		t.Fatal(err)
	}
	cert := func(snils string) []byte {
		t.Helper()
		c, err := sim.PersonCertificate(snils)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.CheckSignatureFrom(sim.Certificate()); err != nil {
			t.Fatalf("%q: not issued by the sim's CA: %v", snils, err)
		}
		return c.Raw
	}
	a := cert("123-456-789 64")
	if string(cert("12345678964")) != string(a) {
		t.Fatal("the same SNILS got another certificate")
	}
	c, _ := sim.PersonCertificate("123-456-789 64")
	if s, ok := signing.CertSNILS(c); !ok || s != "12345678964" {
		t.Fatalf("CertSNILS = %q, %v", s, ok)
	}
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(rawValue(t, c.RawSubject, signing.OIDSNILS), &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Class != asn1.ClassUniversal || raw.Tag != asn1.TagNumericString || string(raw.Bytes) != "12345678964" {
		t.Fatalf("the SNILS is encoded as class %d tag %d %q, want a NumericString", raw.Class, raw.Tag, raw.Bytes)
	}
	b := cert("112-233-445 95")
	if string(b) == string(a) {
		t.Fatal("two people share a certificate")
	}
	if c, _ := sim.PersonCertificate(""); c == nil || len(c.Subject.Names) != 1 {
		t.Fatalf("a certificate without SNILS: %v", c.Subject)
	}
	// Three SNILS ("", a, b) in a cache of two: a was forgotten.
	if string(cert("123-456-789 64")) == string(a) {
		t.Fatal("the cache kept more than MaxCertificates")
	}
	if string(cert("")) == string(b) {
		t.Fatal("a certificate without SNILS equals another person's")
	}
}

// rawValue returns the DER of the value of the first attribute of type
// oid in the subject der.
func rawValue(t *testing.T, der []byte, oid asn1.ObjectIdentifier) []byte {
	t.Helper()
	var rdns []asn1.RawValue
	if _, err := asn1.Unmarshal(der, &rdns); err != nil {
		t.Fatal(err)
	}
	for _, set := range rdns {
		var atvs []struct {
			Type  asn1.ObjectIdentifier
			Value asn1.RawValue
		}
		if _, err := asn1.UnmarshalWithParams(set.FullBytes, &atvs, "set"); err != nil {
			t.Fatal(err)
		}
		for _, atv := range atvs {
			if atv.Type.Equal(oid) {
				return atv.Value.FullBytes
			}
		}
	}
	t.Fatalf("no attribute %v", oid)
	return nil
}

// TestSignsAsTheSigner signs an operation with the certificate of the
// document's signer, which verifies under the sim's CA.
func TestSignsAsTheSigner(t *testing.T) {
	sim, err := signsim.New(signsim.Options{Delay: -1})
	if err != nil {
		t.Fatal(err)
	}
	other, err := signsim.New(signsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := document("a", "hello")
	d.Signer.SNILS = "123-456-789 64"
	p, ctx := sim.Provider(), context.Background()
	op, err := p.Start(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Status(ctx, op)
	if err != nil || st.State != signing.Signed {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	cert, err := signing.Verify(d.Data, st.Signature, sim.Roots(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := signing.CheckSigner(cert, d.Signer, true); err != nil {
		t.Fatal(err)
	}
	if err := signing.CheckSigner(cert, signing.Signer{OID: "2", SNILS: "112-233-445 95"}, false); err == nil {
		t.Fatal("the signature passed for another person")
	}
	if err := signsim.VerifySignature(d.Data, st.Signature, sim.Certificate()); err != nil {
		t.Fatal(err)
	}
	if err := signsim.VerifySignature(d.Data, st.Signature, other.Certificate()); err == nil {
		t.Fatal("verified under another sim's CA")
	}
	if _, err := signing.Verify(d.Data, st.Signature, other.Roots(), time.Now()); err == nil {
		t.Fatal("chained to another sim's CA")
	}
	sig, err := sim.SignAs([]byte("x"), "")
	if err != nil {
		t.Fatal(err)
	}
	if cert, err := signing.Verify([]byte("x"), sig, sim.Roots(), time.Now()); err != nil {
		t.Fatal(err)
	} else if _, ok := signing.CertSNILS(cert); ok {
		t.Fatal("SignAs without a SNILS put one in the certificate")
	}
}
