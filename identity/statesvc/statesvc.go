// Package statesvc joins the state-service adapters to the node: linking
// a Gosuslugi (ESIA) account, digital IDs issued from what it verified,
// document signing and application statuses. It implements the broker's
// StateServices for sessions, serves the provider's redirect back to the
// node, and runs the signing requests and the status poller. Each part is
// on only when the node's config names its adapter (docs/identity.md).
package statesvc

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/digitalid"
	"github.com/gonets/gonets/identity/esia"
	"github.com/gonets/gonets/identity/signing"
	"github.com/gonets/gonets/identity/status"
	"github.com/gonets/gonets/storage"
)

// Poster writes the services' messages into chats: the broker.
type Poster interface {
	// PostService posts ev into user's service chat with service user
	// from, once per msgID.
	PostService(ctx context.Context, from, user storage.UserID, msgID uint64, ev *wire.Service) error
	// PostSigningResult posts a signing request's outcome in its chat,
	// once per request.
	PostSigningResult(ctx context.Context, chat storage.ChatID, seq uint64, signer, requester storage.UserID, res *wire.SignResult) error
}

// Options configures Services.
type Options struct {
	// Accounts keeps the linked accounts and the adapters' tables.
	// Required.
	Accounts *identity.Accounts
	// ESIA links Gosuslugi accounts; nil: linking is off.
	ESIA *esia.Client
	// LinkTTL is how long a link URL works. Default: 10 min.
	LinkTTL time.Duration
	// AppRedirect is where the callback sends the browser with the
	// one-time code that finishes a link: the app's deep link. Default:
	// "gonets://link".
	AppRedirect string
	// Keys returns the node's current signing key and its id: digital IDs
	// are signed with it. Nil: digital IDs are off.
	Keys func() (ed25519.PrivateKey, string)
	// IssuerURL is the digital IDs' iss and the audience of a credential
	// request's proof: the node's public URL.
	IssuerURL string
	// CredentialTTL is a digital ID's life. Default: 30 days.
	CredentialTTL time.Duration
	// Signing is the signing service; nil: document signing is off.
	Signing signing.Provider
	// SigningExpiry is how long a signing request waits. Default: 24 h.
	SigningExpiry time.Duration
	// SigningRoots, when set, are the CAs a signature's certificate must
	// chain to; SigningRequireSNILS refuses a certificate that does not
	// name the signer's SNILS (see signing.ManagerOptions).
	SigningRoots        *x509.CertPool
	SigningRequireSNILS bool
	// SigningPollMin and SigningPollMax bound the polling of the signing
	// service. Defaults: 1 s and 30 s.
	SigningPollMin, SigningPollMax time.Duration
	// Status reads application statuses; nil: statuses are off.
	Status status.Source
	// StatusInterval is how often each linked user's statuses are read;
	// StatusConcurrency how many users at once. Defaults: 5 min, 8.
	StatusInterval    time.Duration
	StatusConcurrency int

	Now     func() time.Time
	Log     *slog.Logger
	Metrics *metrics.Set
}

// Services is the node's state services.
type Services struct {
	o    Options
	post atomic.Pointer[Poster]

	links   sync.Mutex
	pending map[string]pendingLink // by state
	byUser  map[storage.UserID]string
	held    map[string]heldLink // consented persons awaiting LinkFinish, by code
	heldBy  map[storage.UserID]string

	// bg counts the goroutines links and unlinks start (a first status
	// poll, a forget that outlived its request); Run waits for them, and
	// runCtx (Run's) bounds them. bgMu orders goAdd's Add before Run's
	// Wait: none is added once bgClosed.
	bgMu     sync.Mutex
	bgClosed bool
	bg       sync.WaitGroup
	runCtx   atomic.Pointer[context.Context]

	signing *signing.Manager
	poller  *status.Poller

	linked, linkFailed, issued *metrics.Counter
}

type pendingLink struct {
	user    storage.UserID
	expires time.Time
}

