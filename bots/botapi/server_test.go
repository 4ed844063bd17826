package botapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newTestServer returns a Server over a fake backend with a generous
// rate limit.
func newTestServer(t *testing.T) (*Server, *fakeBackend) {
	t.Helper()
	f := &fakeBackend{}
	s := New(Options{Backend: f, RateLimit: 1e6, Log: slog.New(slog.DiscardHandler)})
	return s, f
}

// do runs one request against h with the test token.
func do(t *testing.T, h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	return doAuth(t, h, method, target, body, testToken)
}

// doAuth runs one request against h with an Authorization header (none
// when auth is "").
func doAuth(t *testing.T, h http.Handler, method, target, body, auth string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// wantError checks that w is an error answer with status and code.
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d; body %s", w.Code, status, w.Body)
	}
	var e Error
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	if e.Code != code || e.Message == "" {
		t.Fatalf("error = %+v, want code %q and a message", e, code)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q", ct)
	}
}

// TestRoutes runs each route's happy path: the status, the Backend call
// it makes and the JSON the SDK reads.
func TestRoutes(t *testing.T) {
	tests := []struct {
		method, target, body string
		call                 string // the Backend call made
		want                 string // the answer, compacted JSON
	}{
		{"GET", "/me", "", "Me bot=42",
			`{"user_id":42,"first_name":"Echo","name":"Echo","username":"echo_bot","is_bot":true,"last_activity_time":0}`},
		{"PATCH", "/me/commands", `{"commands":[{"name":"start","description":"Start"},{"name":"help"}]}`,
			"SetCommands bot=42 cmds=[start help] nil=false",
			`{"commands":[{"name":"start","description":"Start"},{"name":"help"}]}`},
		{"PATCH", "/me/commands", `{"commands":[]}`, "SetCommands bot=42 cmds=[] nil=true", `{"commands":[]}`},
		{"GET", "/chats", "", "Chats bot=42 marker=0 count=50",
			`{"chats":[{"chat_id":7,"type":"chat","status":"active","title":"Group","icon":null,"last_event_time":0,"participants_count":0,"is_public":false}],"marker":null}`},
		{"GET", "/chats?count=10&marker=5", "", "Chats bot=42 marker=5 count=10", ""},
		{"GET", "/chats/7", "", "Chat bot=42 chat=7",
			`{"chat_id":7,"type":"chat","status":"active","title":null,"icon":null,"last_event_time":0,"participants_count":0,"is_public":false}`},
		{"PATCH", "/chats/7", `{"title":"New"}`, "EditChat bot=42 chat=7 title=New", ""},
		{"POST", "/chats/7/actions", `{"action":"typing_on"}`, "Action bot=42 chat=7 action=typing_on", `{"success":true}`},
		{"GET", "/chats/7/members?user_ids=1,2,2&count=5", "", "Members bot=42 chat=7 users=[1 2] marker=0 count=5", ""},
		{"GET", "/chats/7/members", "", "Members bot=42 chat=7 users=[] marker=0 count=20", ""},
		{"POST", "/chats/7/members", `{"user_ids":[3,4]}`, "AddMembers bot=42 chat=7 users=[3 4]", `{"success":true}`},
		{"DELETE", "/chats/7/members?user_id=3&block=true", "", "RemoveMember bot=42 chat=7 user=3", `{"success":true}`},
		{"GET", "/chats/7/members/me", "", "Membership bot=42 chat=7", ""},
		{"DELETE", "/chats/7/members/me", "", "Leave bot=42 chat=7", `{"success":true}`},
		{"GET", "/chats/7/members/admins", "", "Admins bot=42 chat=7", `{"members":[]}`},
		{"POST", "/messages?chat_id=7", `{"text":"hi","format":"markdown","notify":false}`, "Send bot=42 chat=7 user=0 text=hi atts=0",
			`{"message":{"recipient":{"chat_id":99,"chat_type":"chat","user_id":null},"timestamp":1000,"body":{"mid":"mid.7.1","seq":1,"text":"hi","attachments":null}}}`},
		{"POST", "/messages?user_id=5&disable_link_preview=true", `{"text":"dm"}`, "Send bot=42 chat=0 user=5 text=dm atts=0", ""},
		{"POST", "/messages?chat_id=7", `{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"callback","text":"Yes","payload":"y","intent":"positive"},{"type":"link","text":"Site","url":"https://example.org/"}]]}}]}`,
			"Send bot=42 chat=7 user=0 text=<nil> atts=1", ""},
		{"PUT", "/messages?message_id=mid.7.1", `{"text":"edited"}`, "Edit bot=42 mid=mid.7.1 text=edited", `{"success":true}`},
		{"DELETE", "/messages?message_id=mid.7.1", "", "Delete bot=42 mid=mid.7.1", `{"success":true}`},
		{"GET", "/messages?chat_id=7&from=10&to=20&count=3", "", "Messages bot=42 chat=7 mids=[] from=10 to=20 count=3", `{"messages":[]}`},
		{"GET", "/messages?message_ids=mid.7.1,mid.7.2", "", "Messages bot=42 chat=0 mids=[mid.7.1 mid.7.2] from=0 to=0 count=50", ""},
		{"GET", "/messages/mid.7.1", "", "Message bot=42 mid=mid.7.1", ""},
		{"POST", "/answers?callback_id=cb1", `{"notification":"ok"}`, "Answer bot=42 id=cb1 text=- note=ok", `{"success":true}`},
		{"POST", "/answers?callback_id=cb1", `{"message":{"text":"done"}}`, "Answer bot=42 id=cb1 text=done note=", `{"success":true}`},
		{"POST", "/uploads?type=image", "", "NewUpload bot=42 type=image", `{"url":"https://node.example/media/up/abc","token":"upl-abc"}`},
		{"GET", "/updates", "", "Updates bot=42 marker=0 limit=100 types=[] timeout=30s", `{"updates":[],"marker":1}`},
		{"GET", "/updates?marker=9&limit=5&timeout=0&types=message_created,bot_started", "",
			"Updates bot=42 marker=9 limit=5 types=[message_created bot_started] timeout=0s", `{"updates":[],"marker":9}`},
		{"GET", "/subscriptions", "", "Subscriptions bot=42", `{"subscriptions":[]}`},
		{"POST", "/subscriptions", `{"url":"https://bot.example/hook","secret":"s3cr3t","update_types":["message_created"]}`,
			"Subscribe bot=42 url=https://bot.example/hook secret=s3cr3t types=[message_created]", `{"success":true}`},
		{"DELETE", "/subscriptions?url=https://bot.example/hook", "", "Unsubscribe bot=42 url=https://bot.example/hook", `{"success":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			s, f := newTestServer(t)
			w := do(t, s, tt.method, tt.target, tt.body)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, body %s", w.Code, w.Body)
			}
			if got := f.last(); got != tt.call {
				t.Errorf("call = %q, want %q", got, tt.call)
			}
			if !json.Valid(w.Body.Bytes()) {
				t.Fatalf("body is not JSON: %s", w.Body)
			}
			if tt.want != "" && strings.TrimSpace(w.Body.String()) != tt.want {
				t.Errorf("body = %s\nwant   %s", w.Body, tt.want)
			}
		})
	}
}

// TestListsNeverNull checks that lists the SDK maps over are arrays even
// when the backend returns nil, and that next-page markers show.
func TestListsNeverNull(t *testing.T) {
	s, f := newTestServer(t)
	f.subs = []Subscription{{URL: "https://bot.example/h", Time: 5}}
	f.next = 77
	f.failed = []int64{4}
	for target, want := range map[string]string{
		"/subscriptions":   `{"subscriptions":[{"url":"https://bot.example/h","time":5,"update_types":[]}]}`,
		"/chats/7/members": `{"members":[{"user_id":5,"first_name":"","name":"","username":null,"is_bot":false,"last_activity_time":0,"last_access_time":0,"is_owner":false,"is_admin":false,"join_time":0,"permissions":null}],"marker":77}`,
	} {
		if w := do(t, s, "GET", target, ""); strings.TrimSpace(w.Body.String()) != want {
			t.Errorf("GET %s = %s\nwant %s", target, w.Body, want)
		}
	}
	w := do(t, s, "GET", "/chats", "")
	if !strings.Contains(w.Body.String(), `"marker":77`) {
		t.Errorf("GET /chats = %s, want marker 77", w.Body)
	}
	w = do(t, s, "POST", "/chats/7/members", `{"user_ids":[3,4]}`)
	if want := `{"success":true,"message":"some users could not be added","failed_user_ids":[4]}`; strings.TrimSpace(w.Body.String()) != want {
		t.Errorf("POST members = %s, want %s", w.Body, want)
	}
}

// TestUpdatesMarker checks that the backend's updates and marker are
// passed through.
func TestUpdatesMarker(t *testing.T) {
	s, f := newTestServer(t)
	f.updates = UpdateList{Updates: []Update{{UpdateType: "bot_started", Timestamp: 3, ChatID: 7}}, Marker: 12}
	w := do(t, s, "GET", "/updates?marker=11", "")
	want := `{"updates":[{"update_type":"bot_started","timestamp":3,"chat_id":7}],"marker":12}`
	if got := strings.TrimSpace(w.Body.String()); got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
}

// TestAuth checks the Authorization header's forms and refusals.
func TestAuth(t *testing.T) {
	s, f := newTestServer(t)
	for _, auth := range []string{testToken, "Bearer " + testToken, "bearer  " + testToken} {
		if w := doAuth(t, s, "GET", "/me", "", auth); w.Code != http.StatusOK {
			t.Errorf("Authorization %q: status %d", auth, w.Code)
		}
	}
	for _, auth := range []string{"", "nope", "Bearer ", "Bearer nope", strings.Repeat("x", 600), "tok\x01"} {
		w := doAuth(t, s, "GET", "/me", "", auth)
		wantError(t, w, http.StatusUnauthorized, "verify.token")
	}
	// The access_token query parameter is not accepted.
	wantError(t, doAuth(t, s, "GET", "/me?access_token="+testToken, "", ""), http.StatusUnauthorized, "verify.token")
	// A revoked token's requests reach nothing.
	f.calls = nil
	wantError(t, doAuth(t, s, "POST", "/messages?chat_id=7", `{"text":"x"}`, "Bearer revoked"), http.StatusUnauthorized, "verify.token")
	if len(f.calls) != 0 {
		t.Errorf("backend called for an unknown token: %v", f.calls)
	}
	// The backend failing to authenticate is the node's error.
	w := doAuth(t, s, "GET", "/me", "", "tok-broken")
	wantError(t, w, http.StatusInternalServerError, "internal")
}

// TestNotFoundAndMethods checks 404 for unknown paths and 405 for known
// paths with other methods, on the Server and on a mux it registered on.
func TestNotFoundAndMethods(t *testing.T) {
	s, _ := newTestServer(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/", NotFound)
	// The node's other handlers on the public listener.
	mux.HandleFunc("/media/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("media")) })
	for _, p := range []string{"/whip/", "/whep/", "/calls/demo", "/calls/demo/", "GET /.well-known/jwks.json"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {})
	}
	s.Register(mux)
	for name, h := range map[string]http.Handler{"server": s, "mux": mux} {
		t.Run(name, func(t *testing.T) {
			for _, p := range []string{"/", "/nope", "/me/", "/chats/7/pin", "/max/me", "/chats/7/members/admins/3"} {
				wantError(t, do(t, h, "GET", p, ""), http.StatusNotFound, "not.found")
			}
			for _, mt := range [][2]string{{"DELETE", "/me"}, {"POST", "/me"}, {"PUT", "/chats/7"}, {"GET", "/answers"},
				{"PATCH", "/messages"}, {"POST", "/updates"}, {"PUT", "/subscriptions"}, {"POST", "/chats/7/members/me"}} {
				w := do(t, h, mt[0], mt[1], "")
				wantError(t, w, http.StatusMethodNotAllowed, "method.not.allowed")
				if w.Header().Get("Allow") == "" {
					t.Errorf("%s %s: no Allow header", mt[0], mt[1])
				}
			}
			if w := do(t, h, "HEAD", "/me", ""); w.Code != http.StatusOK {
				t.Errorf("HEAD /me: %d", w.Code)
			}
		})
	}
	if w := do(t, mux, "GET", "/media/x", ""); w.Body.String() != "media" {
		t.Errorf("the node's /media/ is shadowed: %s", w.Body)
	}
}

// TestBadRequests checks the refusals of malformed paths, queries and
// bodies, before the backend is called.
func TestBadRequests(t *testing.T) {
	long := strings.Repeat("я", maxText+1)
	tests := []struct {
		method, target, body string
		status               int
		code                 string
	}{
		{"GET", "/chats/0", "", 400, "proto.payload"},
		{"GET", "/chats/-5", "", 400, "proto.payload"},
		{"GET", "/chats/abc", "", 400, "proto.payload"},
		{"GET", "/chats/99999999999999999999", "", 400, "proto.payload"},
		{"GET", "/chats?count=0", "", 400, "proto.payload"},
		{"GET", "/chats?count=101", "", 400, "proto.payload"},
		{"GET", "/chats?marker=-1", "", 400, "proto.payload"},
		{"GET", "/chats?count=1&count=2", "", 400, "proto.payload"},
		{"GET", "/chats?%zz", "", 400, "proto.payload"},
		{"PATCH", "/chats/7", `{"title":""}`, 400, "proto.payload"},
		{"PATCH", "/chats/7", `{"title":"x","pin":"mid.1.1"}`, 400, "proto.payload"},
		{"POST", "/chats/7/actions", `{"action":"dancing"}`, 400, "proto.payload"},
		{"GET", "/chats/7/members?user_ids=1,,2", "", 400, "proto.payload"},
		{"GET", "/chats/7/members?user_ids=1,x", "", 400, "proto.payload"},
		{"POST", "/chats/7/members", `{"user_ids":[]}`, 400, "proto.payload"},
		{"POST", "/chats/7/members", `{"user_ids":[0]}`, 400, "proto.payload"},
		{"DELETE", "/chats/7/members", "", 400, "proto.payload"},
		{"DELETE", "/chats/7/members?user_id=3&block=maybe", "", 400, "proto.payload"},
		{"PATCH", "/me/commands", `{}`, 400, "proto.payload"},
		{"PATCH", "/me/commands", `{"commands":[{"name":"a b"}]}`, 400, "proto.payload"},
		{"POST", "/messages?chat_id=7", `{"text":"hi"`, 400, "proto.payload"},
		{"POST", "/messages?chat_id=7", `{"text":"hi"} {}`, 400, "proto.payload"},
		{"POST", "/messages?chat_id=7", `{"txt":"hi"}`, 400, "proto.payload"},
		{"POST", "/messages?chat_id=7", `{"text":5}`, 400, "proto.payload"},
		{"POST", "/messages?chat_id=7", ``, 400, "proto.payload"},
		{"POST", "/messages?chat_id=7", `{}`, 400, "proto.payload"},
		{"POST", "/messages?chat_id=7", `{"text":"` + long + `"}`, 400, "text.too.long"},
		{"POST", "/messages?chat_id=7", `{"text":"x","format":"bbcode"}`, 400, "proto.payload"},
		{"POST", "/messages", `{"text":"x"}`, 400, "proto.payload"},
		{"POST", "/messages?chat_id=7&user_id=5", `{"text":"x"}`, 400, "proto.payload"},
		{"POST", "/messages?chat_id=0", `{"text":"x"}`, 400, "proto.payload"},
		{"POST", "/messages?chat_id=7", `{"attachments":[{"type":"sticker","payload":{}}]}`, 400, "proto.payload"},
		{"POST", "/messages?chat_id=7", `{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"link","text":"x","url":"javascript:alert(1)"}]]}}]}`, 400, "proto.payload"},
		{"POST", "/messages?chat_id=7", `{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"callback","text":"x","payload":"` + strings.Repeat("p", 1025) + `"}]]}}]}`, 400, "proto.payload"},
		{"PUT", "/messages", `{"text":"x"}`, 400, "proto.payload"},
		{"PUT", "/messages?message_id=a%20b", `{"text":"x"}`, 400, "proto.payload"},
		{"DELETE", "/messages", "", 400, "proto.payload"},
		{"GET", "/messages", "", 400, "proto.payload"},
		{"GET", "/messages?chat_id=7&count=1000", "", 400, "proto.payload"},
		{"GET", "/messages/a%20b", "", 400, "proto.payload"},
		{"POST", "/answers", `{"notification":"x"}`, 400, "proto.payload"},
		{"POST", "/answers?callback_id=c", `{}`, 400, "proto.payload"},
		{"POST", "/answers?callback_id=c", `{"message":{"text":"` + long + `"}}`, 400, "text.too.long"},
		{"POST", "/uploads?type=sticker", "", 400, "proto.payload"},
		{"POST", "/uploads", "", 400, "proto.payload"},
		{"GET", "/updates?limit=0", "", 400, "proto.payload"},
		{"GET", "/updates?limit=1001", "", 400, "proto.payload"},
		{"GET", "/updates?timeout=91", "", 400, "proto.payload"},
		{"GET", "/updates?timeout=1.5", "", 400, "proto.payload"},
		{"GET", "/updates?types=Message", "", 400, "proto.payload"},
		{"GET", "/updates?marker=x", "", 400, "proto.payload"},
		{"POST", "/subscriptions", `{"url":"http://bot.example/hook"}`, 400, "webhook.url"},
		{"POST", "/subscriptions", `{"url":"https://bot.example/hook","secret":"a b c d e"}`, 400, "proto.payload"},
		{"DELETE", "/subscriptions", "", 400, "proto.payload"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			s, f := newTestServer(t)
			wantError(t, do(t, s, tt.method, tt.target, tt.body), tt.status, tt.code)
			if len(f.calls) != 0 {
				t.Errorf("backend called: %v", f.calls)
			}
		})
	}
}

// TestBodyLimit checks that bodies over MaxBody are 413, with and
// without a Content-Length.
func TestBodyLimit(t *testing.T) {
	f := &fakeBackend{}
	s := New(Options{Backend: f, RateLimit: 1e6, MaxBody: 64})
	body := `{"text":"` + strings.Repeat("a", 100) + `"}`
	wantError(t, do(t, s, "POST", "/messages?chat_id=7", body), http.StatusRequestEntityTooLarge, "too.large")

	req := httptest.NewRequest("POST", "/messages?chat_id=7", io.MultiReader(strings.NewReader(body)))
	req.ContentLength = -1
	req.Header.Set("Authorization", testToken)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	wantError(t, w, http.StatusRequestEntityTooLarge, "too.large")

	if w := do(t, s, "POST", "/messages?chat_id=7", `{"text":"short"}`); w.Code != http.StatusOK {
		t.Errorf("a body under the limit: %d %s", w.Code, w.Body)
	}
	if len(f.calls) != 1 {
		t.Errorf("calls = %v, want the one under the limit", f.calls)
	}
}

// TestBackendErrors checks how the backend's errors are answered.
func TestBackendErrors(t *testing.T) {
	s, f := newTestServer(t)
	f.err = Errorf(ErrChatNotFound, "chat 7 not found")
	w := do(t, s, "GET", "/chats/7", "")
	wantError(t, w, http.StatusNotFound, "chat.not.found")
	if !strings.Contains(w.Body.String(), "chat 7 not found") {
		t.Errorf("message lost: %s", w.Body)
	}

	f.err = ErrAttachmentNotReady
	wantError(t, do(t, s, "POST", "/messages?chat_id=7", `{"text":"x"}`), http.StatusBadRequest, "attachment.not.ready")

	f.err = ErrForbidden
	wantError(t, do(t, s, "POST", "/messages?chat_id=7", `{"text":"x"}`), http.StatusForbidden, "chat.denied")

	f.err = errors.New("disk on fire")
	w = do(t, s, "GET", "/me", "")
	wantError(t, w, http.StatusInternalServerError, "internal")
	if strings.Contains(w.Body.String(), "fire") || w.Header().Get("X-Error-Id") == "" {
		t.Errorf("500 leaks the cause or has no id: %s %v", w.Body, w.Header())
	}
	var e Error
	json.Unmarshal(w.Body.Bytes(), &e)
	if e.Message != "internal error" {
		t.Errorf("message = %q", e.Message)
	}

	// A wrapped APIError keeps its status.
	f.err = errors.Join(errors.New("ctx"), ErrNotFound)
	wantError(t, do(t, s, "GET", "/messages/mid.1.1", ""), http.StatusNotFound, "not.found")
}

// TestCanceledRequest checks that a request whose client went away gets
// no error body.
func TestCanceledRequest(t *testing.T) {
	s, f := newTestServer(t)
	f.err = context.Canceled
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest("GET", "/me", nil).WithContext(ctx)
	req.Header.Set("Authorization", testToken)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Body.Len() != 0 {
		t.Errorf("body = %s, want none", w.Body)
	}
}

// TestRateLimit checks 429 with Retry-After once a bot's burst is spent,
// that other bots are not affected, and that the bucket refills.
func TestRateLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	f := &fakeBackend{}
	s := New(Options{Backend: f, RateLimit: 0.5, Burst: 2, Now: func() time.Time { return now }})
	for i := range 2 {
		if w := do(t, s, "GET", "/me", ""); w.Code != http.StatusOK {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	w := do(t, s, "GET", "/me", "")
	wantError(t, w, http.StatusTooManyRequests, "too.many.requests")
	if got := w.Header().Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After = %q, want 2", got)
	}
	if w := doAuth(t, s, "GET", "/me", "", "tok-2"); w.Code != http.StatusOK {
		t.Errorf("another bot: %d", w.Code)
	}
	now = now.Add(1500 * time.Millisecond)
	w = do(t, s, "GET", "/me", "")
	if got := w.Header().Get("Retry-After"); w.Code != http.StatusTooManyRequests || got != "1" {
		t.Errorf("after 1.5 s: %d, Retry-After %q; want 429, 1", w.Code, got)
	}
	now = now.Add(500 * time.Millisecond)
	if w := do(t, s, "GET", "/me", ""); w.Code != http.StatusOK {
		t.Errorf("after 2 s: %d", w.Code)
	}
}

// TestDefaultRateLimit checks the default: 30 requests at once, then 429.
func TestDefaultRateLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	s := New(Options{Backend: &fakeBackend{}, Now: func() time.Time { return now }})
	for i := range 30 {
		if w := do(t, s, "GET", "/me", ""); w.Code != http.StatusOK {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	w := do(t, s, "GET", "/me", "")
	wantError(t, w, http.StatusTooManyRequests, "too.many.requests")
	if got := w.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}
}

// TestCallDeadline checks that a Backend call that does not return is
// given up after callTimeout with a 500, and a long poll after its
// timeout and pollGrace.
func TestCallDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeBackend{hang: true, pollStarted: make(chan struct{}, 1)}
		s := New(Options{Backend: f, Log: slog.New(slog.DiscardHandler)})
		start := time.Now()
		wantError(t, do(t, s, "GET", "/me", ""), http.StatusInternalServerError, "internal")
		if d := time.Since(start); d != callTimeout {
			t.Errorf("gave up after %s, want %s", d, callTimeout)
		}
		start = time.Now()
		wantError(t, do(t, s, "GET", "/updates?timeout=5", ""), http.StatusInternalServerError, "internal")
		if d, want := time.Since(start), 5*time.Second+pollGrace; d != want {
			t.Errorf("poll gave up after %s, want %s", d, want)
		}
	})
}
