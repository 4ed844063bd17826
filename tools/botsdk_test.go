package tools

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/broker/wire"
)

// sdkDir returns the folder of the bots written with MAX's official SDK
// (bots/sdktest), skipping the test when its node_modules is not
// installed; .ci/run installs it (npm ci) and sets GONETS_MAX_SDK_REQUIRED,
// which makes a missing SDK a failure.
func sdkDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "bots", "sdktest"))
	if err != nil {
		t.Fatal(err)
	}
	_, errNode := exec.LookPath("node")
	_, errSDK := os.Stat(filepath.Join(dir, "node_modules", "@maxhub", "max-bot-api", "package.json"))
	if errNode != nil || errSDK != nil {
		if os.Getenv("GONETS_MAX_SDK_REQUIRED") != "" {
			t.Fatalf("MAX's SDK is required here: node: %v, SDK: %v (cd bots/sdktest && npm ci)", errNode, errSDK)
		}
		t.Skip("MAX's bot SDK is not installed: cd bots/sdktest && npm ci")
	}
	return dir
}

// sdkBot is a running bot script; its JSON lines are collected.
type sdkBot struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []map[string]any
	stderr bytes.Buffer
	done   chan struct{}
}

func startSDKBot(t *testing.T, dir, script string, env ...string) *sdkBot {
	t.Helper()
	b := &sdkBot{t: t, done: make(chan struct{})}
	b.cmd = exec.Command("node", script)
	b.cmd.Dir = dir
	b.cmd.Env = append(os.Environ(), env...)
	b.cmd.Stderr = &b.stderr
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(b.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				b.mu.Lock()
				b.lines = append(b.lines, m)
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		b.cmd.Process.Signal(os.Interrupt)
		b.cmd.Process.Kill()
		<-b.done
		b.cmd.Wait()
		if t.Failed() {
			b.mu.Lock()
			t.Logf("%s said: %v\nstderr: %s", script, b.lines, b.stderr.String())
			b.mu.Unlock()
		}
	})
	return b
}

// wait waits for a line with key (and value, if not nil).
func (b *sdkBot) wait(key string, value any) map[string]any {
	b.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		for _, l := range b.lines {
			if v, ok := l[key]; ok && (value == nil || v == value) {
				b.mu.Unlock()
				return l
			}
		}
		b.mu.Unlock()
		select {
		case <-b.done:
			b.t.Fatalf("the bot exited waiting for %s=%v: %s", key, value, b.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	b.t.Fatalf("the bot never said %s=%v", key, value)
	return nil
}

// updates returns the update types the bot logged.
func (b *sdkBot) updates() map[string]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]bool{}
	for _, l := range b.lines {
		if u, ok := l["update"].(string); ok {
			out[u] = true
		}
	}
	return out
}

// botEvents reads a client's events into a channel of messages from
// sender and callback answers.
func nextBotMessage(t *testing.T, c *client.Client, sender uint64, text string) (client.Message, *wire.Content) {
	t.Helper()
	timeout := time.After(90 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatal("events closed")
			}
			if ev.Kind != client.EventMessage || ev.Message.Sender != sender {
				continue
			}
			var ct wire.Content
			switch ev.Message.Kind {
			case wire.MsgKind_MSG_KIND_TEXT:
				ct.Text = string(ev.Message.Body)
			case wire.MsgKind_MSG_KIND_MEDIA:
				if err := proto.Unmarshal(ev.Message.Body, &ct); err != nil {
					t.Fatal(err)
				}
			default:
				continue
			}
			if ct.Text == text {
				return ev.Message, &ct
			}
		case <-timeout:
			t.Fatalf("no %q from %d", text, sender)
		}
	}
}

func createBotCLI(t *testing.T, n *node, name string) (uint64, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if rc := runBot([]string{"create", "--name", name, "--data", n.dataDir, "--admin", "http://" + n.httpLn.Addr().String()}, &out, &errb); rc != 0 {
		t.Fatalf("gonets bot create: %d %s", rc, errb.String())
	}
	var created struct {
		UserID uint64 `json:"user_id"`
		Token  string `json:"token"`
	}
	if err := json.Unmarshal(out.Bytes(), &created); err != nil || created.UserID == 0 || created.Token == "" {
		t.Fatalf("gonets bot create printed %q: %v", out.String(), err)
	}
	return created.UserID, created.Token
}

