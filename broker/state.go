package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/storage"
)

// StateServices is what the node's state-service adapters give sessions
// (docs/identity.md): linking a state account, digital IDs, document
// signing. The node (tools) builds it from the adapters its config names;
// each method fails with identity.ErrStateOff for a service it lacks.
type StateServices interface {
	// LinkStart returns the URL where user consents to link their
	// account at provider, valid until expires.
	LinkStart(ctx context.Context, user storage.UserID, provider string) (url string, expires time.Time, err error)
	// LinkFinish links to user the person whose consent the provider's
	// redirect handed code for; the code works once, for that user.
	LinkFinish(ctx context.Context, user storage.UserID, code string) (identity.Attributes, error)
	// CheckSigning reports whether a signing request to signer could be
	// taken now (signing on, the signer linked), before it is posted.
	CheckSigning(signer storage.UserID) error
	// Unlink erases user's linked account (identity.ErrNotLinked if
	// none) and what the node keeps because of it.
	Unlink(ctx context.Context, user storage.UserID) error
	// IssueCredential issues user a digital ID bound to the key proof is
	// signed with.
	IssueCredential(ctx context.Context, user storage.UserID, device storage.DeviceID, proof string) (sdjwt string, expires time.Time, err error)
	// SubmitSigning records a signing request posted in a chat; the same
	// request again is a no-op. It returns when the request is durable.
	SubmitSigning(ctx context.Context, r SigningRequest) error
	// DecideSigning is the signer's answer to request id.
	DecideSigning(ctx context.Context, id string, user storage.UserID, approve bool) error
}

// SigningRequest is a document sent to a chat member to sign, as posted.
type SigningRequest struct {
	ID        string
	Chat      storage.ChatID
	Seq       uint64 // of the sign_request message
	Requester storage.UserID
	Signer    storage.UserID
	Title     string
	Document  []byte
	SHA256    [32]byte
	Created   time.Time
	Expires   time.Time
}

// Signing requests' limits.
const (
	maxSignTitle = 256
	// signTTL is how long a signing request waits; the adapter's Expiry
	// ends it (the message says the same).
	defaultSignTTL = 24 * time.Hour
)

// SigningID names the signing request posted as message seq of chat.
func SigningID(chat storage.ChatID, seq uint64) string {
	return strconv.FormatUint(uint64(chat), 10) + "." + strconv.FormatUint(seq, 10)
}

// stateTimeout bounds one state-service request: linking may wait on
// the remote signer of the provider's client secret.
const stateTimeout = 15 * time.Second

// stateRequest serves one state-service request.
func (s *Session) stateRequest(f *wire.Frame) (*wire.Frame, error) {
	ctx, cancel := context.WithTimeout(work, stateTimeout)
	defer cancel()
	// Every request spends from the session's send rate: linking asks the
	// operator's remote signer, issuing signs, and none may be flooded. A
	// signing request spends as the message it posts.
	if _, posts := f.Body.(*wire.Frame_SignRequest); !posts {
		if err := s.spend(); err != nil {
			return nil, err
		}
	}
	switch body := f.Body.(type) {
	case *wire.Frame_StateLinkFinish:
		return s.linkFinish(ctx, body.StateLinkFinish)
	case *wire.Frame_StateLinkStart:
		return s.linkStart(ctx, body.StateLinkStart)
	case *wire.Frame_LinkedRequest:
		return s.linked()
	case *wire.Frame_StateUnlink:
		return s.unlink(ctx)
	case *wire.Frame_CredentialRequest:
		return s.credential(ctx, body.CredentialRequest)
	case *wire.Frame_SignRequest:
		return s.signRequest(ctx, body.SignRequest)
	case *wire.Frame_SignDecision:
		return s.signDecision(ctx, body.SignDecision)
	}
	return nil, fmt.Errorf("%w: %T is not a state-service request", ErrBadRequest, f.Body)
}

