package statesvc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/digitalid"
	"github.com/gonets/gonets/identity/esia"
	"github.com/gonets/gonets/identity/esiasim"
	"github.com/gonets/gonets/identity/signing"
	"github.com/gonets/gonets/identity/signing/signsim"
	"github.com/gonets/gonets/identity/statesvc"
	"github.com/gonets/gonets/identity/status"
	"github.com/gonets/gonets/identity/status/statussim"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

const (
	issuerURL   = "https://node.test:7445"
	redirectURI = issuerURL + statesvc.CallbackPath
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// world is a node with every state service, against the simulators.
type world struct {
	node     *brokertest.Node
	esiaSim  *esiasim.Sim
	esiaURL  string
	signSim  *signsim.Sim
	statuses *statussim.Sim
	person   esia.Person

	mu  sync.Mutex
	svc *statesvc.Services // of the node's current start
}

func newWorld(t *testing.T, signOpts ...signsim.Options) *world {
	t.Helper()
	w := &world{person: esiasim.DevPerson(), statuses: statussim.New()}
	cert, key, err := esia.GenerateDevKey("gonets test operator")
	if err != nil {
		t.Fatal(err)
	}
	w.esiaSim, err = esiasim.New(esiasim.Options{ClientID: "gonets", RedirectURIs: []string{redirectURI},
		Trusted: cert, Person: w.person, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w.esiaSim)
	t.Cleanup(srv.Close)
	w.esiaURL = srv.URL
	so := signsim.Options{}
	if len(signOpts) > 0 {
		so = signOpts[0]
	}
	if w.signSim, err = signsim.New(so); err != nil {
		t.Fatal(err)
	}
	signer := esia.NewDevSigner(cert, key)
	w.node = brokertest.Start(t, brokertest.Options{Accounts: true,
		State: func(accts *identity.Accounts, nodeKey ed25519.PrivateKey) (*statesvc.Services, error) {
			client, err := esia.New(esia.Config{BaseURL: srv.URL, ClientID: "gonets",
				Scopes: []string{"openid", "fullname", "birthdate", "snils", "student"}, RedirectURI: redirectURI,
				Signer: signer, Log: quiet})
			if err != nil {
				return nil, err
			}
			kid := token.KeyID(nodeKey.Public().(ed25519.PublicKey))
			svc, err := statesvc.New(statesvc.Options{Accounts: accts, ESIA: client,
				Keys:      func() (ed25519.PrivateKey, string) { return nodeKey, kid },
				IssuerURL: issuerURL,
				Signing:   w.signSim.Provider(), SigningPollMin: 10 * time.Millisecond, SigningPollMax: 50 * time.Millisecond,
				Status: w.statuses.Source(), StatusInterval: 300 * time.Millisecond, Log: quiet})
			if err == nil {
				w.mu.Lock()
				w.svc = svc
				w.mu.Unlock()
			}
			return svc, err
		}})
	return w
}

func (w *world) services() *statesvc.Services {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.svc
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// login signs phone up and connects a client.
func (w *world) login(t *testing.T, phone string) (*client.Client, client.Tokens) {
	t.Helper()
	ctx := ctxT(t)
	o := client.Options{TCPAddr: w.node.TCPAddr, Fingerprint: w.node.Fingerprint, Logger: quiet, DialTimeout: 5 * time.Second}
	lc, err := client.StartLogin(ctx, w.node.Addr, phone, o)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := client.VerifyLogin(ctx, w.node.Addr, lc.Attempt, w.node.Code(t, lc.Phone), client.DeviceName{Name: "phone", Platform: "test"}, o)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, w.node.Addr, tok.Access, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, tok
}

// link links c's user with the simulator's person: the browser goes to
// the provider, which sends it back to the node's callback.
func (w *world) link(t *testing.T, c *client.Client) {
	t.Helper()
	ctx := ctxT(t)
	u, _, err := c.LinkStart(ctx, "esia")
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || back.Scheme+"://"+back.Host+back.Path != redirectURI {
		t.Fatalf("the provider answered %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	rec := httptest.NewRecorder()
	w.services().Callback().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, statesvc.CallbackPath+"?"+back.RawQuery, nil))
	app, err := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusSeeOther || err != nil || app.Scheme+"://"+app.Host != statesvc.DefaultAppRedirect || app.Query().Get("code") == "" {
		t.Fatalf("callback answered %d to %q: %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	// The state works once.
	rec = httptest.NewRecorder()
	w.services().Callback().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, statesvc.CallbackPath+"?"+back.RawQuery, nil))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("a used link state answered %d", rec.Code)
	}
	if la, err := c.Linked(ctx); err != nil || la.Linked {
		t.Fatalf("linked before the app finished: %+v, %v", la, err)
	}
	if _, err := c.LinkFinish(ctx, "not-the-code"); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("a wrong link code: %v, want BAD_REQUEST", err)
	}
	if _, err := c.LinkFinish(ctx, app.Query().Get("code")); err != nil {
		t.Fatalf("LinkFinish: %v", err)
	}
	if _, err := c.LinkFinish(ctx, app.Query().Get("code")); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("a used link code: %v, want BAD_REQUEST", err)
	}
}

