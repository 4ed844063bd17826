package tools

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// runBotCmd runs gonets bot args and returns its exit code and output.
func runBotCmd(args ...string) (int, string, string) {
	var out, errw syncBuffer
	code := runBot(args, &out, &errw)
	return code, out.String(), errw.String()
}

// botArgs are the flags that reach n.
func (n *botAdminNode) botArgs(args ...string) []string {
	return append(args, "--data", n.dir, "--admin", n.url)
}

func TestBotCmdUsage(t *testing.T) {
	f := func(wantCode int, wantOut, wantErr string, args ...string) {
		t.Helper()
		code, out, errOut := runBotCmd(args...)
		if code != wantCode || !strings.Contains(out, wantOut) || !strings.Contains(errOut, wantErr) {
			t.Fatalf("bot %q: exit %d, stdout %q, stderr %q; want %d, %q, %q", args, code, out, errOut, wantCode, wantOut, wantErr)
		}
	}
	f(2, "", "no subcommand")
	f(2, "", `unknown subcommand "delete"`, "delete")
	f(0, "gonets bot create|list", "", "--help")
	f(0, "shown only here", "", "create", "--help")
	f(0, "--username", "", "create", "-h")
	f(0, "--admin", "", "list", "--help")
	f(0, "Revokes the bot's token", "", "revoke", "--help")
	f(0, "--description", "", "set", "--help")
	f(2, "", "--name is required", "create")
	f(2, "", `unexpected argument "x"`, "create", "--name", "n", "x")
	f(2, "", "no bot id", "revoke")
	f(2, "", `bot id "abc"`, "token", "abc")
	f(2, "", `bot id "0"`, "token", "0")
	f(2, "", "give one bot id", "revoke", "1", "2")
	f(2, "", "nothing to set", "set", "5")
	f(2, "", "flag provided but not defined: -app-url", "revoke", "5", "--app-url", "https://x.example/")

	// gonets dispatches to it.
	if code, out, _ := run("bot", "--help"); code != 0 || !strings.Contains(out, "usage: gonets bot") {
		t.Fatalf("gonets bot --help: exit %d, stdout %q", code, out)
	}
	if code, out, _ := run("help"); code != 0 || !strings.Contains(out, "bot ") {
		t.Fatalf("gonets help does not list bot: %q", out)
	}
}