// heldLink is a person the provider vouched for, held until the user's
// app finishes the link with the code.
type heldLink struct {
	user    storage.UserID
	attrs   identity.Attributes
	expires time.Time
}

// heldTTL is how long a consented person waits for LinkFinish.
const heldTTL = 5 * time.Minute

// DefaultAppRedirect is the app's deep link a finished consent goes to.
const DefaultAppRedirect = "gonets://link"

// maxPendingLinks bounds the link URLs handed out and not yet used: one
// per user at most (a new one replaces the user's last), and at most this
// many in all.
const maxPendingLinks = 100_000

// New returns the services o configures; call Attach, then Run.
func New(o Options) (*Services, error) {
	if o.Accounts == nil {
		return nil, errors.New("statesvc: Accounts is required")
	}
	if o.Keys != nil && o.IssuerURL == "" {
		return nil, errors.New("statesvc: digital IDs need IssuerURL")
	}
	if o.LinkTTL <= 0 {
		o.LinkTTL = 10 * time.Minute
	}
	if o.AppRedirect == "" {
		o.AppRedirect = DefaultAppRedirect
	}
	if o.CredentialTTL <= 0 {
		o.CredentialTTL = 30 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	s := &Services{o: o, pending: map[string]pendingLink{}, byUser: map[storage.UserID]string{},
		held: map[string]heldLink{}, heldBy: map[storage.UserID]string{},
		linked:     o.Metrics.GetOrCreateCounter(`gonets_state_links_total{outcome="linked"}`),
		linkFailed: o.Metrics.GetOrCreateCounter(`gonets_state_links_total{outcome="failed"}`),
		issued:     o.Metrics.GetOrCreateCounter("gonets_state_credentials_issued_total"),
	}
	if o.Signing != nil {
		kv, err := o.Accounts.Table("signing")
		if err != nil {
			return nil, err
		}
		s.signing, err = signing.NewManager(signing.ManagerOptions{
			KV: kv, Provider: o.Signing, Finish: s.finishSigning,
			Expiry: o.SigningExpiry, PollMin: o.SigningPollMin, PollMax: o.SigningPollMax,
			Roots: o.SigningRoots, RequireSNILS: o.SigningRequireSNILS,
			Now: o.Now, Log: o.Log, Metrics: o.Metrics,
		})
		if err != nil {
			return nil, err
		}
	}
	if o.Status != nil {
		kv, err := o.Accounts.Table("status")
		if err != nil {
			return nil, err
		}
		s.poller, err = status.NewPoller(status.PollerOptions{
			Source: o.Status, KV: kv, Users: s.linkedUsers, Post: s.postStatus,
			Interval: o.StatusInterval, Concurrency: o.StatusConcurrency,
			Now: o.Now, Log: o.Log, Metrics: o.Metrics,
		})
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Attach gives the services the broker they post through; before Run.
func (s *Services) Attach(p Poster) { s.post.Store(&p) }

func (s *Services) poster() (Poster, error) {
	p := s.post.Load()
	if p == nil {
		return nil, errors.New("statesvc: not attached to a broker")
	}
	return *p, nil
}

// Run runs the signing requests and the status poller until ctx ends,
// and waits for what links started.
func (s *Services) Run(ctx context.Context) error {
	s.runCtx.Store(&ctx)
	defer func() {
		s.bgMu.Lock()
		s.bgClosed = true
		s.bgMu.Unlock()
		s.bg.Wait()
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	if s.signing != nil {
		wg.Go(func() { errs <- s.signing.Run(ctx) })
	}
	if s.poller != nil {
		wg.Go(func() { errs <- s.poller.Run(ctx) })
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// LinkStart implements broker.StateServices.
func (s *Services) LinkStart(ctx context.Context, user storage.UserID, provider string) (string, time.Time, error) {
	if provider != "esia" || s.o.ESIA == nil {
		return "", time.Time{}, fmt.Errorf("%w: no provider %q to link", identity.ErrStateOff, provider)
	}
	state := esia.NewState()
	url, err := s.o.ESIA.AuthURL(ctx, state)
	if err != nil {
		return "", time.Time{}, err
	}
	now := s.o.Now()
	exp := now.Add(s.o.LinkTTL)
	s.links.Lock()
	defer s.links.Unlock()
	if old, ok := s.byUser[user]; ok {
		delete(s.pending, old)
	}
	if len(s.pending) >= maxPendingLinks {
		for st, p := range s.pending {
			if now.After(p.expires) {
				delete(s.pending, st)
				delete(s.byUser, p.user)
			}
		}
		if len(s.pending) >= maxPendingLinks {
			return "", time.Time{}, fmt.Errorf("%w: too many links under way; retry in a minute", broker.ErrRateLimited)
		}
	}
	s.pending[state] = pendingLink{user: user, expires: exp}
	s.byUser[user] = state
	return url, exp, nil
}

// takeLink returns and forgets the user a link state was handed to.
func (s *Services) takeLink(state string) (storage.UserID, bool) {
	s.links.Lock()
	defer s.links.Unlock()
	p, ok := s.pending[state]
	if !ok {
		return 0, false
	}
	delete(s.pending, state)
	if s.byUser[p.user] == state {
		delete(s.byUser, p.user)
	}
	return p.user, !s.o.Now().After(p.expires)
}

// consent reads the person the provider's code stands for and holds it
// for user under a new one-time code, which the callback hands the app:
// the link is made only when a session of user presents it (LinkFinish).
// A link URL someone sent to another person thus links nothing to the
// sender: the code goes to the browser of whoever consented.
func (s *Services) consent(ctx context.Context, user storage.UserID, code, state string) (string, error) {
	tok, err := s.o.ESIA.Exchange(ctx, code, state)
	if err != nil {
		return "", err
	}
	p, err := s.o.ESIA.Person(ctx, tok)
	if err != nil {
		return "", err
	}
	attrs := p.Attributes(tok.Scopes, s.o.Now())
	finish := esia.NewState()
	now := s.o.Now()
	s.links.Lock()
	defer s.links.Unlock()
	if old, ok := s.heldBy[user]; ok {
		delete(s.held, old)
	}
	if len(s.held) >= maxPendingLinks {
		for c, h := range s.held {
			if now.After(h.expires) {
				delete(s.held, c)
				delete(s.heldBy, h.user)
			}
		}
		if len(s.held) >= maxPendingLinks {
			return "", errors.New("statesvc: too many links awaiting their app")
		}
	}
	s.held[finish] = heldLink{user: user, attrs: attrs, expires: now.Add(heldTTL)}
	s.heldBy[user] = finish
	return finish, nil
}

// LinkFinish implements broker.StateServices: it links the person held
// under code, if code is user's and alive, tells the user, and reads
// their statuses.
func (s *Services) LinkFinish(ctx context.Context, user storage.UserID, code string) (identity.Attributes, error) {
	if s.o.ESIA == nil {
		return identity.Attributes{}, fmt.Errorf("%w: no provider to link", identity.ErrStateOff)
	}
	s.links.Lock()
	h, ok := s.held[code]
	if ok && h.user == user {
		delete(s.held, code)
		delete(s.heldBy, user)
	}
	s.links.Unlock()
	if !ok || h.user != user || s.o.Now().After(h.expires) {
		s.linkFailed.Inc()
		return identity.Attributes{}, fmt.Errorf("%w: the link code is unknown, used or expired: link again", broker.ErrBadRequest)
	}
	old, oldErr := s.o.Accounts.Linked(user)
	if err := s.o.Accounts.Link(user, h.attrs); err != nil {
		return identity.Attributes{}, err
	}
	if oldErr == nil && old.Subject != h.attrs.Subject {
		// Another person than before: what the node kept for that one
		// goes, as at an unlink.
		s.dropPerson(ctx, user)
	}
	s.linked.Inc()
	s.note(ctx, user, "linked", h.attrs.VerifiedAt, &wire.Service{Event: &wire.Service_AccountLinked{AccountLinked: accountEvent(h.attrs)}})
	s.pollSoon(user, status.Person{OID: h.attrs.Subject, SNILS: h.attrs.SNILS})
	return h.attrs, nil
}

// goBackground runs fn on a goroutine within Run's life, with Run's
// context; false when Run is not running (or has ended).
func (s *Services) goBackground(fn func(ctx context.Context)) bool {
	rc := s.runCtx.Load()
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if rc == nil || s.bgClosed || (*rc).Err() != nil {
		return false
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		fn(*rc)
	}()
	return true
}

// pollSoon reads a newly linked user's statuses now, in the background,
// within Run's life: without a running Run the scheduled poll finds them.
func (s *Services) pollSoon(user storage.UserID, who status.Person) {
	if s.poller == nil {
		return
	}
	s.goBackground(func(rctx context.Context) {
		ctx, cancel := context.WithTimeout(rctx, time.Minute)
		defer cancel()
		// An unlink since the link: nothing to read (the poller's Forget
		// stops a poll it overlaps; this one may have begun after it).
		if !s.linkedAs(user, who.OID) {
			return
		}
		if _, err := s.poller.PollNow(ctx, uint64(user), who); err != nil && ctx.Err() == nil {
			s.o.Log.Warn("statesvc: first status poll failed", "user", user, "err", err)
		}
		// An unlink that came between the check and the poll's start is
		// one the poll did not see: what it wrote is forgotten again.
		if !s.linkedAs(user, who.OID) {
			s.forget(ctx, user)
		}
	})
}

// linkedAs reports whether user is linked to the person subject.
func (s *Services) linkedAs(user storage.UserID, subject string) bool {
	a, err := s.o.Accounts.Linked(user)
	return err == nil && a.Subject == subject
}

// forget drops user's status cursors; when ctx ends first (a poll of the
// user was under way) it goes on in the background, within Run's life.
func (s *Services) forget(ctx context.Context, user storage.UserID) {
	if s.poller == nil {
		return
	}
	err := s.poller.Forget(ctx, uint64(user))
	if err == nil {
		return
	}
	if ctx.Err() != nil && s.goBackground(func(rctx context.Context) {
		fctx, cancel := context.WithTimeout(rctx, 2*time.Minute)
		defer cancel()
		if err := s.poller.Forget(fctx, uint64(user)); err != nil && rctx.Err() == nil {
			s.o.Log.Warn("statesvc: status cursors not dropped", "user", user, "err", err)
		}
	}) {
		return
	}
	s.o.Log.Warn("statesvc: status cursors not dropped", "user", user, "err", err)
}

// dropPerson ends what the node keeps for user's linked person beyond the
// link itself: the person's pending signing requests and the status
// cursors.
func (s *Services) dropPerson(ctx context.Context, user storage.UserID) {
	if s.signing != nil {
		// The person's requests end: nobody is left to sign them as.
		if _, err := s.signing.CancelSigner(ctx, uint64(user), "the signer unlinked their state account"); err != nil {
			s.o.Log.Warn("statesvc: signing requests not all ended at unlink", "user", user, "err", err)
		}
	}
	s.forget(ctx, user)
}

func accountEvent(a identity.Attributes) *wire.StateAccountEvent {
	return &wire.StateAccountEvent{Provider: a.Provider, Trusted: a.Trusted, VerifiedAtMs: a.VerifiedAt.UnixMilli(), Scopes: a.Scopes}
}

// note posts ev into user's node service chat, once per (what, user,
// at): a retry posts nothing twice. A failure is logged: what it reports
// stands.
func (s *Services) note(ctx context.Context, user storage.UserID, what string, at time.Time, ev *wire.Service) {
	p, err := s.poster()
	if err == nil {
		h := fnv.New64a()
		fmt.Fprintf(h, "gonets state %s %d %d", what, user, at.UnixNano())
		err = p.PostService(ctx, storage.ServiceUser, user, h.Sum64()|1, ev)
	}
	if err != nil {
		s.o.Log.Warn("statesvc: service note not posted", "user", user, "what", what, "err", err)
	}
}

// Unlink implements broker.StateServices.
func (s *Services) Unlink(ctx context.Context, user storage.UserID) error {
	attrs, err := s.o.Accounts.Linked(user)
	if err != nil {
		return err
	}
	if err := s.o.Accounts.Unlink(user); err != nil {
		return err
	}
	s.dropPerson(ctx, user)
	now := s.o.Now()
	s.note(ctx, user, "unlinked", now, &wire.Service{Event: &wire.Service_AccountUnlinked{AccountUnlinked: &wire.StateAccountEvent{
		Provider: attrs.Provider, VerifiedAtMs: now.UnixMilli()}}})
	return nil
}

// IssueCredential implements broker.StateServices.
func (s *Services) IssueCredential(ctx context.Context, user storage.UserID, device storage.DeviceID, proof string) (string, time.Time, error) {
	if s.o.Keys == nil {
		return "", time.Time{}, fmt.Errorf("%w: digital IDs are off", identity.ErrStateOff)
	}
	attrs, err := s.o.Accounts.Linked(user)
	if err != nil {
		return "", time.Time{}, err
	}
	now := s.o.Now()
	holder, err := digitalid.VerifyProof(proof, s.o.IssuerURL, now)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %v", broker.ErrBadRequest, err)
	}
	claims := digitalid.Claims(attrs, now)
	if len(claims) == 0 {
		return "", time.Time{}, fmt.Errorf("%w: the linked account verified nothing a digital ID holds", identity.ErrNotLinked)
	}
	key, kid := s.o.Keys()
	iss, err := digitalid.NewIssuer(digitalid.IssuerOptions{Issuer: s.o.IssuerURL, Key: key, KeyID: kid,
		TTL: s.o.CredentialTTL, Now: func() time.Time { return now }})
	if err != nil {
		return "", time.Time{}, err
	}
	sdjwt, err := iss.Issue(subject(user), holder, claims)
	if err != nil {
		return "", time.Time{}, err
	}
	s.issued.Inc()
	return sdjwt, now.Add(s.o.CredentialTTL), nil
}

// subject is a digital ID's sub: the node's user id, which a verifier
// learns from every presentation (a verifier that must not link two
// presentations of one person is not served by this format).
func subject(user storage.UserID) string { return strconv.FormatUint(uint64(user), 10) }

// linkedUsers gives the status poller every linked user.
func (s *Services) linkedUsers(ctx context.Context, fn func(user uint64, p status.Person) bool) error {
	return s.o.Accounts.LinkedUsers(func(user storage.UserID, a identity.Attributes) bool {
		if ctx.Err() != nil {
			return false
		}
		return fn(uint64(user), status.Person{OID: a.Subject, SNILS: a.SNILS})
	})
}

// postStatus writes one application status in the user's Госуслуги chat.
func (s *Services) postStatus(ctx context.Context, ev status.Event) error {
	p, err := s.poster()
	if err != nil {
		return err
	}
	st := ev.Status
	text := fmt.Sprintf("%s, заявление %s: %s", ev.Service, ev.OrderID, st.Title)
	return p.PostService(ctx, storage.GosuslugiUser, storage.UserID(ev.User), ev.MsgID, &wire.Service{Event: &wire.Service_ApplicationStatus{
		ApplicationStatus: &wire.ApplicationStatus{OrderId: ev.OrderID, Service: ev.Service, Code: st.Code, Title: st.Title,
			AtMs: st.At.UnixMilli(), Final: st.Final, Text: text}}})
}
