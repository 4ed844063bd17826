package identity

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/bots/miniapp"
)

func mustCreateBot(t *testing.T, a *Accounts, name, username string) (Bot, string) {
	t.Helper()
	b, tok, err := a.CreateBot(name, username)
	if err != nil {
		t.Fatalf("CreateBot(%q, %q): %v", name, username, err)
	}
	return b, tok
}

func TestBotCreateAndAuthenticate(t *testing.T) {
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{UserBase: 1000})
	person := mustLogin(t, a, "+441234567890", "phone", acctT0)
	b, tok := mustCreateBot(t, a, "Weather", "WeatherBot")
	if b.User == person.User || b.User < 1000 {
		t.Fatalf("bot id %d: must come from the id space past %d", b.User, person.User)
	}
	if len(tok) != botTokenLen || strings.ContainsAny(tok, "+/=") {
		t.Fatalf("token %q: want 43 chars of unpadded base64url", tok)
	}
	if b.Name != "Weather" || b.Username != "WeatherBot" || b.Revoked || b.Created.IsZero() {
		t.Fatalf("bot = %+v", b)
	}
	if u, err := a.Authenticate(tok); err != nil || u != b.User {
		t.Fatalf("Authenticate = %d, %v; want %d", u, err, b.User)
	}
	if n := testing.AllocsPerRun(100, func() { a.Authenticate(tok) }); n != 0 {
		t.Fatalf("Authenticate allocates %v times", n)
	}
	for _, bad := range []string{"", "x", tok[:42], tok + "A", strings.Repeat("A", 43)} {
		if _, err := a.Authenticate(bad); !errors.Is(err, ErrUnknownBotToken) {
			t.Fatalf("Authenticate(%q) = %v", bad, err)
		}
	}
	if !a.IsBot(b.User) || a.IsBot(person.User) || a.IsBot(99) {
		t.Fatal("IsBot wrong")
	}
	if _, err := a.BotInfo(person.User); !errors.Is(err, ErrNotBot) {
		t.Fatalf("BotInfo of a person = %v", err)
	}
	got, err := a.BotInfo(b.User)
	if err != nil || got.Name != "Weather" || !got.Created.Equal(b.Created) {
		t.Fatalf("BotInfo = %+v, %v", got, err)
	}
	// The next person gets an id of their own.
	p2 := mustLogin(t, a, "+441234567891", "phone", acctT0)
	if p2.User == b.User || p2.User == person.User {
		t.Fatalf("person %d collides with bot %d or person %d", p2.User, b.User, person.User)
	}
	if _, err := a.Devices(b.User); err != nil {
		t.Fatalf("Devices of a bot: %v", err)
	}
}

