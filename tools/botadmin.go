package tools

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/storage"
)

// The bot admin endpoint is served on the node's private HTTP listener
// (node.http_addr, beside /metrics): the running node holds the accounts
// store's lock, so gonets bot asks the node rather than opening the store.
// Every request carries "Authorization: Bearer <admin token>", the secret
// the node keeps in <data>/admin.token; reading that file is what lets an
// operator in, so it is mode 0600 and the listener stays private.
//
//	POST  /admin/bots               {name, username?, app_url?} → {user_id, token}
//	GET   /admin/bots               → {bots: [bot…]} (no tokens)
//	GET   /admin/bots/{id}          → bot
//	PATCH /admin/bots/{id}          {app_url?, description?} → bot
//	POST  /admin/bots/{id}/revoke   → bot
//	POST  /admin/bots/{id}/token    → {user_id, token}
//
// Refusals are a status and {"code", "message"}, as the public listener's.
const (
	// adminTokenFile is the admin token's file in the data directory.
	adminTokenFile = "admin.token"
	// maxBotAdminBody bounds a request body of the bot admin endpoint.
	maxBotAdminBody = 16 << 10
	// minAdminToken is the shortest admin token accepted from the file.
	minAdminToken = 32
)

// loadOrCreateAdminToken returns the node's admin token, in
// <dataDir>/admin.token: 32 random bytes in unpadded base64url, written
// with mode 0600 on the node's first start and reused after. A file that
// others may read is refused: whoever reads it administers the node's bots.
func loadOrCreateAdminToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, adminTokenFile)
	tok, err := readAdminToken(path)
	switch {
	case err == nil:
		return tok, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok = base64.RawURLEncoding.EncodeToString(raw[:])
	f, err := os.CreateTemp(dataDir, adminTokenFile+".tmp*")
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	cherr := f.Chmod(0o600)
	_, werr := io.WriteString(f, tok+"\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(cherr, werr, serr, cerr); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	// Link, not rename: a token another process made first wins.
	if err := os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
		return readAdminToken(path)
	} else if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if err := syncDir(dataDir); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return tok, nil
}

// readAdminToken reads the admin token at path; a missing file is
// fs.ErrNotExist, wrapped.
func readAdminToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("admin token %s: mode %#o lets others read it: chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < minAdminToken || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("admin token %s: want one token of %d or more characters", path, minAdminToken)
	}
	return tok, nil
}

// botAdmin serves the bot admin endpoint over the node's accounts.
type botAdmin struct {
	accounts  *identity.Accounts
	tokenHash [sha256.Size]byte // SHA-256 of the admin token; zero: refuse all
	revoked   func(storage.UserID)
}

// newBotAdminHandler returns the bot admin endpoint over a, for requests
// that bear adminToken. Mount it on the private listener's mux under
// "/admin/"; paths under it that it does not know are a JSON 404. An
// empty adminToken refuses every request.
//
// revoked, if given, is called after a bot's token was revoked or
// replaced: what the old token set up (webhooks) must not outlive it.
func newBotAdminHandler(a *identity.Accounts, adminToken string, revoked ...func(storage.UserID)) http.Handler {
	ba := &botAdmin{accounts: a}
	if len(revoked) > 0 {
		ba.revoked = revoked[0]
	}
	if adminToken != "" {
		ba.tokenHash = sha256.Sum256([]byte(adminToken))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/admin/bots", ba.bots)
	mux.HandleFunc("/admin/bots/{id}", ba.bot)
	mux.HandleFunc("/admin/bots/{id}/revoke", ba.revoke)
	mux.HandleFunc("/admin/bots/{id}/token", ba.token)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		publicError(w, http.StatusNotFound, "not_found", "no such admin endpoint: "+r.URL.Path)
	})
	return ba.auth(mux)
}

