package tools

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gonets/gonets/identity"
)

// botAdminNode is a node's private listener in small: accounts in a data
// directory, its admin token, and the admin endpoint mounted under
// /admin/ beside /metrics as the node mounts it.
type botAdminNode struct {
	dir      string
	accounts *identity.Accounts
	token    string
	url      string
}

func newBotAdminNode(t *testing.T) *botAdminNode {
	t.Helper()
	dir := t.TempDir()
	a, err := identity.OpenAccounts(filepath.Join(dir, "identity"), identity.AccountsOptions{Key: bytes.Repeat([]byte{3}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	tok, err := loadOrCreateAdminToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("/admin/", newBotAdminHandler(a, tok))
	srv := httptest.NewServer(mux) // 127.0.0.1
	t.Cleanup(srv.Close)
	return &botAdminNode{dir: dir, accounts: a, token: tok, url: srv.URL}
}

// call sends body (a string, "" for none) with the bearer token tok
// ("" for no header) and returns the status and the decoded JSON answer.
func (n *botAdminNode) call(t *testing.T, method, path, tok, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, n.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, body %q", method, path, ct, raw)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: %v: %q", method, path, err, raw)
	}
	return resp.StatusCode, m
}

func TestLoadOrCreateAdminToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tok, err := loadOrCreateAdminToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 43 {
		t.Fatalf("token %q", tok)
	}
	path := filepath.Join(dir, adminTokenFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v", err, fi.Mode())
	}
	again, err := loadOrCreateAdminToken(dir)
	if err != nil || again != tok {
		t.Fatalf("second start: %q, %v; want the same token", again, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp*")); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateAdminToken(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a token others may read: %v", err)
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o600)
	if _, err := loadOrCreateAdminToken(dir); err == nil {
		t.Fatal("a short token was accepted")
	}
}

