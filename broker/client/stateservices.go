package client

import (
	"context"
	"crypto/sha256"
	"time"

	"github.com/gonets/gonets/broker/wire"
)

// LinkedAccount is the user's linked state account (Gosuslugi) and what
// it verified: only what the granted scopes cover is set.
type LinkedAccount struct {
	Linked     bool
	Provider   string
	Trusted    bool
	VerifiedAt time.Time
	Scopes     []string
	FirstName  string
	LastName   string
	MiddleName string
	BirthDate  string // "2006-01-02"
	SNILS      string
	Student    *bool
	Pensioner  *bool
}

// LinkStart asks for the URL where the user consents to link their
// Gosuslugi account (provider "esia"); the app opens it in a browser. When
// the provider sends the browser back the node holds the person's record
// and sends the browser to the app's deep link with a one-time code;
// LinkFinish with it links the account (account_linked is posted in the
// user's service chat). The URL works once,
// until the time returned. STATE_SERVICES_OFF when the node has no such
// provider.
func (c *Client) LinkStart(ctx context.Context, provider string) (string, time.Time, error) {
	resp, err := c.call(ctx, &wire.Frame{Body: &wire.Frame_StateLinkStart{StateLinkStart: &wire.StateLinkStart{Provider: provider}}}, true)
	if err != nil {
		return "", time.Time{}, err
	}
	u := resp.GetStateLinkUrl()
	if u == nil {
		return "", time.Time{}, unexpected("StateLinkURL", resp)
	}
	return u.GetUrl(), time.UnixMilli(u.GetExpiresMs()), nil
}

// LinkFinish completes a link with the one-time code the node's callback
// handed the app (its deep link, "gonets://link?code=..."): the person who
// consented is linked to this user and returned. BAD_REQUEST for a code
// unknown, used, expired or another user's. Not repeated after a lost
// connection (the code works once): call Linked to learn the outcome.
func (c *Client) LinkFinish(ctx context.Context, code string) (LinkedAccount, error) {
	return c.linkedAccount(ctx, &wire.Frame{Body: &wire.Frame_StateLinkFinish{StateLinkFinish: &wire.StateLinkFinish{Code: code}}}, false)
}

// Linked returns the user's linked state account; Linked false when none.
func (c *Client) Linked(ctx context.Context) (LinkedAccount, error) {
	return c.linkedAccount(ctx, &wire.Frame{Body: &wire.Frame_LinkedRequest{LinkedRequest: &wire.LinkedRequest{}}}, true)
}

// Unlink erases the user's linked state account and the attributes the
// node kept; NOT_LINKED when there is none. Not repeated after a lost
// connection: a repeat would find nothing to unlink.
func (c *Client) Unlink(ctx context.Context) error {
	_, err := c.linkedAccount(ctx, &wire.Frame{Body: &wire.Frame_StateUnlink{StateUnlink: &wire.StateUnlink{}}}, false)
	return err
}

func (c *Client) linkedAccount(ctx context.Context, f *wire.Frame, repeat bool) (LinkedAccount, error) {
	resp, err := c.call(ctx, f, repeat)
	if err != nil {
		return LinkedAccount{}, err
	}
	l := resp.GetLinkedAccount()
	if l == nil {
		return LinkedAccount{}, unexpected("LinkedAccount", resp)
	}
	a := LinkedAccount{Linked: l.GetLinked(), Provider: l.GetProvider(), Trusted: l.GetTrusted(), Scopes: l.GetScopes(),
		FirstName: l.GetFirstName(), LastName: l.GetLastName(), MiddleName: l.GetMiddleName(),
		BirthDate: l.GetBirthDate(), SNILS: l.GetSnils(), Student: l.Student, Pensioner: l.Pensioner}
	if l.GetVerifiedAtMs() != 0 {
		a.VerifiedAt = time.UnixMilli(l.GetVerifiedAtMs())
	}
	return a, nil
}

// IssueCredential asks for a digital ID (an SD-JWT with every disclosure)
// bound to the key proof is signed with: a compact JWS, typ
// "openid4vci-proof+jwt", with the public key as jwk in its header and
// {"aud": the node's issuer URL, "iat": now} as payload
// (digitalid.Proof makes one). NOT_LINKED without a linked account.
func (c *Client) IssueCredential(ctx context.Context, proof string) (string, time.Time, error) {
	resp, err := c.call(ctx, &wire.Frame{Body: &wire.Frame_CredentialRequest{CredentialRequest: &wire.CredentialRequest{Proof: proof}}}, true)
	if err != nil {
		return "", time.Time{}, err
	}
	cr := resp.GetCredential()
	if cr == nil {
		return "", time.Time{}, unexpected("Credential", resp)
	}
	return cr.GetSdJwt(), time.UnixMilli(cr.GetExpiresMs()), nil
}

// SignRequestOptions describe a document sent to sign.
type SignRequestOptions struct {
	// Chat is a direct chat or group of the sender and Signer.
	Chat, Signer uint64
	Title        string
	Document     []byte
	// ClientMsgID names the request's message, as SendOptions' does; 0
	// takes a fresh one. An app that keeps an outbox across restarts
	// takes one from NextClientMsgID and stores it with the request.
	ClientMsgID uint64
}

// SignRequest sends o.Signer, a member of o.Chat, a document to sign. It
// is posted in the chat as a sign_request service message, whose seq the
// returned Ack carries; the request's id is "<chat>.<seq>". The outcome
// comes later in the chat as a sign_result. The signer must have linked
// a state account (NOT_LINKED). The request goes again after a lost
// connection with the same client message id: the node posts it once,
// and a resend submits what the chat shows.
func (c *Client) SignRequest(ctx context.Context, o SignRequestOptions) (Ack, error) {
	if o.ClientMsgID == 0 {
		o.ClientMsgID = c.NextClientMsgID()
	}
	sum := sha256.Sum256(o.Document)
	req := &wire.SignRequestSend{Chat: o.Chat, ClientMsgId: o.ClientMsgID, Signer: o.Signer, Title: o.Title,
		Document: o.Document, Sha256: sum[:]}
	resp, err := c.call(ctx, &wire.Frame{Body: &wire.Frame_SignRequest{SignRequest: req}}, true)
	if err != nil {
		return Ack{}, err
	}
	a := resp.GetAck()
	if a == nil {
		return Ack{}, unexpected("Ack", resp)
	}
	return Ack{Chat: a.GetChat(), Seq: a.GetSeq(), Time: fromMicros(a.GetTimeUs()), Duplicate: a.GetDuplicate()}, nil
}

// SignDecision is the signer's answer to signing request id: approve
// sends the document to the signing service, where the user confirms
// the signature; decline ends the request. UNKNOWN_REQUEST for a request
// that is not the user's to sign, REQUEST_ENDED for one already decided.
func (c *Client) SignDecision(ctx context.Context, id string, approve bool) error {
	resp, err := c.call(ctx, &wire.Frame{Body: &wire.Frame_SignDecision{SignDecision: &wire.SignDecision{Id: id, Approve: approve}}}, false)
	if err != nil {
		return err
	}
	if resp.GetDone() == nil {
		return unexpected("Done", resp)
	}
	return nil
}