func TestBotAppKeySignsLaunchData(t *testing.T) {
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{})
	b, tok := mustCreateBot(t, a, "Shop", "")
	key, err := a.BotAppKey(b.User)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, []byte("WebAppData"))
	m.Write([]byte(tok))
	if !bytes.Equal(key, m.Sum(nil)) {
		t.Fatal("BotAppKey is not HMAC-SHA256(\"WebAppData\", token)")
	}
	if !bytes.Equal(key, miniapp.SecretKey(tok)) {
		t.Fatal("BotAppKey is not miniapp.SecretKey(token)")
	}
	// What the node signs with the key alone validates with the token the
	// bot holds.
	now := time.Unix(1_800_000_000, 0)
	data, err := miniapp.SignWithKey(key, miniapp.LaunchData{QueryID: "q1", AuthDate: now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := miniapp.Validate(data, tok, time.Minute, now); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if _, err := a.BotAppKey(1); !errors.Is(err, ErrNotBot) {
		t.Fatalf("BotAppKey of no bot = %v", err)
	}
}

func TestBotRevokeAndNewToken(t *testing.T) {
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{})
	b, tok := mustCreateBot(t, a, "Echo", "echo_bot")
	key1, _ := a.BotAppKey(b.User)
	if err := a.RevokeBot(b.User); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(tok); !errors.Is(err, ErrUnknownBotToken) {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := a.BotAppKey(b.User); !errors.Is(err, ErrBotRevoked) {
		t.Fatalf("BotAppKey of a revoked bot = %v", err)
	}
	if info, _ := a.BotInfo(b.User); !info.Revoked || !a.IsBot(b.User) {
		t.Fatalf("after revoke: %+v, IsBot %v", info, a.IsBot(b.User))
	}
	if err := a.RevokeBot(b.User); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	tok2, err := a.NewBotToken(b.User)
	if err != nil {
		t.Fatal(err)
	}
	if tok2 == tok {
		t.Fatal("same token again")
	}
	if u, err := a.Authenticate(tok2); err != nil || u != b.User {
		t.Fatalf("new token: %d, %v", u, err)
	}
	key2, err := a.BotAppKey(b.User)
	if err != nil || bytes.Equal(key1, key2) {
		t.Fatalf("app key after a new token: %v (same as before: %v)", err, bytes.Equal(key1, key2))
	}
	// A new token replaces a live one at once.
	tok3, err := a.NewBotToken(b.User)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(tok2); !errors.Is(err, ErrUnknownBotToken) {
		t.Fatalf("replaced token: %v", err)
	}
	if u, err := a.Authenticate(tok3); err != nil || u != b.User {
		t.Fatalf("newest token: %d, %v", u, err)
	}
	person := mustLogin(t, a, "+441234567890", "phone", acctT0)
	if err := a.RevokeBot(person.User); !errors.Is(err, ErrNotBot) {
		t.Fatalf("RevokeBot of a person = %v", err)
	}
	if _, err := a.NewBotToken(person.User); !errors.Is(err, ErrNotBot) {
		t.Fatalf("NewBotToken of a person = %v", err)
	}
}

func TestBotDurableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenAccounts(dir, AccountsOptions{Key: acctTestKey, UserBase: 1000})
	if err != nil {
		t.Fatal(err)
	}
	b1, tok1 := mustCreateBot(t, a, "One", "one_bot")
	b2, tok2 := mustCreateBot(t, a, "Two", "")
	cmds := []BotCommand{{Name: "start", Description: "Start"}, {Name: "help_me", Description: "Помощь"}}
	if err := a.SetBotCommands(b1.User, cmds); err != nil {
		t.Fatal(err)
	}
	if err := a.SetBotApp(b1.User, "https://app.example/launch?x=1"); err != nil {
		t.Fatal(err)
	}
	if err := a.SetBotDescription(b1.User, "Line one\nline two"); err != nil {
		t.Fatal(err)
	}
	if err := a.RevokeBot(b2.User); err != nil {
		t.Fatal(err)
	}
	key1, _ := a.BotAppKey(b1.User)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(tok1); !errors.Is(err, ErrAccountsClosed) {
		t.Fatalf("Authenticate after Close = %v", err)
	}
	if _, _, err := a.CreateBot("x", ""); !errors.Is(err, ErrAccountsClosed) {
		t.Fatalf("CreateBot after Close = %v", err)
	}
	if a.IsBot(b1.User) || a.Bots() != nil {
		t.Fatal("bots visible after Close")
	}

	a = openTestAccounts(t, dir, AccountsOptions{UserBase: 1000})
	if u, err := a.Authenticate(tok1); err != nil || u != b1.User {
		t.Fatalf("token after reopen: %d, %v", u, err)
	}
	if _, err := a.Authenticate(tok2); !errors.Is(err, ErrUnknownBotToken) {
		t.Fatalf("revoked token after reopen: %v", err)
	}
	got, err := a.BotInfo(b1.User)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "One" || got.Username != "one_bot" || got.AppURL != "https://app.example/launch?x=1" ||
		got.Description != "Line one\nline two" || !slices.Equal(got.Commands, cmds) || !got.Created.Equal(b1.Created) || got.Revoked {
		t.Fatalf("after reopen: %+v", got)
	}
	if key, err := a.BotAppKey(b1.User); err != nil || !bytes.Equal(key, key1) {
		t.Fatalf("app key after reopen: %v", err)
	}
	if info, _ := a.BotInfo(b2.User); !info.Revoked {
		t.Fatalf("revoked bot after reopen: %+v", info)
	}
	all := a.Bots()
	if len(all) != 2 || all[0].User != b1.User || all[1].User != b2.User {
		t.Fatalf("Bots = %+v", all)
	}
	// Ids are never reused: the next account, bot or person, is past both.
	b3, _ := mustCreateBot(t, a, "Three", "")
	p := mustLogin(t, a, "+441234567890", "phone", acctT0)
	if b3.User <= b2.User || p.User <= b3.User {
		t.Fatalf("ids after reopen: bots %d %d %d, person %d", b1.User, b2.User, b3.User, p.User)
	}
	// The username stays taken.
	if _, _, err := a.CreateBot("Again", "ONE_BOT"); !errors.Is(err, ErrBotUsernameTaken) {
		t.Fatalf("taken username after reopen: %v", err)
	}
}

