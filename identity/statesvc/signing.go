package statesvc

import (
	"context"
	"errors"
	"fmt"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/signing"
	"github.com/gonets/gonets/storage"
)

// SubmitSigning implements broker.StateServices: the signer must have a
// linked account, whose person the signing service is asked to sign as.
func (s *Services) SubmitSigning(ctx context.Context, r broker.SigningRequest) error {
	if s.signing == nil {
		return fmt.Errorf("%w: document signing is off", identity.ErrStateOff)
	}
	attrs, err := s.o.Accounts.Linked(r.Signer)
	if err != nil {
		if errors.Is(err, identity.ErrNotLinked) {
			return fmt.Errorf("%w: the signer has not linked a state account", identity.ErrNotLinked)
		}
		return err
	}
	err = s.signing.Submit(ctx, signing.Request{
		ID: r.ID, Chat: uint64(r.Chat), Message: r.Seq, Requester: uint64(r.Requester), Signer: uint64(r.Signer),
		Person: signing.Signer{OID: attrs.Subject, SNILS: attrs.SNILS},
		Title:  r.Title, Document: r.Document, SHA256: r.SHA256, Created: r.Created, Expires: r.Expires,
	})
	return signingErr(err)
}

// CheckSigning implements broker.StateServices.
func (s *Services) CheckSigning(signer storage.UserID) error {
	if s.signing == nil {
		return fmt.Errorf("%w: document signing is off", identity.ErrStateOff)
	}
	if _, err := s.o.Accounts.Linked(signer); err != nil {
		if errors.Is(err, identity.ErrNotLinked) {
			return fmt.Errorf("%w: the signer has not linked a state account", identity.ErrNotLinked)
		}
		return err
	}
	return nil
}

// DecideSigning implements broker.StateServices.
func (s *Services) DecideSigning(ctx context.Context, id string, user storage.UserID, approve bool) error {
	if s.signing == nil {
		return fmt.Errorf("%w: document signing is off", identity.ErrStateOff)
	}
	if approve {
		// Signed only as the person the request was made for, if the
		// user is still linked to them (an unlink or a relink since).
		if rec, ok, err := s.signing.Get(id); err == nil && ok && rec.Request.Signer == uint64(user) &&
			!s.linkedAs(user, rec.Request.Person.OID) {
			return fmt.Errorf("%w: the state account the request was made for is no longer linked", identity.ErrNotLinked)
		}
	}
	return signingErr(s.signing.Decide(ctx, id, uint64(user), approve))
}

// signingErr maps the signing manager's errors to those the broker knows.
// A request of someone else's is as unknown as one that never was.
func signingErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, signing.ErrUnknownRequest), errors.Is(err, signing.ErrNotSigner):
		// Bare: a stranger learns nothing of whether the id is a request.
		return identity.ErrUnknownRequest
	case errors.Is(err, signing.ErrEnded):
		return fmt.Errorf("%w (%v)", identity.ErrRequestEnded, err)
	case errors.Is(err, signing.ErrHashMismatch), errors.Is(err, signing.ErrBadRequest):
		return fmt.Errorf("%w: %v", broker.ErrBadRequest, err)
	case errors.Is(err, signing.ErrTooLarge):
		return fmt.Errorf("%w: %v", storage.ErrTooLarge, err)
	case errors.Is(err, signing.ErrTooMany):
		return fmt.Errorf("%w: %v", broker.ErrRateLimited, err)
	}
	return err
}

// finishSigning posts a request's outcome in its chat: the signing
// manager calls it until it succeeds, and the post is once per request.
func (s *Services) finishSigning(ctx context.Context, o signing.Outcome) error {
	p, err := s.poster()
	if err != nil {
		return err
	}
	r := o.Request
	if o.Reason != "" {
		s.o.Log.Info("statesvc: signing request ended", "request", r.ID, "state", o.State.String(), "reason", o.Reason)
	}
	return p.PostSigningResult(ctx, storage.ChatID(r.Chat), r.Message, storage.UserID(r.Signer), storage.UserID(r.Requester),
		&wire.SignResult{State: o.State.String(), Signature: o.Signature, Reason: chatReason(o), AtMs: o.At.UnixMilli()})
}

// chatReason is what a chat's members read of why a request ended: words
// of the node's, never the signing service's own text (which may quote
// the person); the detail is in the node's log.
func chatReason(o signing.Outcome) string {
	switch o.State {
	case signing.Declined:
		return "declined"
	case signing.Expired:
		return "not signed in time"
	case signing.Failed:
		return "the signature could not be made"
	}
	return ""
}
