package tools

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/storage/storagetest"
)

// accountsNode starts a node that serves phone login.
func accountsNode(t *testing.T, opts brokertest.Options) *brokertest.Node {
	t.Helper()
	opts.Accounts = true
	return brokertest.Start(t, opts)
}

// connArgs are the flags that reach node n, without a login.
func connArgs(n *brokertest.Node) []string {
	return []string{"--server", n.Addr, "--tcp-server", n.TCPAddr, "--fingerprint", n.Fingerprint}
}

// codeReader answers the login prompt: with the wrong codes first, then
// the code the node sent to phone.
type codeReader struct {
	t     *testing.T
	n     *brokertest.Node
	phone string
	wrong int
}

func (r *codeReader) Read(p []byte) (int, error) {
	code := r.n.Code(r.t, r.phone)
	if r.wrong > 0 {
		r.wrong--
		b := []byte(code)
		b[0] = '0' + (b[0]-'0'+1)%10
		code = string(b)
	}
	return copy(p, code+"\n"), nil
}

// decodeLogin decodes the line gonets login printed.
func decodeLogin(t *testing.T, out string) loginLine {
	t.Helper()
	var l loginLine
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("login printed %q: %v", out, err)
	}
	return l
}

// loginAs logs phone in on n, answering the prompt, and saves the login
// as profile.
func loginAs(t *testing.T, n *brokertest.Node, phone, profile string, extra ...string) loginLine {
	t.Helper()
	var out, errOut syncBuffer
	args := append(append([]string{"--phone", phone, "--profile", profile}, connArgs(n)...), extra...)
	if code := loginMain(args, &codeReader{t: t, n: n, phone: phone}, &out, &errOut); code != 0 {
		t.Fatalf("login %s: exit %d: %s", phone, code, errOut.String())
	}
	return decodeLogin(t, out.String())
}

func TestLoginPrompt(t *testing.T) {
	checkClientLeaks(t)
	dir := testProfiles(t)
	n := accountsNode(t, brokertest.Options{})
	const phone = "+79000000001"
	var out, errOut syncBuffer
	args := append([]string{"--phone", "+7 900 000-00-01", "--name", "laptop"}, connArgs(n)...)
	code := loginMain(args, &codeReader{t: t, n: n, phone: phone, wrong: 2}, &out, &errOut)
	if code != 0 {
		t.Fatalf("login: exit %d: %s", code, errOut.String())
	}
	l := decodeLogin(t, out.String())
	if l.User == 0 || l.Device == 0 || !l.Created || l.Profile != defaultProfile {
		t.Fatalf("login printed %+v", l)
	}
	for _, want := range []string{"a 6-digit code was sent to " + phone, "Code sent to " + phone + ": ", "wrong code: 4 tries left", "wrong code: 3 tries left", "signed up with a new account"} {
		if !strings.Contains(errOut.String(), want) {
			t.Fatalf("login's stderr %q lacks %q", errOut.String(), want)
		}
	}
	pf, _ := openProfile(defaultProfile)
	p, err := pf.load()
	if err != nil || p.Server != n.Addr || p.TCPServer != n.TCPAddr || p.Fingerprint != n.Fingerprint || p.Phone != phone ||
		p.User != l.User || p.Device != l.Device || !p.fresh(time.Now(), time.Minute) || p.RefreshExpires.Before(time.Now().Add(time.Hour)) {
		t.Fatalf("saved %+v, %v", p, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "default.json")); err != nil || fi.Mode() != 0o600 {
		t.Fatalf("profile file: %v, %v", fi, err)
	}
	// The same number again: the same user, a new device, the profile
	// replaced.
	again := loginAs(t, n, phone, defaultProfile)
	if again.User != l.User || again.Device == l.Device || again.Created {
		t.Fatalf("second login %+v after %+v", again, l)
	}
	// Input that ends before a code.
	out, errOut = syncBuffer{}, syncBuffer{}
	if code := loginMain(append([]string{"--phone", "+79000000009"}, connArgs(n)...), strings.NewReader("\n"), &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "no code: the input ended (EOF); give it with gonets login --phone +79000000009 --code CODE") {
		t.Fatalf("login with no code: exit %d: %s", code, errOut.String())
	}
}

