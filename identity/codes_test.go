package identity

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var codesT0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func newTestCodes(t *testing.T, opts CodeOptions) *Codes {
	t.Helper()
	if opts.Secret == nil {
		opts.Secret = bytes.Repeat([]byte{7}, 32)
	}
	c, err := NewCodes(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wrongOf returns a code of CodeLen digits that is not code.
func wrongOf(code string) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

func TestCodesIssueVerify(t *testing.T) {
	c := newTestCodes(t, CodeOptions{})
	code, id, err := c.Issue("+79161234567", codesT0)
	if err != nil {
		t.Fatal(err)
	}
	if len(code) != CodeLen || strings.Trim(code, "0123456789") != "" {
		t.Fatalf("code %q is not %d digits", code, CodeLen)
	}
	num, err := c.Verify(id, code, codesT0.Add(DefaultCodeTTL-time.Nanosecond))
	if err != nil || num != "+79161234567" {
		t.Fatalf("Verify = %q, %v; want the number, nil", num, err)
	}
	// Replay of a used code.
	if _, err := c.Verify(id, code, codesT0.Add(time.Second)); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("replay: %v, want ErrCodeExpired", err)
	}
	if got := c.Stats().Pending; got != 0 {
		t.Fatalf("pending %d after use, want 0", got)
	}
}

func TestCodesBadInput(t *testing.T) {
	c := newTestCodes(t, CodeOptions{})
	for _, n := range []string{"", "79161234567", "+0123456789", "+7916", "+7916123456789012", "+7916x234567"} {
		if _, _, err := c.Issue(n, codesT0); !errors.Is(err, ErrCodeNumber) {
			t.Errorf("Issue(%q): %v, want ErrCodeNumber", n, err)
		}
	}
	if got := c.Stats().Pending; got != 0 {
		t.Fatalf("bad input stored %d codes", got)
	}
	if _, err := c.Verify("nosuchattempt", "123456", codesT0); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("unknown attempt: %v, want ErrCodeExpired", err)
	}
	for _, o := range []CodeOptions{
		{Secret: make([]byte, 16)},
		{Secret: make([]byte, 32), TTL: -1},
		{Secret: make([]byte, 32), MaxTries: -1},
		{Secret: make([]byte, 32), MaxPending: -1},
	} {
		if _, err := NewCodes(o); !errors.Is(err, ErrCodesConfig) {
			t.Errorf("NewCodes(%+v): %v, want ErrCodesConfig", o, err)
		}
	}
}

func TestCodesWrongCodeBurns(t *testing.T) {
	c := newTestCodes(t, CodeOptions{})
	code, id, _ := c.Issue("+79161234567", codesT0)
	for i := 1; i < DefaultCodeMaxTries; i++ {
		_, err := c.Verify(id, wrongOf(code), codesT0)
		var we *WrongCodeError
		if !errors.Is(err, ErrWrongCode) || !errors.As(err, &we) || we.TriesLeft != DefaultCodeMaxTries-i {
			t.Fatalf("wrong try %d: %v, want ErrWrongCode with %d left", i, err, DefaultCodeMaxTries-i)
		}
	}
	if _, err := c.Verify(id, wrongOf(code), codesT0); !errors.Is(err, ErrTooManyTries) {
		t.Fatalf("last wrong try: %v, want ErrTooManyTries", err)
	}
	// Burned: even the right code fails now.
	if _, err := c.Verify(id, code, codesT0); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("right code after burn: %v, want ErrCodeExpired", err)
	}
}

func TestCodesWrongLengthSamePath(t *testing.T) {
	c := newTestCodes(t, CodeOptions{})
	code, id, _ := c.Issue("+79161234567", codesT0)
	for _, w := range []string{wrongOf(code), code[:CodeLen-1], code + "0", "", strings.Repeat("9", 100)} {
		if _, err := c.Verify(id, w, codesT0); !errors.Is(err, ErrWrongCode) {
			t.Fatalf("Verify(%q): %v, want ErrWrongCode", w, err)
		}
		c.mu.Lock()
		c.byAttempt[id].tries = 0 // keep the attempt alive for the next case
		c.mu.Unlock()
	}
	if _, err := c.Verify(id, code, codesT0); err != nil {
		t.Fatalf("right code after wrong ones: %v", err)
	}
}

func TestCodesExpired(t *testing.T) {
	c := newTestCodes(t, CodeOptions{TTL: time.Minute})
	code, id, _ := c.Issue("+79161234567", codesT0)
	if _, err := c.Verify(id, code, codesT0.Add(time.Minute)); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("at expiry: %v, want ErrCodeExpired", err)
	}
	if got := c.Stats().Pending; got != 0 {
		t.Fatalf("expired code kept: %d pending", got)
	}
}

