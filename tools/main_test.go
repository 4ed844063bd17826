package tools

import (
	"bytes"
	"strings"
	"testing"
)

func TestMain_dispatch(t *testing.T) {
	f := func(args []string, wantCode int, wantOut string) {
		t.Helper()
		var out, errw bytes.Buffer
		code := Main(args, &out, &errw)
		if code != wantCode {
			t.Fatalf("Main(%q) = %d, want %d (stderr %q)", args, code, wantCode, errw.String())
		}
		if !strings.Contains(out.String()+errw.String(), wantOut) {
			t.Fatalf("Main(%q) printed %q, want it to contain %q", args, out.String()+errw.String(), wantOut)
		}
	}
	f([]string{"version"}, 0, "gonets "+Version)
	f([]string{"help"}, 0, "usage: gonets")
	f(nil, 2, "usage: gonets")
	f([]string{"nosuch"}, 2, `unknown command "nosuch"`)
	f([]string{"version", "--bogus"}, 2, "flag provided but not defined")
}