func (s *Session) state() (StateServices, error) {
	if s.b.opts.State == nil {
		return nil, identity.ErrStateOff
	}
	return s.b.opts.State, nil
}

func (s *Session) linkStart(ctx context.Context, req *wire.StateLinkStart) (*wire.Frame, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	provider := req.Provider
	if provider == "" {
		provider = "esia"
	}
	url, exp, err := st.LinkStart(ctx, s.user, provider)
	if err != nil {
		return nil, err
	}
	return &wire.Frame{Body: &wire.Frame_StateLinkUrl{StateLinkUrl: &wire.StateLinkURL{Url: url, ExpiresMs: exp.UnixMilli()}}}, nil
}

func (s *Session) linkFinish(ctx context.Context, req *wire.StateLinkFinish) (*wire.Frame, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	if req.Code == "" || len(req.Code) > 64 {
		return nil, fmt.Errorf("%w: a link finish needs the code the provider's redirect gave", ErrBadRequest)
	}
	a, err := st.LinkFinish(ctx, s.user, req.Code)
	if err != nil {
		return nil, err
	}
	return linkedFrame(&a), nil
}

func (s *Session) linked() (*wire.Frame, error) {
	svc := s.b.opts.Accounts
	if svc == nil {
		return nil, ErrAccountsOff
	}
	a, err := svc.Accounts().Linked(s.user)
	if errors.Is(err, identity.ErrNotLinked) {
		return linkedFrame(nil), nil
	}
	if err != nil {
		return nil, err
	}
	return linkedFrame(&a), nil
}

func linkedFrame(a *identity.Attributes) *wire.Frame {
	la := &wire.LinkedAccount{}
	if a != nil {
		la = &wire.LinkedAccount{Linked: true, Provider: a.Provider, Trusted: a.Trusted,
			VerifiedAtMs: a.VerifiedAt.UnixMilli(), Scopes: a.Scopes,
			FirstName: a.FirstName, LastName: a.LastName, MiddleName: a.MiddleName,
			BirthDate: a.BirthDate, Snils: a.SNILS, Student: a.Student, Pensioner: a.Pensioner}
	}
	return &wire.Frame{Body: &wire.Frame_LinkedAccount{LinkedAccount: la}}
}

func (s *Session) unlink(ctx context.Context) (*wire.Frame, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	if err := st.Unlink(ctx, s.user); err != nil {
		return nil, err
	}
	return linkedFrame(nil), nil
}

func (s *Session) credential(ctx context.Context, req *wire.CredentialRequest) (*wire.Frame, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	sdjwt, exp, err := st.IssueCredential(ctx, s.user, s.device, req.Proof)
	if err != nil {
		return nil, err
	}
	return &wire.Frame{Body: &wire.Frame_Credential{Credential: &wire.Credential{SdJwt: sdjwt, ExpiresMs: exp.UnixMilli()}}}, nil
}