func TestBotUsernameUnique(t *testing.T) {
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{})
	mustCreateBot(t, a, "A", "news_bot")
	for _, u := range []string{"news_bot", "News_Bot", "NEWS_BOT"} {
		if _, _, err := a.CreateBot("B", u); !errors.Is(err, ErrBotUsernameTaken) {
			t.Fatalf("CreateBot with %q = %v", u, err)
		}
	}
	// Bots without a username do not collide.
	mustCreateBot(t, a, "C", "")
	mustCreateBot(t, a, "D", "")
	if n := len(a.Bots()); n != 3 {
		t.Fatalf("%d bots, want 3", n)
	}
}

func TestBotInvalidInput(t *testing.T) {
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{})
	for _, tc := range []struct {
		name, username string
		want           error
	}{
		{"", "", ErrBotName},
		{"   ", "", ErrBotName},
		{strings.Repeat("я", 65), "", ErrBotName},
		{"a\x00b", "", ErrBotName},
		{"a\u202eb", "", ErrBotName},
		{"ok", "ab", ErrBotUsername},
		{"ok", "bo", ErrBotUsername},
		{"ok", "newsbo", ErrBotUsername},
		{"ok", "news-bot", ErrBotUsername},
		{"ok", "новостиbot", ErrBotUsername},
		{"ok", strings.Repeat("a", 30) + "bot", ErrBotUsername},
	} {
		if _, _, err := a.CreateBot(tc.name, tc.username); !errors.Is(err, tc.want) {
			t.Errorf("CreateBot(%q, %q) = %v, want %v", tc.name, tc.username, err, tc.want)
		}
	}
	if len(a.Bots()) != 0 {
		t.Fatal("an invalid CreateBot made a bot")
	}
	// The limits themselves pass.
	mustCreateBot(t, a, strings.Repeat("я", 64), strings.Repeat("a", 29)+"BoT")
	b, _ := mustCreateBot(t, a, "x", "bot")

	cmd := func(name, desc string) BotCommand { return BotCommand{Name: name, Description: desc} }
	many := make([]BotCommand, MaxBotCommands+1)
	for i := range many {
		many[i] = cmd("c"+strings.Repeat("x", i), "d")
	}
	for _, cmds := range [][]BotCommand{
		many,
		{cmd("", "d")},
		{cmd("Start", "d")},
		{cmd("st-art", "d")},
		{cmd(strings.Repeat("a", 65), "d")},
		{cmd("a", "")},
		{cmd("a", strings.Repeat("я", 257))},
		{cmd("a", "d\x01")},
		{cmd("a", "d"), cmd("a", "e")},
	} {
		if err := a.SetBotCommands(b.User, cmds); !errors.Is(err, ErrBotCommands) {
			t.Errorf("SetBotCommands(%d commands, first %+v) = %v", len(cmds), cmds[0], err)
		}
	}
	if err := a.SetBotCommands(b.User, many[:MaxBotCommands]); err != nil {
		t.Fatalf("32 commands: %v", err)
	}
	if err := a.SetBotCommands(b.User, []BotCommand{cmd(strings.Repeat("a", 64), strings.Repeat("я", 256))}); err != nil {
		t.Fatalf("longest command: %v", err)
	}
	if err := a.SetBotCommands(b.User, nil); err != nil {
		t.Fatal(err)
	}
	if info, _ := a.BotInfo(b.User); info.Commands != nil {
		t.Fatalf("commands after delete: %+v", info.Commands)
	}

	for _, u := range []string{
		"http://app.example/", "ftp://app.example/", "https://", "https:///path", "app.example",
		"https://user:pw@app.example/", "https://app.example/" + strings.Repeat("a", MaxBotAppURL), "https://app.example/\x7f",
		"javascript:alert(1)",
	} {
		if err := a.SetBotApp(b.User, u); !errors.Is(err, ErrBotAppURL) {
			t.Errorf("SetBotApp(%.40q) = %v", u, err)
		}
	}
	if err := a.SetBotApp(b.User, "https://app.example:8443/p"); err != nil {
		t.Fatal(err)
	}
	if err := a.SetBotApp(b.User, ""); err != nil {
		t.Fatal(err)
	}
	if info, _ := a.BotInfo(b.User); info.AppURL != "" {
		t.Fatalf("app URL after clear: %q", info.AppURL)
	}
	if err := a.SetBotDescription(b.User, strings.Repeat("я", MaxBotDescription+1)); !errors.Is(err, ErrBotDescription) {
		t.Fatalf("long description: %v", err)
	}
	if err := a.SetBotDescription(b.User, "tab\there"); !errors.Is(err, ErrBotDescription) {
		t.Fatalf("description with a tab: %v", err)
	}
	if err := a.SetBotApp(7, "https://app.example/"); !errors.Is(err, ErrNotBot) {
		t.Fatalf("SetBotApp of no bot = %v", err)
	}

	// UpdateBot is all or nothing.
	desc, bad := "new", "http://x/"
	if _, err := a.UpdateBot(b.User, BotUpdate{Description: &desc, AppURL: &bad}); !errors.Is(err, ErrBotAppURL) {
		t.Fatalf("UpdateBot with a bad URL = %v", err)
	}
	if info, _ := a.BotInfo(b.User); info.Description != "" {
		t.Fatalf("a failed UpdateBot changed the description: %q", info.Description)
	}
}