func TestBotCmdCreate(t *testing.T) {
	n := newBotAdminNode(t)
	code, out, errOut := runBotCmd(n.botArgs("create", "--name", "Weather", "--username", "weather_bot", "--app-url", "https://w.example/app")...)
	if code != 0 || errOut != "" {
		t.Fatalf("create: exit %d, stderr %q", code, errOut)
	}
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("create printed %q: want one line", out)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 2 {
		t.Fatalf("create printed %q: %v", out, err)
	}
	var res botTokenJSON
	json.Unmarshal([]byte(out), &res)
	if !strings.HasPrefix(out, `{"user_id":`+strconv.FormatUint(uint64(res.UserID), 10)+`,"token":"`) {
		t.Fatalf("create printed %q", out)
	}
	user, err := n.accounts.Authenticate(res.Token)
	if err != nil || user != res.UserID {
		t.Fatalf("printed token: %d, %v; want %d", user, err, res.UserID)
	}
	info, err := n.accounts.BotInfo(user)
	if err != nil || info.Name != "Weather" || info.Username != "weather_bot" || info.AppURL != "https://w.example/app" {
		t.Fatalf("bot: %+v, %v", info, err)
	}

	// Refusals of the node come back with their code.
	code, out, errOut = runBotCmd(n.botArgs("create", "--name", "Other", "--username", "WEATHER_BOT")...)
	if code != 1 || out != "" || !strings.Contains(errOut, "(username_taken)") {
		t.Fatalf("taken username: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = runBotCmd(n.botArgs("create", "--name", "x", "--app-url", "http://w.example/")...)
	if code != 1 || !strings.Contains(errOut, "(bad_app_url)") {
		t.Fatalf("bad URL: exit %d, stderr %q", code, errOut)
	}
	if len(n.accounts.Bots()) != 1 {
		t.Fatalf("refused creates made bots: %+v", n.accounts.Bots())
	}
}

func TestBotCmdListRevokeTokenSet(t *testing.T) {
	n := newBotAdminNode(t)
	create := func(name string) botTokenJSON {
		t.Helper()
		code, out, errOut := runBotCmd(n.botArgs("create", "--name", name)...)
		var res botTokenJSON
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
			t.Fatalf("create %s: exit %d, stdout %q, stderr %q", name, code, out, errOut)
		}
		return res
	}
	one, two := create("One"), create("Two")
	id := strconv.FormatUint(uint64(one.UserID), 10)

	code, out, errOut := runBotCmd(n.botArgs("list")...)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 2 || strings.Contains(out, one.Token) || strings.Contains(out, "token") {
		t.Fatalf("list: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	var b botJSON
	if err := json.Unmarshal([]byte(lines[1]), &b); err != nil || b.UserID != two.UserID || b.Name != "Two" || b.Revoked {
		t.Fatalf("list line %q: %v", lines[1], err)
	}

	// The id may come before or after the flags.
	code, out, errOut = runBotCmd(append([]string{"revoke"}, n.botArgs(id)...)...)
	if code != 0 || json.Unmarshal([]byte(out), &b) != nil || !b.Revoked || b.UserID != one.UserID {
		t.Fatalf("revoke: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := n.accounts.Authenticate(one.Token); err == nil {
		t.Fatal("revoked token still authenticates")
	}
	if _, err := n.accounts.Authenticate(two.Token); err != nil {
		t.Fatalf("the other bot's token: %v", err)
	}

	code, out, errOut = runBotCmd(n.botArgs("token", id)...)
	var res botTokenJSON
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.UserID != one.UserID || res.Token == one.Token {
		t.Fatalf("token: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if u, err := n.accounts.Authenticate(res.Token); err != nil || u != one.UserID {
		t.Fatalf("new token: %d, %v", u, err)
	}

	code, out, errOut = runBotCmd(n.botArgs("set", id, "--app-url", "https://one.example/", "--description", "The first")...)
	if code != 0 || json.Unmarshal([]byte(out), &b) != nil || b.AppURL != "https://one.example/" || b.Description != "The first" {
		t.Fatalf("set: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runBotCmd(n.botArgs("set", id, "--app-url", "")...)
	b = botJSON{}
	if code != 0 || json.Unmarshal([]byte(out), &b) != nil || b.AppURL != "" || b.Description != "The first" {
		t.Fatalf("set --app-url \"\": exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	code, _, errOut = runBotCmd(n.botArgs("revoke", "424242")...)
	if code != 1 || !strings.Contains(errOut, "(not_bot)") {
		t.Fatalf("revoke of no bot: exit %d, stderr %q", code, errOut)
	}
}

func TestBotCmdWithoutNode(t *testing.T) {
	n := newBotAdminNode(t)

	// No token file where --data points.
	empty := t.TempDir()
	abs, _ := filepath.Abs(empty)
	code, out, errOut := runBotCmd("list", "--data", empty, "--admin", n.url)
	if code != 1 || out != "" || !strings.Contains(errOut, "no admin token at "+filepath.Join(abs, adminTokenFile)) || !strings.Contains(errOut, "--data DIR") {
		t.Fatalf("no token file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Nothing listening at --admin.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	code, _, errOut = runBotCmd("create", "--name", "x", "--data", n.dir, "--admin", closed)
	if code != 1 || !strings.Contains(errOut, "no node answers at http://"+closed) {
		t.Fatalf("no node: exit %d, stderr %q", code, errOut)
	}

	// Another node's token.
	other := t.TempDir()
	if _, err := loadOrCreateAdminToken(other); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runBotCmd("list", "--data", other, "--admin", n.url)
	if code != 1 || !strings.Contains(errOut, "refused the admin token") {
		t.Fatalf("wrong token: exit %d, stderr %q", code, errOut)
	}

	// Something that is not a node's admin endpoint.
	code, _, errOut = runBotCmd("list", "--data", n.dir, "--admin", n.url+"/metrics")
	if code != 1 || !strings.Contains(errOut, "is it a gonets node") {
		t.Fatalf("not an admin endpoint: exit %d, stderr %q", code, errOut)
	}

	code, _, errOut = runBotCmd("list", "--data", n.dir, "--admin", "ftp://127.0.0.1:1")
	if code != 1 || !strings.Contains(errOut, "--admin") {
		t.Fatalf("bad --admin: exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(empty, adminTokenFile)); err == nil {
		t.Fatal("the command created an admin token")
	}
}
