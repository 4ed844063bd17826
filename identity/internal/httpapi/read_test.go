package httpapi

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadAtMost(t *testing.T) {
	f := func(body string, n int64, want string, wantErr error) {
		t.Helper()
		b, err := ReadAtMost(strings.NewReader(body), n)
		if string(b) != want || !errors.Is(err, wantErr) {
			t.Errorf("ReadAtMost(%q, %d) = %q, %v; want %q, %v", body, n, b, err, want, wantErr)
		}
	}
	f("", 4, "", nil)
	f("abc", 4, "abc", nil)
	f("abcd", 4, "abcd", nil)
	f("abcde", 4, "abcd", ErrTooLarge)
	f("abcdefgh", 4, "abcd", ErrTooLarge)
	f("a", 0, "", ErrTooLarge)

	boom := errors.New("boom")
	b, err := ReadAtMost(io.MultiReader(strings.NewReader("ab"), iotest.ErrReader(boom)), 4)
	if string(b) != "ab" || !errors.Is(err, boom) {
		t.Errorf("read error: %q, %v; want \"ab\", boom", b, err)
	}
}
