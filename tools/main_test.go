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

func TestUsageErrors(t *testing.T) {
	t.Setenv(tokenEnv, "")
	for _, tc := range []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"nosuch"}, `unknown command "nosuch"`},
		{[]string{"chat"}, "no subcommand: the one subcommand is create"},
		{[]string{"chat", "delete"}, `unknown subcommand "delete"`},
		{[]string{"chat", "create", "--member", "2"}, "--kind is required"},
		{[]string{"chat", "create", "--kind", "triangle", "--member", "2"}, `--kind "triangle" is not a chat kind: want direct, group or channel`},
		{[]string{"chat", "create", "--kind", "group"}, "no --member"},
		{[]string{"chat", "create", "--kind", "group", "--member", "0"}, `user id "0" is not a positive integer`},
		{[]string{"chat", "create", "--kind", "group", "--member", "2", "extra"}, `unexpected argument "extra"`},
		{[]string{"chat", "create", "--kind", "group", "--member", "2", "--timeout", "0s"}, "--timeout 0s must be positive"},
		{[]string{"chat", "create", "--kind", "group", "--member", "2"}, "no session token: pass --token or set GONETS_TOKEN"},
		{[]string{"send", "hello"}, "--chat is required"},
		{[]string{"send", "--chat", "0", "hello"}, "--chat 0 is not a chat id"},
		{[]string{"send", "--chat", "1"}, "no message text"},
		{[]string{"send", "--chat", "1", "hello", "--token", "X"}, "flag --token comes after the message text"},
		{[]string{"send", "--chat", "1", "hello", "world", "-server=h:1"}, "flag -server=h:1 comes after the message text"},
		{[]string{"send", "hello", "--chat", "1"}, "flag --chat comes after the message text"},
		{[]string{"send", "--chat", "x", "hi"}, `invalid value "x" for flag -chat`},
		{[]string{"send", "--bogus", "hi"}, "flag provided but not defined: -bogus"},
		{[]string{"send", "--chat", "1", "--token", "T", "--insecure", "--ca", "ca.pem", "hi"}, "--insecure, --fingerprint and --ca are exclusive"},
		{[]string{"send", "--chat", "1", "--token", "T", "--fingerprint", "ab", "--ca", "ca.pem", "hi"}, "are exclusive"},
		{[]string{"send", "--chat", "1", "--token", "T", "--dial-timeout", "0s", "hi"}, "--dial-timeout must be positive"},
		{[]string{"tail", "--all", "--since", "3"}, "--all and --since are exclusive"},
		{[]string{"tail", "--count", "-1"}, "--count -1 is negative"},
		{[]string{"tail", "extra"}, `unexpected argument "extra"`},
		{[]string{"tail", "--timeout", "-1s"}, "--timeout -1s must be positive"},
		{[]string{"token", "--device", "1"}, "--user is required"},
		{[]string{"token", "--user", "1"}, "--device is required"},
		{[]string{"token", "--user", "0", "--device", "1"}, "--user 0 is not a user id: ids start at 1"},
		{[]string{"token", "--user", "1", "--device", "0"}, "--device 0 is not a device id"},
		{[]string{"token", "--user", "-1", "--device", "1"}, `invalid value "-1" for flag -user`},
		{[]string{"token", "--user", "1", "--device", "1", "--ttl", "-1h"}, "--ttl -1h0m0s must be positive"},
		{[]string{"token", "--user", "1", "--device", "1", "now"}, `unexpected argument "now"`},
		{[]string{"version", "extra"}, `unexpected argument "extra"`},
		{[]string{"serve", "extra"}, `unexpected argument "extra"`},
		{[]string{"serve", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"bench"}, "usage: gonets bench SCENARIO"},
		{[]string{"bench", "chat", "--rate", "fast"}, `invalid value "fast" for flag -rate`},
		{[]string{"bench-summary"}, "gonets bench-summary: no files"},
	} {
		code, out, errOut := run(tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("gonets %q: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string // in stdout
	}{
		{[]string{"serve"}, []string{"usage: gonets serve", "-check-config", "-tls-cert"}},
		{[]string{"chat"}, []string{"usage: gonets chat create", "gonets chat create --help"}},
		{[]string{"chat", "create"}, []string{"usage: gonets chat create", "-kind", "-member", "-ca file", "-dial-timeout", "Certificates, the first that applies"}},
		{[]string{"send"}, []string{"usage: gonets send", "-chat", "-fingerprint", "-ca file", "Certificates"}},
		{[]string{"tail"}, []string{"usage: gonets tail", "-all", "-since", "-server", "Certificates"}},
		{[]string{"token"}, []string{"usage: gonets token", "-user", "-device", "-init", "refuses"}},
		{[]string{"version"}, []string{"usage: gonets version"}},
		{[]string{"bench"}, []string{"usage: gonets bench SCENARIO", "-duration", "-peer"}},
		{[]string{"bench", "chat"}, []string{"usage: gonets bench SCENARIO", "-rate"}},
		{[]string{"bench-summary"}, []string{"usage: gonets bench-summary FILE"}},
	} {
		for _, h := range []string{"-h", "--help", "-help"} {
			args := append(append([]string{}, tc.args...), h)
			code, out, errOut := run(args...)
			if code != 0 || errOut != "" {
				t.Errorf("gonets %q: exit %d, stderr %q; want 0 and nothing", args, code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("gonets %q printed %q, want %q in it", args, out, w)
				}
			}
		}
	}
}