// signRequest posts a signing request in its chat, then hands it to the
// signing adapter; the client hears the Ack only when both are done. A
// resend (same client_msg_id) finds the message posted and submits again,
// which the adapter takes as a no-op: a crash between the two is mended
// by the client's resend.
func (s *Session) signRequest(ctx context.Context, req *wire.SignRequestSend) (*wire.Frame, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	switch {
	case req.Chat == 0 || req.ClientMsgId == 0 || req.Signer == 0:
		return nil, fmt.Errorf("%w: a signing request needs a chat, a client_msg_id and a signer", ErrBadRequest)
	case storage.UserID(req.Signer) == s.user:
		return nil, fmt.Errorf("%w: a signing request goes to someone else", ErrBadRequest)
	case req.Title == "" || len(req.Title) > maxSignTitle || !utf8.ValidString(req.Title):
		return nil, fmt.Errorf("%w: a signing request's title is 1 to %d bytes of UTF-8", ErrBadRequest, maxSignTitle)
	case len(req.Document) == 0:
		return nil, fmt.Errorf("%w: a signing request without a document", ErrBadRequest)
	}
	sum := sha256.Sum256(req.Document)
	if !bytes.Equal(sum[:], req.Sha256) {
		return nil, fmt.Errorf("%w: sha256 is not the document's digest", ErrBadRequest)
	}
	chat := storage.ChatID(req.Chat)
	signer := storage.UserID(req.Signer)
	// The requester's own access first: a stranger learns nothing of the
	// chat's members.
	info, err := s.b.st.Chat(chat)
	if err != nil {
		return nil, err
	}
	if _, err := s.b.st.Member(chat, s.user); err != nil {
		return nil, err
	}
	if info.Kind == storage.ChatChannel {
		return nil, fmt.Errorf("%w: documents are sent to sign in direct chats and groups, not channels", ErrBadRequest)
	}
	if _, err := s.b.st.Member(chat, signer); err != nil {
		if errors.Is(err, storage.ErrNotMember) {
			return nil, fmt.Errorf("%w: the signer is not a member of the chat", ErrBadRequest)
		}
		return nil, err
	}
	// Checked before the request is posted, so that none is posted that
	// could not be taken. (Submit checks again: an unlink in between
	// leaves the posted request undecidable; the client's resend with
	// the same id submits it again once the signer links.)
	if err := st.CheckSigning(signer); err != nil {
		return nil, err
	}
	now := s.b.opts.Now()
	exp := now.Add(s.b.signTTL())
	body, err := proto.Marshal(&wire.Service{Event: &wire.Service_SignRequest{SignRequest: &wire.SignRequest{
		Requester: uint64(s.user), Signer: req.Signer, Title: req.Title,
		Sha256: sum[:], Document: req.Document, ExpiresMs: exp.UnixMilli()}}})
	if err != nil {
		return nil, err
	}
	ack, err := s.appendOne(work, storage.Message{Chat: chat, ClientMsgID: req.ClientMsgId, Kind: storage.MsgService, Body: body}, true)
	if err != nil {
		return nil, err
	}
	r := SigningRequest{ID: SigningID(chat, ack.Seq), Chat: chat, Seq: ack.Seq, Requester: s.user, Signer: signer,
		Title: req.Title, Document: req.Document, SHA256: sum, Created: now, Expires: exp}
	if ack.Duplicate {
		// What is submitted is what the chat shows: the posted request,
		// whatever this resend holds.
		if r, err = s.b.postedSigning(chat, ack.Seq); err != nil {
			return nil, err
		}
	}
	if err := st.SubmitSigning(ctx, r); err != nil {
		// A resend of a request submitted before whose time has passed:
		// what was posted stands, and the client hears its Ack.
		if !ack.Duplicate || !errors.Is(err, ErrBadRequest) {
			return nil, err
		}
		s.b.log.Info("broker: a signing request's resend was not submitted again", "chat", chat, "seq", ack.Seq, "err", err)
	}
	return &wire.Frame{Body: &wire.Frame_Ack{Ack: &wire.Ack{Chat: req.Chat, Seq: ack.Seq, TimeUs: ack.Time, Duplicate: ack.Duplicate}}}, nil
}

