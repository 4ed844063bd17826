package botapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMAXSDK drives MAX's official SDK against the Server over the fake
// backend (testdata/sdk.cjs): every call the node serves must come back
// as the SDK expects, and the Bot's polling loop must answer a message.
// It runs when GONETS_MAX_SDK names a node_modules directory holding
// @maxhub/max-bot-api and node is on the PATH (the end-to-end tests
// against a real node are the tools package's).
func TestMAXSDK(t *testing.T) {
	sdk := os.Getenv("GONETS_MAX_SDK")
	if sdk == "" {
		t.Skip("GONETS_MAX_SDK is not set")
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	f := &fakeBackend{pollOnce: true}
	who := User{UserID: 5, FirstName: "Ann", Name: "Ann"}
	f.updates = UpdateList{Marker: 2, Updates: []Update{{UpdateType: "message_created", Timestamp: 1,
		Message: &Message{Sender: &who, Recipient: Recipient{ChatID: 7, ChatType: "dialog"}, Timestamp: 1,
			Body: MessageBody{Mid: "mid.7.3", Seq: 3, Text: "hello"}}}}}
	s := New(Options{Backend: f, Log: slog.New(slog.DiscardHandler), RateLimit: 1000})
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer s.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	script, _ := filepath.Abs("testdata/sdk.cjs")
	cmd := exec.CommandContext(ctx, nodeBin, script)
	cmd.Env = append(os.Environ(), "MAX_SDK="+sdk, "MAX_TOKEN="+testToken, "MAX_BASE_URL="+srv.URL+"/")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	defer func() {
		if t.Failed() {
			t.Logf("the SDK's calls:\n%s", stdout)
		}
	}()
	if err != nil {
		t.Fatalf("node: %v\n%s\n%s", err, stdout, stderr.String())
	}
	results := map[string]json.RawMessage{}
	errs := map[string]struct {
		Status int
		Code   string
	}{}
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Call   string
			Result json.RawMessage
			Error  *struct {
				Status int
				Code   string
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if line.Error != nil {
			errs[line.Call] = *line.Error
		} else {
			results[line.Call] = line.Result
		}
	}
	for _, name := range []string{"getMyInfo", "setMyCommands", "deleteMyCommands", "getAllChats", "getChat", "editChatInfo",
		"sendAction", "getChatMembers", "addChatMembers", "removeChatMember", "getChatMembership", "getChatAdmins", "leaveChat",
		"sendMessageToChat", "sendMessageToUser", "getMessages", "getMessagesByID", "getMessage", "editMessage", "deleteMessage",
		"answerOnCallback", "getUploadUrl", "getSubscriptions", "subscribe", "unsubscribe", "reply"} {
		if _, ok := results[name]; !ok {
			t.Errorf("%s: no result (error %+v)", name, errs[name])
		}
	}
	if e := errs["tooLong"]; e.Status != 400 || e.Code != "text.too.long" {
		t.Errorf("tooLong: %+v", e)
	}
	if got := string(results["sendMessageToChat"]); !strings.Contains(got, `"mid":"mid.7.1"`) {
		t.Errorf("sendMessageToChat returned %s, want the message", got)
	}
	if got := string(results["reply"]); !strings.Contains(got, `"text":"echo: hello"`) {
		t.Errorf("reply = %s", got)
	}
	if got := string(results["getSubscriptions"]); got != "[]" {
		t.Errorf("getSubscriptions = %s", got)
	}
	// The reply went to the dialog's chat_id, from the polling loop that
	// started with GET /me and GET /subscriptions and sent no marker.
	f.mu.Lock()
	calls := strings.Join(f.calls, "\n")
	f.mu.Unlock()
	for _, want := range []string{
		"Send bot=42 chat=7 user=0 text=hi atts=1",
		"Updates bot=42 marker=0 limit=100 types=[] timeout=30s",
		"Send bot=42 chat=7 user=0 text=echo: hello atts=0",
		"Members bot=42 chat=7 users=[1 2] marker=0 count=20",
		"Messages bot=42 chat=7 mids=[mid.7.1 mid.7.2] from=0 to=0 count=50",
	} {
		if !strings.Contains(calls, want) {
			t.Errorf("no call %q in\n%s", want, calls)
		}
	}
}