// TestBotSDK runs bots written with MAX's official SDK against a node,
// with only their base URL changed: a long-polling bot answers a user's
// messages and button, uploads a photo (multipart) and a 50 MB file
// (Content-Range chunks) that the user receives and downloads, and sees
// every update type the node produces; a webhook bot gets its updates
// with its secret.
func TestBotSDK(t *testing.T) {
	dir := sdkDir(t)
	cfg := testConfig(t)
	cfg.Bots.WebhookAllowPrivate = true
	hookDir := t.TempDir()
	if _, _, err := nodecert.LoadOrCreate(hookDir, nil); err != nil {
		t.Fatal(err)
	}
	hookCert, hookKey := filepath.Join(hookDir, nodecert.CertFile), filepath.Join(hookDir, nodecert.KeyFile)
	cfg.Bots.WebhookRoots = hookCert
	s := startStreamNode(t, cfg)
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	botID, botToken := createBotCLI(t, s.n, "Echo")
	work := t.TempDir()
	photo := filepath.Join(work, "photo.png")
	img := image.NewRGBA(image.Rect(0, 0, 640, 480))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	img.Set(0, 0, color.White)
	var pb bytes.Buffer
	if err := png.Encode(&pb, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(photo, pb.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(work, "big.bin")
	bigData := make([]byte, 50<<20)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(bigData)
	if err := os.WriteFile(big, bigData, 0o600); err != nil {
		t.Fatal(err)
	}
	bigSum := sha256.Sum256(bigData)
	bigData = nil

	env := []string{
		"MAX_BASE_URL=" + s.base + "/", "MAX_TOKEN=" + botToken,
		"NODE_EXTRA_CA_CERTS=" + filepath.Join(s.n.dataDir, nodecert.CertFile),
		"PHOTO=" + photo, "BIGFILE=" + big,
	}
	echo := startSDKBot(t, dir, "echo.mjs", env...)
	echo.wait("ready", float64(botID))

	const alice, bob = 9001, 9002
	o := client.Options{Fingerprint: s.n.fingerprint, DialTimeout: 5 * time.Second}
	a, err := client.Dial(ctx, s.n.quicLn.Addr().String(), s.token(alice), o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dm, err := a.CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{botID}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, dm.Chat, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	m, ct := nextBotMessage(t, a, botID, "echo: hello")
	if len(ct.GetKeyboard().GetRows()) != 1 || ct.Keyboard.Rows[0].Buttons[0].Payload != "yes" {
		t.Fatalf("the echo carries no button: %+v", ct)
	}
	if err := a.PressButton(ctx, dm.Chat, m.Seq, "yes"); err != nil {
		t.Fatal(err)
	}
	for ev := range a.Events() {
		if ev.Kind == client.EventCallbackAnswer {
			if ev.CallbackAnswer.Notification != "ok: yes" {
				t.Fatalf("answer %+v", ev.CallbackAnswer)
			}
			break
		}
	}

	// A photo, uploaded by the SDK as multipart.
	if _, err := a.Send(ctx, dm.Chat, []byte("photo")); err != nil {
		t.Fatal(err)
	}
	pm, pct := nextBotMessage(t, a, botID, "a photo")
	if len(pct.Attachments) != 1 || pct.Attachments[0].Type != wire.AttachmentType_ATTACHMENT_TYPE_PHOTO ||
		pct.Attachments[0].Width != 640 || pct.Attachments[0].Height != 480 || pct.Attachments[0].ThumbSha256 == "" {
		t.Fatalf("photo %+v", pct.Attachments)
	}
	var got bytes.Buffer
	if err := a.Download(ctx, dm.Chat, pm.Seq, pct.Attachments[0].Sha256, &got); err != nil || !bytes.Equal(got.Bytes(), pb.Bytes()) {
		t.Fatalf("photo download: %v (%d bytes)", err, got.Len())
	}

	// A 50 MB file, uploaded by the SDK in 64 KiB Content-Range chunks.
	if _, err := a.Send(ctx, dm.Chat, []byte("file")); err != nil {
		t.Fatal(err)
	}
	fm, fct := nextBotMessage(t, a, botID, "a file")
	if len(fct.Attachments) != 1 || fct.Attachments[0].Size != 50<<20 || fct.Attachments[0].Sha256 != hex.EncodeToString(bigSum[:]) {
		t.Fatalf("file %+v", fct.Attachments)
	}
	h := sha256.New()
	if err := a.Download(ctx, dm.Chat, fm.Seq, fct.Attachments[0].Sha256, h); err != nil || !bytes.Equal(h.Sum(nil), bigSum[:]) {
		t.Fatalf("file download: %v", err)
	}

	// And a user's gonets tail receives both files, and saves them.
	saveDir := t.TempDir()
	var tailOut, tailErr bytes.Buffer
	if rc := runTail([]string{"--server", s.n.quicLn.Addr().String(), "--token", s.token(alice), "--fingerprint", s.n.fingerprint,
		"--all", "--count", strconv.FormatUint(fm.Seq, 10), "--save", saveDir}, &tailOut, &tailErr); rc != 0 {
		t.Fatalf("gonets tail: %d %s", rc, tailErr.String())
	}
	saved := 0
	for _, line := range strings.Split(strings.TrimSpace(tailOut.String()), "\n") {
		var l messageLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("tail line %q: %v", line, err)
		}
		for _, at := range l.Attachments {
			f, err := os.Open(at.Saved)
			if err != nil {
				t.Fatalf("tail saved %+v: %v", at, err)
			}
			h := sha256.New()
			io.Copy(h, f)
			f.Close()
			if hex.EncodeToString(h.Sum(nil)) != at.SHA256 {
				t.Fatalf("tail saved %s with another content", at.Saved)
			}
			saved++
		}
	}
	if saved != 2 {
		t.Fatalf("tail saved %d files:\n%s", saved, tailOut.String())
	}

	// Every update type: edits, deletes, a group's membership and title.
	if _, err := a.Edit(ctx, dm.Chat, 2, []byte("hello!")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Delete(ctx, dm.Chat, 2); err != nil {
		t.Fatal(err)
	}
	g, err := a.CreateChat(ctx, wire.ChatKind_CHAT_KIND_GROUP, []uint64{botID}, "Team")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.AddMembers(ctx, g.Chat, []uint64{bob}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetTitle(ctx, g.Chat, "Team 2"); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveMember(ctx, g.Chat, bob); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveMember(ctx, g.Chat, botID); err != nil {
		t.Fatal(err)
	}
	want := []string{"message_created", "message_edited", "message_removed", "message_callback", "bot_started",
		"bot_added", "bot_removed", "user_added", "user_removed", "chat_title_changed"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		seen := echo.updates()
		var missing []string
		for _, w := range want {
			if !seen[w] {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bot never got %v", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The same bot over a webhook: the SDK's handler checks the secret.
	echo.cmd.Process.Signal(os.Interrupt)
	echo.cmd.Process.Kill()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	hook := startSDKBot(t, dir, "webhook.mjs", append(env, "HOOK_PORT="+strconv.Itoa(port), "HOOK_SECRET=s3cret-hook",
		"HOOK_CERT="+hookCert, "HOOK_KEY="+hookKey)...)
	hook.wait("ready", true)
	if _, err := a.Send(ctx, dm.Chat, []byte("via hook")); err != nil {
		t.Fatal(err)
	}
	nextBotMessage(t, a, botID, "hook: via hook")
	// A delivery without the secret is refused by the SDK's handler.
	roots, err := webhookRoots(hookCert)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	forged := `{"update_type":"message_created","timestamp":1,"message":{"recipient":{"chat_id":1,"chat_type":"dialog"},"timestamp":1,"body":{"mid":"mid.1.1","seq":1,"text":"forged"}}}`
	req, err := http.NewRequestWithContext(ctx, "POST", "https://127.0.0.1:"+strconv.Itoa(port)+"/hook", strings.NewReader(forged))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a delivery without the secret: %d", resp.StatusCode)
	}
}

// Revoking a bot's token, or replacing it, removes its webhooks: a
// leaked token must not leave one delivering.
func TestBotRevokeDropsWebhooks(t *testing.T) {
	cfg := testConfig(t)
	cfg.Bots.WebhookAllowPrivate = true
	s := startStreamNode(t, cfg)
	defer s.stop()
	bot, tok := createBotCLI(t, s.n, "Hooked")
	subscribe := func(tok string) int {
		req, err := http.NewRequest("POST", s.base+"/subscriptions", strings.NewReader(`{"url":"https://127.0.0.1:9/hook","secret":"s3cret"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	admin := func(args ...string) string {
		var out, errb bytes.Buffer
		if rc := runBot(append(args, "--data", s.n.dataDir, "--admin", "http://"+s.n.httpLn.Addr().String()), &out, &errb); rc != 0 {
			t.Fatalf("gonets bot %v: %d %s", args, rc, errb.String())
		}
		return out.String()
	}
	if code := subscribe(tok); code != http.StatusOK || len(s.n.bots.subs.List(int64(bot))) != 1 {
		t.Fatalf("subscribe: %d", code)
	}
	admin("token", strconv.FormatUint(bot, 10))
	if n := len(s.n.bots.subs.List(int64(bot))); n != 0 {
		t.Fatalf("%d webhooks after a new token", n)
	}
	if code := subscribe(tok); code != http.StatusUnauthorized {
		t.Fatalf("the old token subscribed: %d", code)
	}
}