// TestLinkPhished: a link URL someone else consents to links nothing to
// the one who asked for it; only the consenting browser's app could
// finish it, and a code is good only for the user who started the link.
func TestLinkPhished(t *testing.T) {
	w := newWorld(t)
	attacker, _ := w.login(t, "+79161234567")
	other, _ := w.login(t, "+79161234568")
	ctx := ctxT(t)
	u, _, err := attacker.LinkStart(ctx, "esia")
	if err != nil {
		t.Fatal(err)
	}
	// The victim opens it and consents; the code goes to the victim's
	// browser. The attacker never sees it; the other user who got hold
	// of it cannot use it either.
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, _ := url.Parse(resp.Header.Get("Location"))
	rec := httptest.NewRecorder()
	w.services().Callback().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, statesvc.CallbackPath+"?"+back.RawQuery, nil))
	app, _ := url.Parse(rec.Header().Get("Location"))
	if _, err := other.LinkFinish(ctx, app.Query().Get("code")); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("another user's code: %v, want BAD_REQUEST", err)
	}
	if la, err := attacker.Linked(ctx); err != nil || la.Linked {
		t.Fatalf("the attacker is linked: %+v, %v", la, err)
	}
}

// serviceEvents returns the service events in user's chat with from.
func (w *world) serviceEvents(t *testing.T, c *client.Client, from, user storage.UserID) []*wire.Service {
	t.Helper()
	chat, err := w.node.Broker().ServiceChat(ctxT(t), from, user)
	if err != nil {
		t.Fatal(err)
	}
	page, err := c.History(ctxT(t), uint64(chat), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []*wire.Service
	for _, m := range page.Messages {
		if m.Kind != wire.MsgKind_MSG_KIND_SERVICE {
			continue
		}
		var ev wire.Service
		if err := proto.Unmarshal(m.Body, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, &ev)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestLinkCredentialPresent: a user links their Gosuslugi account, gets a
// digital ID and shows a shop they are over 18 without showing anything
// else; a presentation with a changed disclosure is refused.
func TestLinkCredentialPresent(t *testing.T) {
	w := newWorld(t)
	alice, tok := w.login(t, "+79161234567")
	ctx := ctxT(t)

	if _, _, err := alice.IssueCredential(ctx, "x"); !errors.Is(err, client.ErrNotLinked) {
		t.Fatalf("a credential before linking: %v, want NOT_LINKED", err)
	}
	w.link(t, alice)
	la, err := alice.Linked(ctx)
	if err != nil || !la.Linked || la.LastName != w.person.LastName || la.BirthDate != w.person.BirthDateISO() || la.SNILS != w.person.SNILS || !la.Trusted {
		t.Fatalf("Linked = %+v, %v", la, err)
	}
	evs := w.serviceEvents(t, alice, storage.ServiceUser, storage.UserID(tok.User))
	if len(evs) == 0 || evs[len(evs)-1].GetAccountLinked().GetProvider() != "esia" {
		t.Fatalf("no account_linked in the service chat: %v", evs)
	}

	holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	proof, err := digitalid.Proof(holder, issuerURL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	badAud, _ := digitalid.Proof(other, "https://elsewhere", time.Now())
	if _, _, err := alice.IssueCredential(ctx, badAud); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("a proof for another audience: %v, want BAD_REQUEST", err)
	}
	sdjwt, exp, err := alice.IssueCredential(ctx, proof)
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(exp) < 24*time.Hour {
		t.Fatalf("credential expires %v", exp)
	}
	claims, err := digitalid.Disclosable(sdjwt)
	if err != nil || claims["age_over_18"] != true || claims["family_name"] != w.person.LastName {
		t.Fatalf("Disclosable = %v, %v", claims, err)
	}

	// The shop: it knows the node's JWKS, makes a nonce, asks for 18+.
	jwks, err := digitalid.JWKS(map[string]ed25519.PublicKey{token.KeyID(w.node.PublicKey()): w.node.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := digitalid.ParseJWKS(jwks)
	if err != nil {
		t.Fatal(err)
	}
	nonce := digitalid.NewNonce()
	pres, err := digitalid.Present(sdjwt, holder, []string{"age_over_18"}, "shop", nonce, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	replay := digitalid.NewNonceCache(time.Minute, 1000)
	vo := digitalid.VerifyOptions{Keys: keys, Issuer: issuerURL, Audience: "shop", Nonce: nonce, Now: time.Now(),
		Allowed: []string{"age_over_18"}, Required: []string{"age_over_18"}, Replay: replay}
	res, err := digitalid.Verify(pres, vo)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if res.Claims["age_over_18"] != true || len(res.Claims) != 1 {
		t.Fatalf("verified claims = %v, want age_over_18 only", res.Claims)
	}
	if _, err := digitalid.Verify(pres, vo); !errors.Is(err, digitalid.ErrReplay) {
		t.Fatalf("the same presentation again: %v, want ErrReplay", err)
	}
	// Over-disclosed: the birth date too.
	vo.Replay, vo.Nonce = nil, digitalid.NewNonce()
	more, _ := digitalid.Present(sdjwt, holder, []string{"age_over_18", "birthdate"}, "shop", vo.Nonce, time.Now())
	if _, err := digitalid.Verify(more, vo); !errors.Is(err, digitalid.ErrOverDisclosed) {
		t.Fatalf("over-disclosed: %v", err)
	}
	// A changed disclosure: age_over_14's in place of age_over_18's.
	only14, _ := digitalid.Present(sdjwt, holder, []string{"age_over_14"}, "shop", vo.Nonce, time.Now())
	vo.Allowed, vo.Required = []string{"age_over_14"}, []string{"age_over_14"}
	if _, err := digitalid.Verify(only14, vo); err != nil {
		t.Fatalf("Verify of age_over_14: %v", err)
	}
	swapped := swapDisclosure(t, pres, only14)
	vo.Allowed, vo.Required = []string{"age_over_18"}, []string{"age_over_18"}
	if _, err := digitalid.Verify(swapped, vo); err == nil {
		t.Fatal("a presentation with a changed disclosure verified")
	}
}

// swapDisclosure returns a with its one disclosure replaced by b's.
func swapDisclosure(t *testing.T, a, b string) string {
	t.Helper()
	pa, pb := splitTilde(a), splitTilde(b)
	if len(pa) != 3 || len(pb) != 3 {
		t.Fatalf("presentations of %d and %d parts", len(pa), len(pb))
	}
	return pa[0] + "~" + pb[1] + "~" + pa[2]
}

func splitTilde(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '~' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// TestSignDocument: a bank sends a user a document to sign in their chat;
// the user approves; the signature, posted in the chat once, verifies
// with the signing service's certificate over the document. A second
// decision is refused, and a stranger cannot decide.
func TestSignDocument(t *testing.T) {
	w := newWorld(t)
	user, utok := w.login(t, "+79161234567")
	bank, _ := w.login(t, "+79161234568")
	ctx := ctxT(t)
	chat, err := bank.CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{utok.User}, "")
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte("Договор №1: кредит 100 000 ₽")
	if _, err := bank.SignRequest(ctx, client.SignRequestOptions{Chat: chat.Chat, Signer: utok.User, Title: "Кредитный договор", Document: doc}); !errors.Is(err, client.ErrNotLinked) {
		t.Fatalf("a request to a signer without a linked account: %v, want NOT_LINKED", err)
	}
	w.link(t, user)
	ack, err := bank.SignRequest(ctx, client.SignRequestOptions{Chat: chat.Chat, Signer: utok.User, Title: "Кредитный договор", Document: doc})
	if err != nil {
		t.Fatal(err)
	}
	id := fmtID(chat.Chat, ack.Seq)
	if err := bank.SignDecision(ctx, id, true); !errors.Is(err, client.ErrUnknownRequest) {
		t.Fatalf("the requester deciding: %v, want UNKNOWN_REQUEST", err)
	}
	if err := user.SignDecision(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	var result *wire.SignResult
	waitFor(t, "the sign_result", func() bool {
		page, err := bank.History(ctx, chat.Chat, 1, 100)
		if err != nil {
			return false
		}
		n := 0
		for _, m := range page.Messages {
			var ev wire.Service
			if m.Kind == wire.MsgKind_MSG_KIND_SERVICE && proto.Unmarshal(m.Body, &ev) == nil && ev.GetSignResult() != nil {
				result = ev.GetSignResult()
				n++
				if m.Sender != utok.User {
					t.Errorf("sign_result sent by %d, want the signer %d", m.Sender, utok.User)
				}
			}
		}
		if n > 1 {
			t.Fatalf("%d sign_results", n)
		}
		return n == 1
	})
	if result.State != signing.Signed.String() || result.RequestSeq != ack.Seq || result.Id != id {
		t.Fatalf("sign_result = %+v", result)
	}
	if err := signsim.VerifySignature(doc, result.Signature, w.signSim.Certificate()); err != nil {
		t.Fatalf("the signature does not verify: %v", err)
	}
	if err := user.SignDecision(ctx, id, false); !errors.Is(err, client.ErrRequestEnded) {
		t.Fatalf("a second decision: %v, want REQUEST_ENDED", err)
	}
}

func fmtID(chat, seq uint64) string {
	return strconv.FormatUint(chat, 10) + "." + strconv.FormatUint(seq, 10)
}

// TestStatusesOnceAcrossRestart: an application's statuses appear once
// each in the user's Госуслуги chat, and after a node restart a new one
// is added without repeating the old.
func TestStatusesOnceAcrossRestart(t *testing.T) {
	w := newWorld(t)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	w.statuses.Add(w.person.OID, "100500", "Загранпаспорт", status.Status{Code: "accepted", Title: "Заявление принято", At: t0})
	w.statuses.Add(w.person.OID, "100500", "Загранпаспорт", status.Status{Code: "review", Title: "На рассмотрении", At: t0.Add(time.Minute)})
	user, tok := w.login(t, "+79161234567")
	w.link(t, user)
	count := func(c *client.Client) map[string]int {
		got := map[string]int{}
		for _, ev := range w.serviceEvents(t, c, storage.GosuslugiUser, storage.UserID(tok.User)) {
			if s := ev.GetApplicationStatus(); s != nil {
				got[s.Code]++
				if s.OrderId != "100500" || s.Text == "" {
					t.Errorf("status %+v", s)
				}
			}
		}
		return got
	}
	waitFor(t, "two statuses", func() bool { return len(count(user)) == 2 })
	time.Sleep(700 * time.Millisecond) // two more polls: nothing new
	if got := count(user); got["accepted"] != 1 || got["review"] != 1 {
		t.Fatalf("statuses = %v, want each once", got)
	}

	w.node.Restart(t)
	w.statuses.Add(w.person.OID, "100500", "Загранпаспорт", status.Status{Code: "ready", Title: "Паспорт готов", At: t0.Add(2 * time.Minute), Final: true})
	o := client.Options{TCPAddr: w.node.TCPAddr, Fingerprint: w.node.Fingerprint, Logger: quiet, DialTimeout: 5 * time.Second}
	again, err := client.Dial(ctxT(t), w.node.Addr, tok.Access, o)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	waitFor(t, "the third status", func() bool { return count(again)["ready"] == 1 })
	time.Sleep(700 * time.Millisecond)
	if got := count(again); got["accepted"] != 1 || got["review"] != 1 || got["ready"] != 1 {
		t.Fatalf("statuses after restart = %v, want each once", got)
	}
}

// TestSignRequestRefusals: a resend of a signing request submits what the
// chat shows, whatever the resend holds; a stranger to the chat, a
// channel and a signer outside the chat are refused, and nothing is
// posted for them.
func TestSignRequestRefusals(t *testing.T) {
	w := newWorld(t)
	user, utok := w.login(t, "+79161234567")
	bank, _ := w.login(t, "+79161234568")
	stranger, _ := w.login(t, "+79161234569")
	w.link(t, user)
	ctx := ctxT(t)
	chat, err := bank.CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{utok.User}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stranger.SignRequest(ctx, client.SignRequestOptions{Chat: chat.Chat, Signer: utok.User, Title: "Чужой", Document: []byte("x")}); !errors.Is(err, client.ErrNotMember) {
		t.Fatalf("a stranger's request: %v, want NOT_MEMBER", err)
	}
	channel, err := bank.CreateChat(ctx, wire.ChatKind_CHAT_KIND_CHANNEL, []uint64{utok.User}, "Новости банка")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bank.SignRequest(ctx, client.SignRequestOptions{Chat: channel.Chat, Signer: utok.User, Title: "В канале", Document: []byte("x")}); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("a request in a channel: %v, want BAD_REQUEST", err)
	}
	// The resend: same client_msg_id, another document.
	id := bank.NextClientMsgID()
	doc := []byte("Договор A")
	first, err := bank.SignRequest(ctx, client.SignRequestOptions{Chat: chat.Chat, Signer: utok.User, Title: "Договор", Document: doc, ClientMsgID: id})
	if err != nil {
		t.Fatal(err)
	}
	second, err := bank.SignRequest(ctx, client.SignRequestOptions{Chat: chat.Chat, Signer: utok.User, Title: "Договор", Document: []byte("Договор B, другой"), ClientMsgID: id})
	if err != nil || !second.Duplicate || second.Seq != first.Seq {
		t.Fatalf("the resend: %+v, %v", second, err)
	}
	if err := user.SignDecision(ctx, fmtID(chat.Chat, first.Seq), true); err != nil {
		t.Fatal(err)
	}
	var result *wire.SignResult
	waitFor(t, "the sign_result", func() bool {
		page, err := bank.History(ctx, chat.Chat, 1, 100)
		if err != nil {
			return false
		}
		for _, m := range page.Messages {
			var ev wire.Service
			if m.Kind == wire.MsgKind_MSG_KIND_SERVICE && proto.Unmarshal(m.Body, &ev) == nil && ev.GetSignResult() != nil {
				result = ev.GetSignResult()
			}
		}
		return result != nil
	})
	if err := signsim.VerifySignature(doc, result.Signature, w.signSim.Certificate()); err != nil {
		t.Fatalf("the signature is not over the posted document: %v", err)
	}
}

// signResults returns the sign_results in chat, by request id.
func signResults(t *testing.T, c *client.Client, chat uint64) map[string]*wire.SignResult {
	t.Helper()
	page, err := c.History(ctxT(t), chat, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*wire.SignResult{}
	for _, m := range page.Messages {
		var ev wire.Service
		if m.Kind == wire.MsgKind_MSG_KIND_SERVICE && proto.Unmarshal(m.Body, &ev) == nil && ev.GetSignResult() != nil {
			if out[ev.GetSignResult().Id] != nil {
				t.Fatalf("two sign_results for %s", ev.GetSignResult().Id)
			}
			out[ev.GetSignResult().Id] = ev.GetSignResult()
		}
	}
	return out
}

// TestSignWithdrawnAndUnlinked: a request whose message the requester
// deleted is not signed; a signer who unlinks ends their pending requests
// as failed, with the node's words in the chat, and cannot approve them.
func TestSignWithdrawnAndUnlinked(t *testing.T) {
	w := newWorld(t)
	user, utok := w.login(t, "+79161234567")
	bank, _ := w.login(t, "+79161234568")
	w.link(t, user)
	ctx := ctxT(t)
	chat, err := bank.CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{utok.User}, "")
	if err != nil {
		t.Fatal(err)
	}
	send := func(title string) string {
		ack, err := bank.SignRequest(ctx, client.SignRequestOptions{Chat: chat.Chat, Signer: utok.User, Title: title, Document: []byte(title)})
		if err != nil {
			t.Fatal(err)
		}
		return fmtID(chat.Chat, ack.Seq)
	}
	withdrawn := send("Отозванный")
	pending := send("Ожидающий")
	seq, _ := strconv.ParseUint(withdrawn[len(strconv.FormatUint(chat.Chat, 10))+1:], 10, 64)
	if _, err := bank.Delete(ctx, chat.Chat, seq); err != nil {
		t.Fatal(err)
	}
	if err := user.SignDecision(ctx, withdrawn, true); !errors.Is(err, client.ErrRequestEnded) {
		t.Fatalf("approving a withdrawn request: %v, want REQUEST_ENDED", err)
	}
	if err := user.Unlink(ctx); err != nil {
		t.Fatal(err)
	}
	if err := user.SignDecision(ctx, pending, true); !errors.Is(err, client.ErrRequestEnded) && !errors.Is(err, client.ErrNotLinked) {
		t.Fatalf("approving after the unlink: %v, want REQUEST_ENDED or NOT_LINKED", err)
	}
	var res *wire.SignResult
	waitFor(t, "the unlinked signer's request ended", func() bool {
		res = signResults(t, bank, chat.Chat)[pending]
		return res != nil
	})
	if res.State != signing.Failed.String() || res.Reason != "the signature could not be made" || len(res.Signature) != 0 {
		t.Fatalf("sign_result after the unlink = %+v", res)
	}
	if w.signSim.Starts(pending) != 0 {
		t.Fatal("the signing service was asked to sign for an unlinked signer")
	}
}

// TestSignAcrossRestart: a request approved, the node restarted while the
// signing service still waits for the person: after the restart the node
// polls on and the signature is posted once, the service asked once.
func TestSignAcrossRestart(t *testing.T) {
	w := newWorld(t, signsim.Options{Delay: 10})
	user, utok := w.login(t, "+79161234567")
	bank, btok := w.login(t, "+79161234568")
	w.link(t, user)
	ctx := ctxT(t)
	chat, err := bank.CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{utok.User}, "")
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte("Договор, подписанный через рестарт")
	ack, err := bank.SignRequest(ctx, client.SignRequestOptions{Chat: chat.Chat, Signer: utok.User, Title: "Договор", Document: doc})
	if err != nil {
		t.Fatal(err)
	}
	id := fmtID(chat.Chat, ack.Seq)
	if err := user.SignDecision(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the signing service asked", func() bool { return w.signSim.Starts(id) == 1 })
	w.node.Restart(t)
	o := client.Options{TCPAddr: w.node.TCPAddr, Fingerprint: w.node.Fingerprint, Logger: quiet, DialTimeout: 5 * time.Second}
	again, err := client.Dial(ctx, w.node.Addr, btok.Access, o)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	var res *wire.SignResult
	waitFor(t, "the signature after the restart", func() bool {
		res = signResults(t, again, chat.Chat)[id]
		return res != nil
	})
	if res.State != signing.Signed.String() {
		t.Fatalf("sign_result = %+v", res)
	}
	if err := signsim.VerifySignature(doc, res.Signature, w.signSim.Certificate()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // polls that might post again
	if n := len(signResults(t, again, chat.Chat)); n != 1 {
		t.Fatalf("%d sign_results", n)
	}
	if n := w.signSim.Starts(id); n != 1 {
		t.Fatalf("the signing service was asked %d times", n)
	}
}