func TestLoginCode(t *testing.T) {
	checkClientLeaks(t)
	testProfiles(t)
	n := accountsNode(t, brokertest.Options{})
	const phone = "+79000000002"
	login := func(args ...string) (int, string, string) {
		return run(append(append([]string{"login", "--phone", phone, "--profile", "bot"}, connArgs(n)...), args...)...)
	}
	// --code before any --send-code.
	if code, _, errOut := login("--code", "123456"); code != 1 || !strings.Contains(errOut, "run gonets login --phone "+phone+" --send-code --profile bot first") {
		t.Fatalf("--code without a code sent: exit %d: %s", code, errOut)
	}
	code, out, errOut := login("--send-code")
	if code != 0 || out != "" || !strings.Contains(errOut, "then run: gonets login --phone "+phone+" --code CODE --profile bot") {
		t.Fatalf("--send-code: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	right := n.Code(t, phone)
	wrong := []byte(right)
	wrong[5] = '0' + (wrong[5]-'0'+1)%10
	// A wrong code says how many tries are left, and keeps the attempt.
	if code, _, errOut := login("--code", string(wrong)); code != 1 || !strings.Contains(errOut, "WRONG_CODE") || !strings.Contains(errOut, "4 tries left") {
		t.Fatalf("a wrong --code: exit %d: %s", code, errOut)
	}
	// The right one, with no connection flags: the attempt remembers the
	// node.
	code, out, errOut = run("login", "--phone", phone, "--profile", "bot", "--code", right)
	if code != 0 {
		t.Fatalf("--code: exit %d: %s", code, errOut)
	}
	if l := decodeLogin(t, out); !l.Created || l.Profile != "bot" {
		t.Fatalf("login printed %+v", l)
	}
	pf, _ := openProfile("bot")
	if p, err := pf.load(); err != nil || p.Server != n.Addr || p.Fingerprint != n.Fingerprint {
		t.Fatalf("saved %+v, %v", p, err)
	}
	if exists(pf.pendingPath()) {
		t.Fatal("the used attempt is still kept")
	}
	// The code is spent.
	if code, _, errOut := login("--code", right); code != 1 || !strings.Contains(errOut, "--send-code") {
		t.Fatalf("the code again: exit %d: %s", code, errOut)
	}
}

func TestLoginOutbox(t *testing.T) {
	checkClientLeaks(t)
	testProfiles(t)
	n := accountsNode(t, brokertest.Options{})
	const phone = "+79000000003"
	outbox := filepath.Join(t.TempDir(), "sms-outbox.jsonl")
	fs, err := identity.NewFileSender(identity.FileSenderOptions{Path: outbox})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	ctx := context.Background()
	// An old code to the same number, before the login starts: not taken.
	if err := fs.Send(ctx, identity.SMS{To: phone, Text: "Gonets code: 111111."}); err != nil {
		t.Fatal(err)
	}
	// The node's gateway is in memory: copy its message to the outbox, as
	// the file adapter would write it, after a code to another number.
	done := make(chan error, 1)
	go func() {
		code, ok := n.SMS().Code(phone)
		for deadline := time.Now().Add(outboxWait); !ok && time.Now().Before(deadline); code, ok = n.SMS().Code(phone) {
			time.Sleep(10 * time.Millisecond)
		}
		err := fs.Send(ctx, identity.SMS{To: "+79000000004", Text: "Gonets code: 222222."})
		if err == nil {
			err = fs.Send(ctx, identity.SMS{To: phone, Text: "Gonets code: " + code + ". Do not give it to anyone."})
		}
		done <- err
	}()
	code, out, errOut := run(append([]string{"login", "--phone", phone, "--outbox", outbox}, connArgs(n)...)...)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("login --outbox: exit %d: %s", code, errOut)
	}
	if l := decodeLogin(t, out); !l.Created {
		t.Fatalf("login printed %+v", l)
	}
	// No code comes: it says where it looked.
	if testing.Short() {
		return
	}
	start := time.Now()
	code, _, errOut = run(append([]string{"login", "--phone", "+79000000005", "--outbox", outbox}, connArgs(n)...)...)
	if code != 1 || !strings.Contains(errOut, "no code for +79000000005 appeared in "+outbox+" within 10s") || time.Since(start) > 20*time.Second {
		t.Fatalf("login --outbox with no code: exit %d: %s", code, errOut)
	}
}

func TestLoginErrors(t *testing.T) {
	checkClientLeaks(t)
	testProfiles(t)
	n := accountsNode(t, brokertest.Options{})
	f := func(wantCode int, want string, args ...string) {
		t.Helper()
		code, _, errOut := run(append([]string{"login"}, args...)...)
		if code != wantCode || !strings.Contains(errOut, want) {
			t.Fatalf("gonets login %q: exit %d, stderr %q; want %d and %q", args, code, errOut, wantCode, want)
		}
	}
	f(2, "--phone is required", "--code", "1")
	f(2, "--send-code, --code and --outbox are exclusive", "--phone", "+79000000001", "--code", "1", "--outbox", "f")
	f(2, `unexpected argument "x"`, "--phone", "+79000000001", "x")
	f(2, "is not a profile name", "--phone", "+79000000001", "--profile", "../x")
	f(1, "BAD_PHONE", append([]string{"--phone", "12", "--send-code"}, connArgs(n)...)...)
	f(1, "give the number in international form", append([]string{"--phone", "12", "--send-code"}, connArgs(n)...)...)
	// The number's limit: three codes in ten minutes.
	for range 3 {
		f(0, "a 6-digit code was sent", append([]string{"--phone", "+79000000006", "--send-code"}, connArgs(n)...)...)
	}
	f(1, "RATE_LIMITED", append([]string{"--phone", "+79000000006", "--send-code"}, connArgs(n)...)...)
	f(1, "retry after ", append([]string{"--phone", "+79000000006", "--send-code"}, connArgs(n)...)...)
	// A node without accounts.
	plain := brokertest.Start(t, brokertest.Options{})
	f(1, "ACCOUNTS_OFF", append([]string{"--phone", "+79000000001", "--send-code"}, connArgs(plain)...)...)
	// --help.
	code, out, _ := run("login", "--help")
	if code != 0 || !strings.Contains(out, loginUsage) || !strings.Contains(out, "-outbox") || !strings.Contains(out, "--send-code has the code sent") {
		t.Fatalf("login --help: exit %d: %s", code, out)
	}
}

// The client commands take the saved login: its node, its certificate
// pin, its tokens.
func TestProfileClientCommands(t *testing.T) {
	checkClientLeaks(t)
	testProfiles(t)
	n := accountsNode(t, brokertest.Options{})
	alice := loginAs(t, n, "+79000000011", defaultProfile)
	bob := loginAs(t, n, "+79000000012", "bob")
	t.Setenv(tokenEnv, "")
	// No flags at all: the default profile.
	code, out, errOut := run("chat", "create", "--kind", "direct", "--member", jsonNumber(bob.User))
	if code != 0 {
		t.Fatalf("chat create with the default profile: exit %d: %s", code, errOut)
	}
	chat := strings.TrimSpace(out)
	if code, _, errOut := run("send", "--chat", chat, "m1"); code != 0 {
		t.Fatalf("send with the default profile: exit %d: %s", code, errOut)
	}
	r := startTail(t, "--profile", "bob", "--all", "--count", "1")
	if code := r.exit(t); code != 0 {
		t.Fatalf("tail --profile bob: exit %d: %s", code, r.err.String())
	}
	if ls := r.lines(t); len(ls) != 1 || ls[0].Text != "m1" || ls[0].Sender != alice.User || ls[0].Device != alice.Device {
		t.Fatalf("bob's tail: %+v", ls)
	}
	// --token and $GONETS_TOKEN come before the default profile.
	other := n.Token(t, 99, 1)
	if code, _, errOut := run(append([]string{"send", "--chat", chat}, append(clientArgs(n, other), "x")...)...); code != 1 || !strings.Contains(errOut, "NOT_MEMBER") {
		t.Fatalf("send --token of a non-member: exit %d: %s", code, errOut)
	}
	t.Setenv(tokenEnv, other)
	if code, _, errOut := run(append([]string{"send", "--chat", chat}, append(connArgs(n), "x")...)...); code != 1 || !strings.Contains(errOut, "NOT_MEMBER") {
		t.Fatalf("send with $GONETS_TOKEN of a non-member: exit %d: %s", code, errOut)
	}
	// A --profile named comes before $GONETS_TOKEN.
	if code, _, errOut := run("send", "--profile", "bob", "--chat", chat, "m2"); code != 0 {
		t.Fatalf("send --profile bob with $GONETS_TOKEN set: exit %d: %s", code, errOut)
	}
	t.Setenv(tokenEnv, "")
	// --server overrides the profile's.
	if code, _, errOut := run("send", "--server", "127.0.0.1:1", "--transport", "tcp", "--chat", chat, "x"); code != 1 || !strings.Contains(errOut, "nothing answered at 127.0.0.1:1") {
		t.Fatalf("send --server: exit %d: %s", code, errOut)
	}
	f := func(wantCode int, want string, args ...string) {
		t.Helper()
		code, _, errOut := run(args...)
		if code != wantCode || !strings.Contains(errOut, want) {
			t.Fatalf("gonets %q: exit %d, stderr %q; want %d and %q", args, code, errOut, wantCode, want)
		}
	}
	f(2, "--token and --profile are exclusive", "send", "--profile", "bob", "--token", "T", "--chat", chat, "x")
	f(1, `no saved login "carol"`, "send", "--profile", "carol", "--chat", chat, "x")
	f(1, "gonets login --phone +NUMBER --profile carol", "send", "--profile", "carol", "--chat", chat, "x")
	f(2, "is not a profile name", "send", "--profile", "a/b", "--chat", chat, "x")
	// Without the default profile nor a token.
	pf, _ := openProfile(defaultProfile)
	if err := pf.remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	f(2, "or log in first: gonets login --phone +NUMBER", "send", "--chat", chat, "x")
}

// An access token that expired is refreshed from the profile before the
// command connects, and the rotated pair saved.
func TestProfileExpiredAccess(t *testing.T) {
	checkClientLeaks(t)
	testProfiles(t)
	n := accountsNode(t, brokertest.Options{})
	alice := loginAs(t, n, "+79000000021", "alice")
	pf, _ := openProfile("alice")
	before, err := pf.load()
	if err != nil {
		t.Fatal(err)
	}
	// The node's token expired: the profile says so, and the node would
	// refuse the old token anyway.
	expired := *before
	expired.Access = n.TokenExpiring(t, alice.User, alice.Device, time.Now().Add(-time.Minute))
	expired.AccessExpires = time.Now().Add(-time.Minute)
	if err := pf.save(context.Background(), &expired); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("chat", "create", "--profile", "alice", "--kind", "group", "--member", "5")
	if code != 0 || strings.TrimSpace(out) == "" {
		t.Fatalf("chat create with an expired access token: exit %d: %s", code, errOut)
	}
	after, err := pf.load()
	if err != nil || after.Refresh == before.Refresh || after.Access == expired.Access || !after.fresh(time.Now(), 30*time.Minute) ||
		after.User != alice.User || after.Device != alice.Device {
		t.Fatalf("after the refresh: %+v, %v", after, err)
	}
	// The refresh token the profile held is spent: presented again the
	// node would end the device. Put it back, as a second process with a
	// stale copy would, and the node does end it.
	stale := *after
	stale.Refresh, stale.AccessExpires = before.Refresh, time.Now().Add(-time.Minute)
	if err := pf.save(context.Background(), &stale); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run("chat", "create", "--profile", "alice", "--kind", "group", "--member", "5"); code != 1 ||
		!strings.Contains(errOut, "REFRESH_REUSED") || !strings.Contains(errOut, "log in again: gonets login --phone +79000000021 --profile alice") {
		t.Fatalf("a reused refresh token: exit %d: %s", code, errOut)
	}
}

// Two long-running commands on one profile renew the access token in
// turn under the lock, never presenting one refresh token twice, and
// keep their sessions past the first token's life.
func TestProfileKeepFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for three access token lives")
	}
	checkClientLeaks(t)
	testProfiles(t)
	n := accountsNode(t, brokertest.Options{Identity: identity.ServiceOptions{AccessTTL: 3 * time.Second}})
	alice := loginAs(t, n, "+79000000031", "alice")
	pf, _ := openProfile("alice")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errOut syncBuffer
	clients := make([]*client.Client, 2)
	for i := range clients {
		fs := newFlagSet("test", "", io.Discard, io.Discard)
		cf := addClientFlags(fs)
		if _, ok := fs.parse([]string{"--profile", "alice"}); !ok {
			t.Fatal("flags")
		}
		c, err := cf.dial(ctx, client.Options{SendOnly: true, Logger: cliLogger(&errOut)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		defer cf.keep(c, &errOut, "test")()
		clients[i] = c
	}
	// Three renewals: the first token is long dead.
	seen := map[string]bool{}
	storagetest.WaitFor(t, "three renewals", func() bool {
		if p, err := pf.load(); err == nil {
			seen[p.Refresh] = true
		}
		return len(seen) > 3
	})
	for i, c := range clients {
		if _, err := c.CreateChat(ctx, wire.ChatKind_CHAT_KIND_GROUP, []uint64{5}, ""); err != nil {
			t.Fatalf("client %d after three token lives: %v; stderr %s", i, err, errOut.String())
		}
	}
	if errOut.String() != "" {
		t.Fatalf("stderr: %s", errOut.String())
	}
	ds, err := clients[0].Devices(ctx)
	if err != nil || len(ds) != 1 || ds[0].ID != alice.Device {
		t.Fatalf("devices %+v, %v", ds, err)
	}
}