func TestBotAdminAuth(t *testing.T) {
	n := newBotAdminNode(t)
	for _, tok := range []string{"", "wrong", n.token + "x", n.token[1:]} {
		code, m := n.call(t, "GET", "/admin/bots", tok, "")
		if code != http.StatusUnauthorized || m["code"] != "unauthorized" {
			t.Fatalf("token %q: %d %v", tok, code, m)
		}
	}
	// Unauthenticated, even unknown paths say only 401.
	if code, _ := n.call(t, "POST", "/admin/nothing", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("unknown path without a token: %d", code)
	}
	req, _ := http.NewRequest("GET", n.url+"/admin/bots", nil)
	req.Header.Set("Authorization", "bearer "+n.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("lower-case bearer: %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}

	// An empty admin token lets nobody in.
	h := newBotAdminHandler(n.accounts, "")
	rec := httptest.NewRecorder()
	req = httptest.NewRequest("GET", "/admin/bots", nil)
	req.Header.Set("Authorization", "Bearer ")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("empty admin token: %d", rec.Code)
	}
}

func TestBotAdminLifecycle(t *testing.T) {
	n := newBotAdminNode(t)
	code, m := n.call(t, "POST", "/admin/bots", n.token, `{"name":"Shop","username":"shop_bot","app_url":"https://shop.example/app"}`)
	if code != http.StatusCreated || len(m) != 2 {
		t.Fatalf("create: %d %v", code, m)
	}
	tok := m["token"].(string)
	user, err := n.accounts.Authenticate(tok)
	if err != nil || float64(user) != m["user_id"].(float64) {
		t.Fatalf("created token: %d, %v; answer %v", user, err, m)
	}
	id := "/admin/bots/" + botIDPath(m["user_id"])
	if info, _ := n.accounts.BotInfo(user); info.AppURL != "https://shop.example/app" || info.Username != "shop_bot" {
		t.Fatalf("created bot: %+v", info)
	}

	code, m = n.call(t, "GET", "/admin/bots", n.token, "")
	bots, _ := m["bots"].([]any)
	if code != http.StatusOK || len(bots) != 1 {
		t.Fatalf("list: %d %v", code, m)
	}
	if b := bots[0].(map[string]any); b["name"] != "Shop" || b["revoked"] != false || b["token"] != nil {
		t.Fatalf("listed bot: %v", b)
	}

	code, m = n.call(t, "PATCH", id, n.token, `{"description":"We sell things","app_url":""}`)
	if code != http.StatusOK || m["description"] != "We sell things" || m["app_url"] != nil {
		t.Fatalf("patch: %d %v", code, m)
	}
	code, m = n.call(t, "GET", id, n.token, "")
	if code != http.StatusOK || m["description"] != "We sell things" {
		t.Fatalf("get: %d %v", code, m)
	}

	code, m = n.call(t, "POST", id+"/revoke", n.token, "")
	if code != http.StatusOK || m["revoked"] != true {
		t.Fatalf("revoke: %d %v", code, m)
	}
	if _, err := n.accounts.Authenticate(tok); err == nil {
		t.Fatal("revoked token still authenticates")
	}
	code, m = n.call(t, "POST", id+"/token", n.token, "")
	if code != http.StatusOK || m["token"] == tok || m["user_id"] == nil {
		t.Fatalf("new token: %d %v", code, m)
	}
	if u, err := n.accounts.Authenticate(m["token"].(string)); err != nil || u != user {
		t.Fatalf("new token: %d, %v", u, err)
	}
}

func TestBotAdminRefusals(t *testing.T) {
	n := newBotAdminNode(t)
	code, m := n.call(t, "POST", "/admin/bots", n.token, `{"name":"One","username":"one_bot"}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, m)
	}
	id := "/admin/bots/" + botIDPath(m["user_id"])
	f := func(method, path, body string, wantStatus int, wantCode string) {
		t.Helper()
		code, m := n.call(t, method, path, n.token, body)
		if code != wantStatus || m["code"] != wantCode || m["message"] == "" {
			t.Fatalf("%s %s %s: %d %v; want %d %s", method, path, body, code, m, wantStatus, wantCode)
		}
	}
	f("POST", "/admin/bots", `{"name":"Two","username":"ONE_bot"}`, http.StatusConflict, "username_taken")
	f("POST", "/admin/bots", `{"name":""}`, http.StatusBadRequest, "bad_name")
	f("POST", "/admin/bots", `{"name":"x","username":"nope"}`, http.StatusBadRequest, "bad_username")
	f("POST", "/admin/bots", `{"name":"x","app_url":"http://plain.example/"}`, http.StatusBadRequest, "bad_app_url")
	f("POST", "/admin/bots", `{"name":"x","token":"mine"}`, http.StatusBadRequest, "bad_json")
	f("POST", "/admin/bots", `{"name":"x"} {"name":"y"}`, http.StatusBadRequest, "bad_json")
	f("POST", "/admin/bots", `not json`, http.StatusBadRequest, "bad_json")
	f("POST", "/admin/bots", `{"name":"`+strings.Repeat("a", maxBotAdminBody)+`"}`, http.StatusRequestEntityTooLarge, "body_too_large")
	f("DELETE", "/admin/bots", "", http.StatusMethodNotAllowed, "method_not_allowed")
	f("GET", id+"/revoke", "", http.StatusMethodNotAllowed, "method_not_allowed")
	f("PUT", id, "", http.StatusMethodNotAllowed, "method_not_allowed")
	f("PATCH", id, `{}`, http.StatusBadRequest, "bad_request")
	f("PATCH", id, `{"description":"a\u0000b"}`, http.StatusBadRequest, "bad_description")
	f("PATCH", id, `{"app_url":"https://user@x.example/"}`, http.StatusBadRequest, "bad_app_url")
	f("GET", "/admin/bots/99", "", http.StatusNotFound, "not_bot")
	f("POST", "/admin/bots/99/token", "", http.StatusNotFound, "not_bot")
	f("POST", "/admin/bots/abc/revoke", "", http.StatusBadRequest, "bad_id")
	f("GET", "/admin/bots/0", "", http.StatusBadRequest, "bad_id")
	f("GET", "/admin/other", "", http.StatusNotFound, "not_found")
	if len(n.accounts.Bots()) != 1 {
		t.Fatalf("refused requests made bots: %+v", n.accounts.Bots())
	}
	// After the accounts close, the endpoint says so.
	n.accounts.Close()
	f("POST", "/admin/bots", `{"name":"late"}`, http.StatusServiceUnavailable, "unavailable")
}

// botIDPath formats a user id decoded into any (a float64) as the
// integer a path takes.
func botIDPath(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
