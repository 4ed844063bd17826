package signsim_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gonets/gonets/identity/signing"
	"github.com/gonets/gonets/identity/signing/signsim"
)

func document(id string, data string) signing.Document {
	return signing.Document{RequestID: id, Signer: signing.Signer{OID: "1000"}, Title: "t", Data: []byte(data), SHA256: sha256.Sum256([]byte(data))}
}

func TestProvider(t *testing.T) {
	approvals := 0
	sim, err := signsim.New(signsim.Options{Delay: 2, Approve: func(d signing.Document) (signing.State, string) {
		approvals++
		if d.Title == "no" {
			return signing.Declined, "refused"
		}
		return signing.Signed, ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c := sim.Certificate(); c == nil || c.Subject.CommonName != "Signing simulator" {
		t.Fatalf("certificate %v", c)
	}
	p, ctx := sim.Provider(), context.Background()
	d := document("a", "hello")
	op, err := p.Start(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := p.Start(ctx, d); err != nil || again != op {
		t.Fatalf("Start again = %q, %v; want %q", again, err, op)
	}
	if n := sim.Starts("a"); n != 2 {
		t.Fatalf("Starts = %d", n)
	}
	for i := range 2 {
		if st, err := p.Status(ctx, op); err != nil || st.State != signing.Pending {
			t.Fatalf("poll %d: %+v, %v", i, st, err)
		}
	}
	st, err := p.Status(ctx, op)
	if err != nil || st.State != signing.Signed {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if err := signsim.VerifySignature(d.Data, st.Signature, sim.Certificate()); err != nil {
		t.Fatal(err)
	}
	if err := signsim.VerifySignature([]byte("other"), st.Signature, sim.Certificate()); err == nil {
		t.Fatal("signature verified over other bytes")
	}
	if again, _ := p.Status(ctx, op); string(again.Signature) != string(st.Signature) || approvals != 1 {
		t.Fatalf("the decision changed, or Approve was asked %d times", approvals)
	}

	d = document("b", "bye")
	d.Title = "no"
	op, _ = p.Start(ctx, d)
	p.Status(ctx, op)
	p.Status(ctx, op)
	if st, err := p.Status(ctx, op); err != nil || st.State != signing.Declined || st.Reason != "refused" {
		t.Fatalf("declined: %+v, %v", st, err)
	}

	bad := document("c", "x")
	bad.SHA256[0] ^= 1
	if _, err := p.Start(ctx, bad); !errors.Is(err, signsim.ErrBadDocument) || !errors.Is(err, signing.ErrRejected) {
		t.Fatalf("Start with a wrong digest: %v", err)
	}
	if _, err := p.Status(ctx, "op-999"); !errors.Is(err, signsim.ErrUnknownOperation) {
		t.Fatalf("Status unknown: %v", err)
	}
}

func TestHTTP(t *testing.T) {
	sim, err := signsim.New(signsim.Options{Delay: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	defer srv.Close()
	do := func(method, path, body string) (int, map[string]string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return resp.StatusCode, out
	}
	doc := base64.StdEncoding.EncodeToString([]byte("hello"))
	sum := sha256.Sum256([]byte("hello"))
	body := `{"request_id":"r","signer":{"oid":"1","snils":"2"},"title":"t","document":"` + doc + `","sha256":"` + hexs(sum[:]) + `"}`
	code, out := do("POST", "/v1/signatures", body)
	if code != http.StatusCreated || out["operation_id"] == "" || out["state"] != "pending" {
		t.Fatalf("start: %d %v", code, out)
	}
	op := out["operation_id"]
	if code, again := do("POST", "/v1/signatures", body); code != http.StatusCreated || again["operation_id"] != op {
		t.Fatalf("start again: %d %v", code, again)
	}
	code, out = do("GET", "/v1/signatures/"+op, "")
	if code != http.StatusOK || out["state"] != "signed" {
		t.Fatalf("status: %d %v", code, out)
	}
	sig, err := base64.StdEncoding.DecodeString(out["signature"])
	if err != nil {
		t.Fatal(err)
	}
	if err := signsim.VerifySignature([]byte("hello"), sig, sim.Certificate()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method, path, body string
		code               int
		errName            string
	}{
		{"POST", "/v1/signatures", `{"request_id":`, 400, "bad_json"},
		{"POST", "/v1/signatures", strings.Replace(body, hexs(sum[:]), strings.Repeat("0", 64), 1), 400, "bad_document"},
		{"POST", "/v1/signatures", strings.Replace(body, doc, "!!", 1), 400, "bad_document"},
		{"POST", "/v1/signatures", strings.Replace(body, hexs(sum[:]), "zz", 1), 400, "bad_sha256"},
		{"GET", "/v1/signatures/op-404", "", 404, "unknown_operation"},
		{"GET", "/v1/signatures", "", 405, "method_not_allowed"},
		{"DELETE", "/v1/signatures/" + op, "", 405, "method_not_allowed"},
		{"GET", "/v2", "", 404, "not_found"},
	} {
		if code, out := do(c.method, c.path, c.body); code != c.code || out["error"] != c.errName || out["message"] == "" {
			t.Errorf("%s %s: %d %v; want %d %s", c.method, c.path, code, out, c.code, c.errName)
		}
	}
}

func hexs(b []byte) string { return hex.EncodeToString(b) }

func TestOptions(t *testing.T) {
	sim, _ := signsim.New(signsim.Options{})
	if _, err := signsim.New(signsim.Options{Cert: sim.Certificate()}); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signsim.New(signsim.Options{Cert: sim.Certificate(), Key: key}); err == nil {
		t.Fatal("a key not the certificate's was accepted")
	}
}