// The token, its hash and the mini-app key are never on disk in the
// clear, nor is the bot's name.
func TestBotSecretsNotInClear(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenAccounts(dir, AccountsOptions{Key: acctTestKey})
	if err != nil {
		t.Fatal(err)
	}
	b, tok := mustCreateBot(t, a, "Secretive Name", "secretive_bot")
	key, _ := a.BotAppKey(b.User)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte(tok))
	needles := [][]byte{[]byte(tok), h[:], key, []byte("Secretive Name"), []byte("secretive_bot")}
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(data, n) {
				t.Errorf("%s holds %q in the clear", filepath.Base(path), n)
			}
		}
		return nil
	})
}

func TestBotConcurrentCreates(t *testing.T) {
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{})
	const n = 16
	errs := make(chan error, n)
	for range n {
		go func() {
			_, _, err := a.CreateBot("bot", "same_bot")
			errs <- err
		}()
	}
	ok := 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			ok++
		case !errors.Is(err, ErrBotUsernameTaken):
			t.Fatal(err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d bots got one username", ok)
	}
}

func BenchmarkBotAuthenticate(b *testing.B) {
	a, err := OpenAccounts(b.TempDir(), AccountsOptions{Key: acctTestKey})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	var toks []string
	for range 100 {
		_, tok, err := a.CreateBot("bench", "")
		if err != nil {
			b.Fatal(err)
		}
		toks = append(toks, tok)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := a.Authenticate(toks[i%len(toks)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// Readers see each token change whole: a token authenticates as its bot
// or not at all, while tokens are replaced under them.
func TestBotAuthenticateDuringRotation(t *testing.T) {
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{})
	b, tok := mustCreateBot(t, a, "Rot", "")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			if _, err := a.NewBotToken(b.User); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for {
		select {
		case <-done:
			if _, err := a.Authenticate(tok); !errors.Is(err, ErrUnknownBotToken) {
				t.Fatalf("the first token after 20 rotations: %v", err)
			}
			return
		default:
		}
		if u, err := a.Authenticate(tok); err == nil && u != b.User {
			t.Fatalf("token of %d authenticated as %d", b.User, u)
		}
		a.IsBot(b.User)
		a.Bots()
	}
}
