package identity

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/netip"
	"regexp"
	"sync"
	"testing"

	"github.com/gonets/gonets/identity/token"
)

// lastSMS is a Sender that keeps the last message.
type lastSMS struct {
	mu   sync.Mutex
	last SMS
}

func (s *lastSMS) Send(ctx context.Context, m SMS) error {
	s.mu.Lock()
	s.last = m
	s.mu.Unlock()
	return nil
}

var svcCodeRE = regexp.MustCompile(`\d{6}`)

func (s *lastSMS) code(t *testing.T) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := svcCodeRE.FindString(s.last.Text)
	if c == "" {
		t.Fatalf("no code in %q", s.last.Text)
	}
	return c
}

func newTestService(t *testing.T) (*Service, *lastSMS) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer := token.NewSigner(key)
	sms := &lastSMS{}
	s, err := NewService(ServiceOptions{
		Countries: []int{7}, Sender: sms,
		Accounts: openTestAccounts(t, t.TempDir(), AccountsOptions{}),
		Signer:   func() *token.Signer { return signer },
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, sms
}

// TestServiceVerifyCanceled: a Verify whose caller has gone (its context
// done) fails without spending the code, which then still logs in; once
// a code is spent, the login is not left half done.
func TestServiceVerifyCanceled(t *testing.T) {
	s, sms := newTestService(t)
	lc, err := s.Start(context.Background(), "+79000000001", netip.MustParseAddr("192.0.2.1"))
	if err != nil {
		t.Fatal(err)
	}
	code := sms.code(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dev := DeviceInfo{Name: "phone", Platform: "test"}
	if _, err := s.Verify(ctx, lc.Attempt, code, dev); !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify with its context canceled = %v, want context.Canceled", err)
	}
	tk, err := s.Verify(context.Background(), lc.Attempt, code, dev)
	if err != nil {
		t.Fatalf("Verify after a canceled one: %v; the code was spent by a Verify that logged nothing in", err)
	}
	if !tk.Created || tk.Access == "" || tk.Refresh == "" {
		t.Fatalf("tokens %+v", tk)
	}
}