func TestCodesReplace(t *testing.T) {
	c := newTestCodes(t, CodeOptions{})
	code1, id1, _ := c.Issue("+79161234567", codesT0)
	code2, id2, _ := c.Issue("+79161234567", codesT0.Add(time.Second))
	if id1 == id2 {
		t.Fatal("same attempt id twice")
	}
	if _, err := c.Verify(id1, code1, codesT0.Add(2*time.Second)); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("replaced code: %v, want ErrCodeExpired", err)
	}
	if _, err := c.Verify(id2, code2, codesT0.Add(2*time.Second)); err != nil {
		t.Fatalf("new code: %v", err)
	}
}

func TestCodesStoredHashed(t *testing.T) {
	secret := bytes.Repeat([]byte{9}, 32)
	c := newTestCodes(t, CodeOptions{Secret: secret})
	code, id, _ := c.Issue("+79161234567", codesT0)
	c.mu.Lock()
	e := *c.byAttempt[id]
	c.mu.Unlock()
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(id + code))
	if !bytes.Equal(e.mac[:], h.Sum(nil)) {
		t.Fatal("stored mac is not HMAC-SHA256(secret, attemptID||code)")
	}
	if s := fmt.Sprintf("%#v", e); strings.Contains(s, code) && !strings.Contains(id+e.number, code) {
		t.Fatalf("entry holds the code in clear: %s", s)
	}
	if bytes.Contains(e.mac[:], []byte(code)) {
		t.Fatal("mac holds the code")
	}
}

func TestCodesBoundEvictsOldest(t *testing.T) {
	c := newTestCodes(t, CodeOptions{MaxPending: 3})
	var ids, codes []string
	for i := range 5 {
		code, id, err := c.Issue(fmt.Sprintf("+7916123450%d", i), codesT0.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ids, codes = append(ids, id), append(codes, code)
	}
	if st := c.Stats(); st.Pending != 3 || st.Evicted != 2 {
		t.Fatalf("stats %+v, want 3 pending, 2 evicted", st)
	}
	now := codesT0.Add(10 * time.Second)
	for i := range 2 {
		if _, err := c.Verify(ids[i], codes[i], now); !errors.Is(err, ErrCodeExpired) {
			t.Fatalf("evicted code %d: %v, want ErrCodeExpired", i, err)
		}
	}
	for i := 2; i < 5; i++ {
		if _, err := c.Verify(ids[i], codes[i], now); err != nil {
			t.Fatalf("kept code %d: %v", i, err)
		}
	}
	// Expired codes make room before anything unexpired is evicted.
	c.Issue("+79161234500", codesT0)
	c.Issue("+79161234501", codesT0.Add(DefaultCodeTTL))
	c.Issue("+79161234502", codesT0.Add(DefaultCodeTTL))
	c.Issue("+79161234503", codesT0.Add(DefaultCodeTTL))
	if st := c.Stats(); st.Pending != 3 || st.Evicted != 2 {
		t.Fatalf("stats %+v, want 3 pending and no new eviction", st)
	}
}

func TestCodesSweep(t *testing.T) {
	c := newTestCodes(t, CodeOptions{TTL: time.Minute})
	for i := range 4 {
		c.Issue(fmt.Sprintf("+7916123450%d", i), codesT0.Add(time.Duration(i)*time.Second))
	}
	if n := c.Sweep(codesT0.Add(time.Minute + time.Second)); n != 2 {
		t.Fatalf("Sweep dropped %d, want 2", n)
	}
	if got := c.Stats().Pending; got != 2 {
		t.Fatalf("pending %d, want 2", got)
	}
}

func TestCodeUniform(t *testing.T) {
	// Each digit position takes each value; a cheap check that codes are
	// not stuck, not a statistical test.
	var seen [CodeLen][10]bool
	for range 2000 {
		code := randomCode()
		for i := range CodeLen {
			seen[i][code[i]-'0'] = true
		}
	}
	for i := range seen {
		for d, ok := range seen[i] {
			if !ok {
				t.Fatalf("digit %d never at position %d in 2000 codes", d, i)
			}
		}
	}
	if codeRejectAbove%codeRange != 0 || codeRejectAbove > 1<<32 || 1<<32-codeRejectAbove >= codeRange {
		t.Fatalf("codeRejectAbove %d is not the largest multiple of %d in a uint32", codeRejectAbove, codeRange)
	}
}

func TestCodesConcurrent(t *testing.T) {
	c := newTestCodes(t, CodeOptions{MaxPending: 64})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				now := codesT0.Add(time.Duration(i) * time.Millisecond)
				num := fmt.Sprintf("+791612%02d%03d", g, i%50)
				code, id, err := c.Issue(num, now)
				if err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					c.Verify(id, wrongOf(code), now)
				}
				got, err := c.Verify(id, code, now)
				// Another goroutine's Issue may have evicted it.
				if err == nil && got != num {
					t.Errorf("Verify returned %q for %q", got, num)
				}
				if err != nil && !errors.Is(err, ErrCodeExpired) {
					t.Errorf("Verify: %v", err)
				}
				if i%20 == 0 {
					c.Sweep(now)
					c.Stats()
				}
			}
		})
	}
	wg.Wait()
	if st := c.Stats(); st.Pending > 64 {
		t.Fatalf("pending %d over the bound", st.Pending)
	}
}