// parseSigningID splits a SigningID.
func parseSigningID(id string) (storage.ChatID, uint64, bool) {
	c, q, ok := strings.Cut(id, ".")
	chat, err1 := strconv.ParseUint(c, 10, 64)
	seq, err2 := strconv.ParseUint(q, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return storage.ChatID(chat), seq, true
}

// postedSigning reads the signing request posted as message seq of chat.
func (b *Broker) postedSigning(chat storage.ChatID, seq uint64) (SigningRequest, error) {
	rec, err := b.st.Get(chat, seq)
	if err != nil {
		return SigningRequest{}, err
	}
	var ev wire.Service
	if rec.Kind != storage.MsgService || proto.Unmarshal(rec.Body, &ev) != nil || ev.GetSignRequest() == nil {
		return SigningRequest{}, fmt.Errorf("%w: client_msg_id %d names a message that is no signing request", ErrBadRequest, rec.ClientMsgID)
	}
	sr := ev.GetSignRequest()
	r := SigningRequest{ID: SigningID(chat, seq), Chat: chat, Seq: seq, Requester: rec.Sender,
		Signer: storage.UserID(sr.Signer), Title: sr.Title, Document: sr.Document,
		Created: time.UnixMicro(rec.Time), Expires: time.UnixMilli(sr.ExpiresMs)}
	copy(r.SHA256[:], sr.Sha256)
	return r, nil
}

func (s *Session) signDecision(ctx context.Context, req *wire.SignDecision) (*wire.Frame, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	if req.Id == "" || len(req.Id) > 64 {
		return nil, fmt.Errorf("%w: a signing decision needs the request's id", ErrBadRequest)
	}
	if req.Approve {
		// A request whose message was deleted is withdrawn: nothing is
		// signed for it (it ends when it expires).
		if chat, seq, ok := parseSigningID(req.Id); ok {
			rec, err := s.b.st.Get(chat, seq)
			if err == nil && len(rec.Body) == 0 {
				return nil, fmt.Errorf("%w: the request was withdrawn", identity.ErrRequestEnded)
			}
		}
	}
	if err := st.DecideSigning(ctx, req.Id, s.user, req.Approve); err != nil {
		return nil, err
	}
	return done(), nil
}

func (b *Broker) signTTL() time.Duration {
	if b.opts.SigningTTL > 0 {
		return b.opts.SigningTTL
	}
	return defaultSignTTL
}

// PostService posts ev into user's service chat with service user from
// (created on first use), as from's message from the node's device with
// client message id msgID: posting the same msgID again within the
// store's dedupe window writes nothing (the adapters' exactly-once rests
// on it).
func (b *Broker) PostService(ctx context.Context, from, user storage.UserID, msgID uint64, ev *wire.Service) error {
	body, err := proto.Marshal(ev)
	if err != nil {
		return err
	}
	return b.postService(ctx, from, user, msgID, body)
}

// PostSigningResult posts the outcome of signing request r (the
// sign_request message at r.Seq of r.Chat) into its chat, as the signer
// from the node's device, once: its client message id is derived from
// the request, so posting it again writes nothing. A signer no longer in
// the chat is stood in for by the requester; with both gone, or the chat
// gone, there is nobody to tell and it returns nil.
func (b *Broker) PostSigningResult(ctx context.Context, chat storage.ChatID, seq uint64, signer, requester storage.UserID, res *wire.SignResult) error {
	res.RequestSeq = seq
	res.Id = SigningID(chat, seq)
	body, err := proto.Marshal(&wire.Service{Event: &wire.Service_SignResult{SignResult: res}})
	if err != nil {
		return err
	}
	h := fnv.New64a()
	h.Write([]byte("gonets sign result "))
	h.Write([]byte(res.Id))
	msgID := h.Sum64() | 1
	for _, sender := range []storage.UserID{signer, requester} {
		m := storage.Message{Chat: chat, Sender: sender, Device: storage.DeviceNode, ClientMsgID: msgID,
			Kind: storage.MsgService, Body: body}
		e := b.chats.pin(chat)
		_, err := b.commit(ctx, e, m, nil)
		b.unpin(e)
		if !errors.Is(err, storage.ErrNotMember) && !errors.Is(err, storage.ErrNotAllowed) {
			if errors.Is(err, storage.ErrUnknownChat) {
				// The chat is gone: there is nowhere to post, for good.
				b.log.Warn("broker: a signing result's chat is gone", "chat", chat, "request", res.Id)
				return nil
			}
			return err
		}
	}
	// Both left the chat: nobody is there to read it, for good.
	b.log.Warn("broker: a signing result has nobody to post it", "chat", chat, "request", res.Id)
	return nil
}
