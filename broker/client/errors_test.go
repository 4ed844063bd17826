package client

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/wire"
)

func TestErrorMatching(t *testing.T) {
	err := fmt.Errorf("send: %w", errorFromWire(&wire.Error{Code: wire.ErrorCode_ERROR_CODE_RATE_LIMITED, Message: "slow down", RetryAfterMs: 250}))
	if !errors.Is(err, ErrRateLimited) || errors.Is(err, ErrNotMember) {
		t.Fatalf("errors.Is on %v: want RATE_LIMITED only", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != wire.ErrorCode_ERROR_CODE_RATE_LIMITED || e.RetryAfter != 250*time.Millisecond {
		t.Fatalf("errors.As: %+v", e)
	}
	if got, want := e.Error(), "gonets: RATE_LIMITED: slow down"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if got, want := ErrNotMember.Error(), "gonets: NOT_MEMBER"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if !fatal(fmt.Errorf("dial: %w", &Error{Code: wire.ErrorCode_ERROR_CODE_TOKEN_EXPIRED})) || fatal(ErrUnavailable) {
		t.Fatal("fatal: want TOKEN_EXPIRED fatal and UNAVAILABLE not")
	}
}
