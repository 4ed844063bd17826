package signing_test

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/signing"
	"github.com/gonets/gonets/identity/signing/signsim"
)

func TestNormalizeSNILS(t *testing.T) {
	for in, want := range map[string]string{
		"123-456-789 64":  "12345678964",
		"12345678964":     "12345678964",
		" 123 456 789-64": "12345678964",
		"":                "",
	} {
		if got := signing.NormalizeSNILS(in); got != want {
			t.Errorf("NormalizeSNILS(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckSigner(t *testing.T) {
	sim := newSim(t, signsim.Options{})
	person := func(snils string) *x509.Certificate {
		t.Helper()
		c, err := sim.PersonCertificate(snils)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	holder, nobody := person("123-456-789 64"), person("")
	if s, ok := signing.CertSNILS(holder); !ok || s != "12345678964" {
		t.Fatalf("CertSNILS = %q, %v", s, ok)
	}
	if s, ok := signing.CertSNILS(nobody); ok {
		t.Fatalf("CertSNILS of a certificate without one = %q", s)
	}
	for _, c := range []struct {
		name    string
		cert    *x509.Certificate
		snils   string
		require bool
		ok      bool
	}{
		{"same, with separators", holder, "123-456-789 64", false, true},
		{"same, bare", holder, "12345678964", true, true},
		{"another person", holder, "112-233-445 95", false, false},
		{"signer without SNILS", holder, "", false, false},
		{"no SNILS in the certificate", nobody, "123-456-789 64", false, true},
		{"no SNILS in the certificate, required", nobody, "123-456-789 64", true, false},
	} {
		err := signing.CheckSigner(c.cert, signing.Signer{OID: "1", SNILS: c.snils}, c.require)
		if c.ok && err != nil || !c.ok && !errors.Is(err, signing.ErrOtherSigner) {
			t.Errorf("%s: CheckSigner = %v", c.name, err)
		}
		if err != nil && (strings.Contains(err.Error(), "12345678964") || strings.Contains(err.Error(), "445")) {
			t.Errorf("%s: the error names a SNILS: %v", c.name, err)
		}
	}
}

// impostor is a provider that asks the signing service to sign as
// another person: the SNILS the service sees is snils.
type impostor struct {
	signing.Provider
	snils string
}

func (p impostor) Start(ctx context.Context, d signing.Document) (string, error) {
	d.Signer.SNILS = p.snils
	return p.Provider.Start(ctx, d)
}

// TestSignerChecked ends a request Failed when the signature's
// certificate names another person, and with RequireSNILS when it names
// nobody; the sim's per-person certificates chain to its Roots.
func TestSignerChecked(t *testing.T) {
	for _, c := range []struct {
		name    string
		snils   string // what the service signs as; "=" for the request's own
		require bool
		want    signing.State
		reason  string
	}{
		{"the signer", "=", true, signing.Signed, ""},
		{"another person", "999-999-999 99", false, signing.Failed, "signed by another person"},
		{"nobody", "", false, signing.Signed, ""},
		{"nobody, SNILS required", "", true, signing.Failed, "signed by another person"},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim := newSim(t, signsim.Options{})
				var p signing.Provider = sim.Provider()
				if c.snils != "=" {
					p = impostor{p, c.snils}
				}
				fin := newFinisher(0)
				m := newManager(t, identity.NewMemKV(), p, fin, func(o *signing.ManagerOptions) {
					o.Roots = sim.Roots()
					o.RequireSNILS = c.require
				})
				r := run(m)
				defer r.stop(t)
				req := newRequest("x", docFor("x"))
				if err := m.Submit(t.Context(), req); err != nil {
					t.Fatal(err)
				}
				if err := m.Decide(t.Context(), "x", testSigner, true); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "finish", func() bool { return len(fin.acknowledged("x")) > 0 })
				o := fin.checkOne(t, "x", c.want)
				if !strings.Contains(o.Reason, c.reason) {
					t.Fatalf("reason %q, want %q in it", o.Reason, c.reason)
				}
				if c.want != signing.Signed {
					return
				}
				cert, err := signing.Verify(req.Document, o.Signature, sim.Roots(), time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if snils, _ := signing.CertSNILS(cert); c.snils == "=" && snils != signing.NormalizeSNILS(req.Person.SNILS) {
					t.Fatalf("the sim signed as %q", snils)
				}
				if err := signsim.VerifySignature(req.Document, o.Signature, sim.Certificate()); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}