// auth lets through requests bearing the admin token, compared in
// constant time (of its SHA-256, so its length does not show either).
func (ba *botAdmin) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		ok := strings.EqualFold(scheme, "Bearer")
		h := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !ok || ba.tokenHash == ([sha256.Size]byte{}) || subtle.ConstantTimeCompare(h[:], ba.tokenHash[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gonets admin"`)
			publicError(w, http.StatusUnauthorized, "unauthorized", "the admin endpoint needs Authorization: Bearer and the token in the node's "+adminTokenFile)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// botJSON is a bot as the admin endpoint shows it: never its token.
type botJSON struct {
	UserID      storage.UserID        `json:"user_id"`
	Name        string                `json:"name"`
	Username    string                `json:"username,omitempty"`
	Description string                `json:"description,omitempty"`
	Commands    []identity.BotCommand `json:"commands,omitempty"`
	AppURL      string                `json:"app_url,omitempty"`
	Created     time.Time             `json:"created"`
	Revoked     bool                  `json:"revoked"`
}

func newBotJSON(b identity.Bot) botJSON {
	return botJSON{UserID: b.User, Name: b.Name, Username: b.Username, Description: b.Description,
		Commands: b.Commands, AppURL: b.AppURL, Created: b.Created, Revoked: b.Revoked}
}

// botTokenJSON is a bot's new token, shown once.
type botTokenJSON struct {
	UserID storage.UserID `json:"user_id"`
	Token  string         `json:"token"`
}

// botCreateJSON is POST /admin/bots's body.
type botCreateJSON struct {
	Name     string `json:"name"`
	Username string `json:"username"`
	AppURL   string `json:"app_url"`
}

// botPatchJSON is PATCH /admin/bots/{id}'s body; absent fields stay.
type botPatchJSON struct {
	AppURL      *string `json:"app_url"`
	Description *string `json:"description"`
}

func (ba *botAdmin) bots(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		list := ba.accounts.Bots()
		out := struct {
			Bots []botJSON `json:"bots"`
		}{Bots: make([]botJSON, len(list))}
		for i, b := range list {
			out.Bots[i] = newBotJSON(b)
		}
		writeAdminJSON(w, http.StatusOK, out)
	case http.MethodPost:
		var in botCreateJSON
		if !readAdminJSON(w, r, &in) {
			return
		}
		// The URL is checked first: a bot made and then refused its URL
		// would be a bot whose token nobody saw.
		if in.AppURL != "" {
			if err := identity.CheckBotAppURL(in.AppURL); err != nil {
				botAdminError(w, err)
				return
			}
		}
		b, tok, err := ba.accounts.CreateBot(in.Name, in.Username)
		if err != nil {
			botAdminError(w, err)
			return
		}
		if in.AppURL != "" {
			if err := ba.accounts.SetBotApp(b.User, in.AppURL); err != nil {
				// Not left half made: the token nobody will see dies.
				ba.accounts.RevokeBot(b.User)
				botAdminError(w, fmt.Errorf("bot %d was created, its token revoked: %w", b.User, err))
				return
			}
		}
		writeAdminJSON(w, http.StatusCreated, botTokenJSON{UserID: b.User, Token: tok})
	default:
		adminMethodNotAllowed(w, "GET, POST")
	}
}

func (ba *botAdmin) bot(w http.ResponseWriter, r *http.Request) {
	user, ok := adminBotID(w, r)
	if !ok {
		return
	}
	switch r.Method {
	case http.MethodGet:
		b, err := ba.accounts.BotInfo(user)
		if err != nil {
			botAdminError(w, err)
			return
		}
		writeAdminJSON(w, http.StatusOK, newBotJSON(b))
	case http.MethodPatch:
		var in botPatchJSON
		if !readAdminJSON(w, r, &in) {
			return
		}
		if in.AppURL == nil && in.Description == nil {
			publicError(w, http.StatusBadRequest, "bad_request", "nothing to change: give app_url or description")
			return
		}
		b, err := ba.accounts.UpdateBot(user, identity.BotUpdate{AppURL: in.AppURL, Description: in.Description})
		if err != nil {
			botAdminError(w, err)
			return
		}
		writeAdminJSON(w, http.StatusOK, newBotJSON(b))
	default:
		adminMethodNotAllowed(w, "GET, PATCH")
	}
}

func (ba *botAdmin) revoke(w http.ResponseWriter, r *http.Request) {
	user, ok := adminBotID(w, r)
	if !ok {
		return
	}
	if r.Method != http.MethodPost {
		adminMethodNotAllowed(w, "POST")
		return
	}
	if err := ba.accounts.RevokeBot(user); err != nil {
		botAdminError(w, err)
		return
	}
	if ba.revoked != nil {
		ba.revoked(user)
	}
	b, err := ba.accounts.BotInfo(user)
	if err != nil {
		botAdminError(w, err)
		return
	}
	writeAdminJSON(w, http.StatusOK, newBotJSON(b))
}

func (ba *botAdmin) token(w http.ResponseWriter, r *http.Request) {
	user, ok := adminBotID(w, r)
	if !ok {
		return
	}
	if r.Method != http.MethodPost {
		adminMethodNotAllowed(w, "POST")
		return
	}
	tok, err := ba.accounts.NewBotToken(user)
	if err != nil {
		botAdminError(w, err)
		return
	}
	if ba.revoked != nil {
		ba.revoked(user)
	}
	writeAdminJSON(w, http.StatusOK, botTokenJSON{UserID: user, Token: tok})
}

// adminBotID returns the path's bot id, or answers 400.
func adminBotID(w http.ResponseWriter, r *http.Request) (storage.UserID, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		publicError(w, http.StatusBadRequest, "bad_id", fmt.Sprintf("bot id %q: want a user id", r.PathValue("id")))
		return 0, false
	}
	return storage.UserID(id), true
}

// readAdminJSON decodes the request's body, one JSON object of at most
// maxBotAdminBody bytes with no unknown field, into v, or answers 400 or
// 413.
func readAdminJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBotAdminBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("more than one JSON value")
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		publicError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body is over %d bytes", maxBotAdminBody))
		return false
	case err != nil:
		publicError(w, http.StatusBadRequest, "bad_json", "the body: "+err.Error())
		return false
	}
	return true
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func adminMethodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	publicError(w, http.StatusMethodNotAllowed, "method_not_allowed", "this endpoint takes "+allow)
}

// botAdminError answers err of the accounts with its status and stable
// code. The endpoint's only clients are the node's operators, so an
// unexpected error's text goes to them as it is.
func botAdminError(w http.ResponseWriter, err error) {
	status, code := http.StatusInternalServerError, "internal"
	switch {
	case errors.Is(err, identity.ErrNotBot):
		status, code = http.StatusNotFound, "not_bot"
	case errors.Is(err, identity.ErrBotUsernameTaken):
		status, code = http.StatusConflict, "username_taken"
	case errors.Is(err, identity.ErrBotName):
		status, code = http.StatusBadRequest, "bad_name"
	case errors.Is(err, identity.ErrBotUsername):
		status, code = http.StatusBadRequest, "bad_username"
	case errors.Is(err, identity.ErrBotAppURL):
		status, code = http.StatusBadRequest, "bad_app_url"
	case errors.Is(err, identity.ErrBotDescription):
		status, code = http.StatusBadRequest, "bad_description"
	case errors.Is(err, identity.ErrBotCommands):
		status, code = http.StatusBadRequest, "bad_commands"
	case errors.Is(err, identity.ErrAccountsClosed):
		status, code = http.StatusServiceUnavailable, "unavailable"
	}
	publicError(w, status, code, strings.TrimPrefix(err.Error(), "identity: "))
}
