package tools

import (
	"bytes"
	"strings"
	"testing"
)

// TestBenchUploadFlags checks gonets bench upload's flags: sizes with
// binary units, usage errors, and parameters refused before a node starts.
func TestBenchUploadFlags(t *testing.T) {
	var s sizeFlag
	for in, want := range map[string]int64{"200KiB": 200 << 10, "1GiB": 1 << 30, "8MiB": 8 << 20, "4096": 4096} {
		if err := s.Set(in); err != nil || int64(s) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, int64(s), err, want)
		}
	}
	if s = sizeFlag(1 << 30); s.String() != "1GiB" {
		t.Errorf("String() = %q, want 1GiB", s.String())
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bench", "upload", "--size", "1GB"}, 2, "want an integer of bytes"},
		{[]string{"bench", "upload", "extra"}, 2, "unexpected argument"},
		{[]string{"bench", "upload", "--photos", "2", "--concurrency", "3"}, 1, "--concurrency 3"},
	} {
		var out, errOut bytes.Buffer
		if code := Main(tc.args, &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
	var out, errOut bytes.Buffer
	if code := Main([]string{"bench", "upload", "--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "-photo-size") {
		t.Errorf("--help: exit %d, %q", code, out.String())
	}
}
