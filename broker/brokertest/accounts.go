package brokertest

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/gonets/gonets/identity"
)

// SMSBox is the in-memory SMS gateway of a node with Accounts: it keeps
// each number's last message.
type SMSBox struct {
	mu      sync.Mutex
	last    map[string]string
	sent    int
	fail    int           // the next fail sends fail
	delay   time.Duration // each send takes this long
	sending int           // sends under way
}

// Send keeps m, or fails while FailNext allows, after the Delay.
func (s *SMSBox) Send(ctx context.Context, m identity.SMS) error {
	s.mu.Lock()
	d := s.delay
	s.sending++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.sending--
		s.mu.Unlock()
	}()
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", identity.ErrSMSUnavailable, ctx.Err())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return fmt.Errorf("%w: brokertest gateway told to fail", identity.ErrSMSUnavailable)
	}
	if s.last == nil {
		s.last = make(map[string]string)
	}
	s.last[m.To] = m.Text
	s.sent++
	return nil
}

// FailNext makes the next n sends fail with identity.ErrSMSUnavailable.
func (s *SMSBox) FailNext(n int) {
	s.mu.Lock()
	s.fail = n
	s.mu.Unlock()
}

// Delay makes each send take d, as a slow gateway's does.
func (s *SMSBox) Delay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// Sending returns how many sends are under way.
func (s *SMSBox) Sending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sending
}

// Sent returns how many messages were sent.
func (s *SMSBox) Sent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

var codeRE = regexp.MustCompile(`\b\d{6}\b`)

// Code returns the code in the last message sent to phone (E.164).
func (s *SMSBox) Code(phone string) (string, bool) {
	s.mu.Lock()
	text, ok := s.last[phone]
	s.mu.Unlock()
	if !ok {
		return "", false
	}
	c := codeRE.FindString(text)
	return c, c != ""
}

// SMS returns the node's SMS gateway.
func (n *Node) SMS() *SMSBox { return n.sms }

// Code returns the last login code sent to phone (E.164), failing the
// test if none was.
func (n *Node) Code(t testing.TB, phone string) string {
	t.Helper()
	c, ok := n.sms.Code(phone)
	if !ok {
		t.Fatalf("brokertest: no code was sent to %s", phone)
	}
	return c
}

// Accounts returns the node's accounts store (nil without Accounts).
func (n *Node) Accounts() *identity.Accounts {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.accts
}
