package identity

import (
	"context"
	"errors"
	"fmt"
)

// Sender delivers a text message to a phone number. Implementations are safe
// for concurrent use, bound every call by ctx and their own timeouts, and
// return errors that match one of the SMS sentinels below with errors.Is.
type Sender interface {
	Send(ctx context.Context, m SMS) error
}

// SMS is one text message.
type SMS struct {
	// To is the recipient in E.164 form, e.g. "+79161234567".
	To string
	// Text is the message body, at most MaxSMSText bytes.
	Text string
}

// MaxSMSText caps an SMS's text in bytes: ten concatenated parts are far
// more than a one-time code needs, and it keeps every adapter's lines and
// request bodies bounded.
const MaxSMSText = 1024

var (
	// ErrSMSUnavailable: the message could not be delivered now (the gateway
	// failed after retries, timed out, or the outbox could not be written).
	// The caller may try again later.
	ErrSMSUnavailable = errors.New("identity: sms delivery unavailable, try again later")
	// ErrSMSRejected: the gateway refused this message or number. Trying
	// again will not help.
	ErrSMSRejected = errors.New("identity: sms rejected by the gateway")
	// ErrSMSInvalid: the message itself is malformed (To not E.164, empty or
	// oversized text); nothing was sent.
	ErrSMSInvalid = errors.New("identity: invalid sms")
	// ErrSMSConfig: an SMS adapter's options are invalid (bad URL, method,
	// header or body template); the adapter was not created.
	ErrSMSConfig = errors.New("identity: invalid sms adapter options")
)

// SenderStats are an adapter's counters since it was created.
type SenderStats struct {
	// Sent counts messages delivered (or written to the outbox).
	Sent uint64
	// Failed counts Send calls that returned an error.
	Failed uint64
	// Retried counts extra attempts after a failed one (HTTP only).
	Retried uint64
}

// validate checks m's shape: To is "+" and 7 to 15 digits, the first not 0;
// Text is non-empty and at most MaxSMSText bytes.
func (m SMS) validate() error {
	if !isE164(m.To) {
		return fmt.Errorf("%w: recipient %q is not an E.164 number", ErrSMSInvalid, m.To)
	}
	if m.Text == "" {
		return fmt.Errorf("%w: empty text", ErrSMSInvalid)
	}
	if len(m.Text) > MaxSMSText {
		return fmt.Errorf("%w: text is %d bytes, the limit is %d", ErrSMSInvalid, len(m.Text), MaxSMSText)
	}
	return nil
}

func isE164(s string) bool {
	if len(s) < 8 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
