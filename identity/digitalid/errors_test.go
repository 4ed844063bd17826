package digitalid

import (
	"errors"
	"testing"
)

func TestReasonWords(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range reasons {
		if seen[r.word] {
			t.Errorf("reason %q twice", r.word)
		}
		seen[r.word] = true
		if got := Reason(fmtWrap(r.err)); got != r.word {
			t.Errorf("Reason(%v) = %q, want %q", r.err, got, r.word)
		}
	}
	if Reason(nil) != "ok" || Reason(errors.New("x")) != "error" {
		t.Errorf("Reason of nil or a foreign error")
	}
}
