package identity

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"

	"github.com/gonets/gonets/storage"
)

// Errors of the bot accounts. Each is stable (errors.Is) and changes
// nothing.
var (
	// ErrNotBot is returned for a user that is not a bot (a person's
	// account, or no account at all).
	ErrNotBot = errors.New("identity: not a bot")
	// ErrUnknownBotToken is returned by Authenticate for a token that is
	// malformed, unknown, or was revoked or replaced.
	ErrUnknownBotToken = errors.New("identity: unknown bot token")
	// ErrBotRevoked is returned by BotAppKey for a bot whose token was
	// revoked: it has no token, so nothing to sign launch data for.
	ErrBotRevoked = errors.New("identity: the bot's token is revoked; issue a new one")
	// ErrBotName is returned for a bot name that is empty, blank, longer
	// than MaxBotName characters, not UTF-8 or holds control characters.
	ErrBotName = errors.New("identity: a bot name is 1 to 64 characters of text")
	// ErrBotUsername is returned for a username that is not 3 to 32 of
	// a-z, A-Z, 0-9 and _ ending in "bot" (any case).
	ErrBotUsername = errors.New(`identity: a bot username is 3 to 32 of a-z, A-Z, 0-9 and _, ending in "bot"`)
	// ErrBotUsernameTaken is returned for a username another bot has,
	// compared without case.
	ErrBotUsernameTaken = errors.New("identity: the bot username is taken")
	// ErrBotDescription is returned for a description longer than
	// MaxBotDescription characters, not UTF-8 or with control characters
	// other than line feeds.
	ErrBotDescription = errors.New("identity: a bot description is at most 512 characters of text")
	// ErrBotCommands is returned for more than MaxBotCommands commands, a
	// command name that is not 1 to 64 of a-z, 0-9 and _ or is repeated,
	// or a description that is not 1 to 256 characters of text.
	ErrBotCommands = errors.New("identity: bad bot commands: at most 32, names 1 to 64 of a-z, 0-9 and _ without repeats, descriptions 1 to 256 characters")
	// ErrBotAppURL is returned for a mini-app URL that is not an absolute
	// https URL with a host and no user info, of at most MaxBotAppURL bytes.
	ErrBotAppURL = errors.New("identity: a mini-app URL is an https URL of at most 2048 bytes")
)

// Limits of a bot's profile.
const (
	// MaxBotName is the longest bot name, in characters.
	MaxBotName = 64
	// MaxBotDescription is the longest bot description, in characters.
	MaxBotDescription = 512
	// MaxBotCommands is the most commands a bot declares.
	MaxBotCommands = 32
	// MaxBotCommandName is the longest command name, in bytes.
	MaxBotCommandName = 64
	// MaxBotCommandDescription is the longest command description, in
	// characters.
	MaxBotCommandDescription = 256
	// MaxBotAppURL is the longest mini-app URL, in bytes.
	MaxBotAppURL = 2048
)

// botTokenLen is the length of a bot token: 32 random bytes in unpadded
// base64url.
const botTokenLen = 43

// acctPrefixBot keys the bot records: + user → sealed JSON botRecord.
const acctPrefixBot = 'b'

// webAppDataKey is the HMAC key of a bot's mini-app signing key
// (bots/miniapp: secret_key = HMAC_SHA256("WebAppData", bot_token)).
const webAppDataKey = "WebAppData"

// BotCommand is a command a bot declares, shown to people in its chats.
type BotCommand struct {
	// Name is the command without its slash: 1 to 64 of a-z, 0-9 and _.
	Name string `json:"name"`
	// Description says what it does: 1 to 256 characters.
	Description string `json:"description"`
}

// Bot is a bot account: a user of kind bot, which people open a direct
// chat with or add to groups, driven over the Bot API by whoever holds its
// token.
type Bot struct {
	User        storage.UserID
	Name        string
	Username    string // "" when it has none
	Description string
	Commands    []BotCommand
	AppURL      string // its mini-app; "" when it has none
	Created     time.Time
	Revoked     bool // its token was revoked and no new one issued
}

// BotUpdate is a change to a bot's profile: each field that is not nil
// replaces the bot's.
type BotUpdate struct {
	Description *string
	Commands    *[]BotCommand // a pointer to nil or empty deletes them
	AppURL      *string       // a pointer to "" removes the mini-app
}

// botRecord is a bot as stored, sealed: its profile, the SHA-256 of its
// live token and its mini-app signing key. Both are nil while its token is
// revoked, so a revoked token leaves nothing behind.
type botRecord struct {
	Name        string       `json:"name"`
	Username    string       `json:"username,omitempty"`
	Description string       `json:"description,omitempty"`
	Commands    []BotCommand `json:"commands,omitempty"`
	AppURL      string       `json:"app_url,omitempty"`
	Created     time.Time    `json:"created"`
	TokenHash   []byte       `json:"token_hash,omitempty"`
	AppKey      []byte       `json:"app_key,omitempty"`
}

func (r *botRecord) bot(user storage.UserID) Bot {
	return Bot{
		User: user, Name: r.Name, Username: r.Username, Description: r.Description,
		Commands: slices.Clone(r.Commands), AppURL: r.AppURL, Created: r.Created,
		Revoked: r.TokenHash == nil,
	}
}

// botIndex is the accounts' bots in memory, loaded at open and changed
// only after a commit, so Authenticate and IsBot read no disk. Writers
// hold wmu across their read, commit and install, so two changes of bots
// never interleave; mu is held only to read or swap the maps. Lock order:
// Accounts.life, then wmu, then mu.
type botIndex struct {
	wmu sync.Mutex // held by every change of a bot

	mu      sync.RWMutex // guards the following
	byUser  map[storage.UserID]*botRecord
	byToken map[[sha256.Size]byte]storage.UserID
	byName  map[string]storage.UserID // lower-cased username → bot
}

func acctBotKey(user storage.UserID) []byte {
	return binary.BigEndian.AppendUint64([]byte{acctPrefixBot}, uint64(user))
}

// loadBots reads every bot record into the index. OpenAccounts calls it.
func (a *Accounts) loadBots() error {
	ix := &a.bots
	ix.byUser = map[storage.UserID]*botRecord{}
	ix.byToken = map[[sha256.Size]byte]storage.UserID{}
	ix.byName = map[string]storage.UserID{}
	it, err := a.db.NewIter(&pebble.IterOptions{LowerBound: []byte{acctPrefixBot}, UpperBound: []byte{acctPrefixBot + 1}})
	if err != nil {
		return fmt.Errorf("read bots: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 9 {
			return fmt.Errorf("corrupt bot key %x", k)
		}
		plain, err := a.open(k, it.Value())
		if err != nil {
			return err
		}
		r := new(botRecord)
		if err := json.Unmarshal(plain, r); err != nil {
			return fmt.Errorf("bot record %x: %w", k, err)
		}
		ix.installLocked(storage.UserID(binary.BigEndian.Uint64(k[1:])), nil, r)
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("read bots: %w", err)
	}
	return nil
}

// installLocked puts r in the maps as user's record in place of old (nil
// for a new bot). The caller holds mu, or is loadBots.
func (ix *botIndex) installLocked(user storage.UserID, old, r *botRecord) {
	if old != nil {
		if old.TokenHash != nil {
			delete(ix.byToken, [sha256.Size]byte(old.TokenHash))
		}
		if old.Username != "" {
			delete(ix.byName, strings.ToLower(old.Username))
		}
	}
	ix.byUser[user] = r
	if len(r.TokenHash) == sha256.Size {
		ix.byToken[[sha256.Size]byte(r.TokenHash)] = user
	}
	if r.Username != "" {
		ix.byName[strings.ToLower(r.Username)] = user
	}
}

// CreateBot creates a bot account named name, with username unless it is
// "", and returns it with its token. The token is shown only here: the
// store keeps its SHA-256 (for Authenticate) and the mini-app signing key
// derived from it, HMAC-SHA256(key "WebAppData", message the token), sealed
// (BotAppKey). The bot's user id comes from the ids of phone accounts, so
// it never meets a person's, and is never reused.
func (a *Accounts) CreateBot(name, username string) (Bot, string, error) {
	if !validBotName(name) {
		return Bot{}, "", ErrBotName
	}
	if username != "" && !validBotUsername(username) {
		return Bot{}, "", ErrBotUsername
	}
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return Bot{}, "", ErrAccountsClosed
	}
	ix := &a.bots
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	if username != "" {
		ix.mu.RLock()
		_, taken := ix.byName[strings.ToLower(username)]
		ix.mu.RUnlock()
		if taken {
			return Bot{}, "", ErrBotUsernameTaken
		}
	}
	tok, hash, key, err := newBotToken()
	if err != nil {
		return Bot{}, "", err
	}
	now := time.Now().UTC().Round(0)
	r := &botRecord{Name: name, Username: username, Created: now, TokenHash: hash, AppKey: key}
	// An id allocated here and not committed is skipped, as Login's are.
	user := storage.UserID(a.nextUser.Add(1) - 1)
	b := a.db.NewBatch()
	defer b.Close()
	// The account record makes the id one OpenAccounts recovers the
	// counter past; it has no phone, so no phone index entry leads to it.
	if err := a.setSealed(b, acctUserKey(user), acctRecord{Created: now, NextDevice: 1}.encode()); err != nil {
		return Bot{}, "", err
	}
	if err := a.commitBot(b, user, nil, r); err != nil {
		return Bot{}, "", err
	}
	return r.bot(user), tok, nil
}

// Authenticate returns the bot whose token tok is: the Bot API's check of
// every call. It reads memory only. A malformed, unknown, revoked or
// replaced token is ErrUnknownBotToken.
func (a *Accounts) Authenticate(tok string) (storage.UserID, error) {
	if len(tok) != botTokenLen {
		return 0, ErrUnknownBotToken
	}
	var buf [botTokenLen]byte // hashed from the stack: no allocation
	copy(buf[:], tok)
	h := sha256.Sum256(buf[:])
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return 0, ErrAccountsClosed
	}
	a.bots.mu.RLock()
	user, ok := a.bots.byToken[h]
	a.bots.mu.RUnlock()
	if !ok {
		return 0, ErrUnknownBotToken
	}
	return user, nil
}

// IsBot reports whether user is a bot, revoked or not. It reads memory
// only, and is false after Close.
func (a *Accounts) IsBot(user storage.UserID) bool {
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return false
	}
	a.bots.mu.RLock()
	_, ok := a.bots.byUser[user]
	a.bots.mu.RUnlock()
	return ok
}

// BotInfo returns the bot user, or ErrNotBot.
func (a *Accounts) BotInfo(user storage.UserID) (Bot, error) {
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return Bot{}, ErrAccountsClosed
	}
	a.bots.mu.RLock()
	defer a.bots.mu.RUnlock()
	r, ok := a.bots.byUser[user]
	if !ok {
		return Bot{}, ErrNotBot
	}
	return r.bot(user), nil
}

// BotUsers returns the users of every bot (revoked ones too: they may get
// a token again), in no order, when there are at most max (any number
// with max < 0); else nil and false. Cheap enough to ask on a membership
// change.
func (a *Accounts) BotUsers(max int) ([]storage.UserID, bool) {
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return nil, true
	}
	a.bots.mu.RLock()
	defer a.bots.mu.RUnlock()
	if max >= 0 && len(a.bots.byUser) > max {
		return nil, false
	}
	out := make([]storage.UserID, 0, len(a.bots.byUser))
	for user := range a.bots.byUser {
		out = append(out, user)
	}
	return out, true
}

// Bots returns every bot, revoked ones too, in user id order.
func (a *Accounts) Bots() []Bot {
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return nil
	}
	a.bots.mu.RLock()
	out := make([]Bot, 0, len(a.bots.byUser))
	for user, r := range a.bots.byUser {
		out = append(out, r.bot(user))
	}
	a.bots.mu.RUnlock()
	slices.SortFunc(out, func(x, y Bot) int { return cmp.Compare(x.User, y.User) })
	return out
}

// BotAppKey returns the bot's mini-app signing key, HMAC-SHA256(key
// "WebAppData", message its token): the secret_key of bots/miniapp's
// scheme, with which the node signs launch data without holding the
// token. A bot whose token is revoked has none: ErrBotRevoked.
func (a *Accounts) BotAppKey(user storage.UserID) ([]byte, error) {
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return nil, ErrAccountsClosed
	}
	a.bots.mu.RLock()
	defer a.bots.mu.RUnlock()
	r, ok := a.bots.byUser[user]
	switch {
	case !ok:
		return nil, ErrNotBot
	case r.AppKey == nil:
		return nil, ErrBotRevoked
	}
	return bytes.Clone(r.AppKey), nil
}

// RevokeBot revokes the bot's token: Authenticate refuses it from the
// moment RevokeBot returns, and its hash and mini-app key are erased. The
// bot stays, with its chats; NewBotToken gives it a token again.
// Revoking a revoked bot changes nothing.
func (a *Accounts) RevokeBot(user storage.UserID) error {
	_, err := a.updateBot(user, func(r *botRecord) { r.TokenHash, r.AppKey = nil, nil })
	return err
}

// NewBotToken issues the bot a new token, revoked or not, and returns it;
// the old token dies at once. Its mini-app key changes with it, so launch
// data signed before no longer validates against the new token.
func (a *Accounts) NewBotToken(user storage.UserID) (string, error) {
	tok, hash, key, err := newBotToken()
	if err != nil {
		return "", err
	}
	if _, err := a.updateBot(user, func(r *botRecord) { r.TokenHash, r.AppKey = hash, key }); err != nil {
		return "", err
	}
	return tok, nil
}

// SetBotCommands replaces the bot's commands; nil or empty deletes them.
func (a *Accounts) SetBotCommands(user storage.UserID, cmds []BotCommand) error {
	_, err := a.UpdateBot(user, BotUpdate{Commands: &cmds})
	return err
}

// SetBotApp sets the bot's mini-app URL (see CheckBotAppURL); "" removes
// its mini-app.
func (a *Accounts) SetBotApp(user storage.UserID, appURL string) error {
	_, err := a.UpdateBot(user, BotUpdate{AppURL: &appURL})
	return err
}

// SetBotDescription sets the bot's description; "" removes it.
func (a *Accounts) SetBotDescription(user storage.UserID, desc string) error {
	_, err := a.UpdateBot(user, BotUpdate{Description: &desc})
	return err
}

// UpdateBot applies u to the bot in one synced commit, all of it or, when
// a field is invalid, none of it, and returns the bot as it now is.
func (a *Accounts) UpdateBot(user storage.UserID, u BotUpdate) (Bot, error) {
	if u.Description != nil && !validBotDescription(*u.Description) {
		return Bot{}, ErrBotDescription
	}
	if u.Commands != nil && !validBotCommands(*u.Commands) {
		return Bot{}, ErrBotCommands
	}
	if u.AppURL != nil && *u.AppURL != "" {
		if err := CheckBotAppURL(*u.AppURL); err != nil {
			return Bot{}, err
		}
	}
	return a.updateBot(user, func(r *botRecord) {
		if u.Description != nil {
			r.Description = *u.Description
		}
		if u.Commands != nil {
			r.Commands = nil
			if len(*u.Commands) > 0 {
				r.Commands = slices.Clone(*u.Commands)
			}
		}
		if u.AppURL != nil {
			r.AppURL = *u.AppURL
		}
	})
}

// updateBot commits fn's change to a copy of user's record and installs
// it.
func (a *Accounts) updateBot(user storage.UserID, fn func(r *botRecord)) (Bot, error) {
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return Bot{}, ErrAccountsClosed
	}
	ix := &a.bots
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	ix.mu.RLock()
	old, ok := ix.byUser[user]
	ix.mu.RUnlock()
	if !ok {
		return Bot{}, ErrNotBot
	}
	r := *old
	r.Commands = slices.Clone(old.Commands)
	fn(&r)
	b := a.db.NewBatch()
	defer b.Close()
	if err := a.commitBot(b, user, old, &r); err != nil {
		return Bot{}, err
	}
	return r.bot(user), nil
}

// commitBot adds r as user's bot record to b, commits b synced, and then
// installs r in place of old. The caller holds life (shared) and wmu.
func (a *Accounts) commitBot(b *pebble.Batch, user storage.UserID, old, r *botRecord) error {
	plain, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("identity: bot %d: %w", user, err)
	}
	if err := a.setSealed(b, acctBotKey(user), plain); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("identity: bot %d: %w", user, err)
	}
	a.bots.mu.Lock()
	a.bots.installLocked(user, old, r)
	a.bots.mu.Unlock()
	return nil
}

// newBotToken returns a new bot token, its SHA-256 and its mini-app
// signing key.
func newBotToken() (tok string, hash, appKey []byte, err error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", nil, nil, fmt.Errorf("identity: bot token: %w", err)
	}
	tok = base64.RawURLEncoding.EncodeToString(raw[:])
	h := sha256.Sum256([]byte(tok))
	m := hmac.New(sha256.New, []byte(webAppDataKey))
	m.Write([]byte(tok))
	return tok, h[:], m.Sum(nil), nil
}

// CheckBotAppURL returns nil if u may be a bot's mini-app URL: an absolute
// https URL with a host and no user info, of at most MaxBotAppURL bytes;
// else ErrBotAppURL, wrapped with the reason.
func CheckBotAppURL(u string) error {
	if u == "" || len(u) > MaxBotAppURL {
		return ErrBotAppURL
	}
	p, err := url.Parse(u)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %v", ErrBotAppURL, err)
	case p.Scheme != "https":
		return fmt.Errorf("%w: the scheme is %q", ErrBotAppURL, p.Scheme)
	case p.Host == "" || p.Hostname() == "":
		return fmt.Errorf("%w: no host", ErrBotAppURL)
	case p.User != nil:
		return fmt.Errorf("%w: user info in the URL", ErrBotAppURL)
	}
	return nil
}

func validBotName(s string) bool {
	return strings.TrimSpace(s) != "" && utf8.RuneCountInString(s) <= MaxBotName && acctValidText(s, 4*MaxBotName)
}

// validBotUsername reports whether s is 3 to 32 of a-z, A-Z, 0-9 and _
// ending in "bot" in any case, as MAX's and Telegram's bot usernames are.
func validBotUsername(s string) bool {
	if len(s) < 3 || len(s) > 32 || !strings.HasSuffix(strings.ToLower(s), "bot") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// validBotDescription allows line feeds, which acctValidText refuses as
// control characters.
func validBotDescription(s string) bool {
	return utf8.RuneCountInString(s) <= MaxBotDescription && acctValidText(strings.ReplaceAll(s, "\n", " "), 4*MaxBotDescription)
}

func validBotCommands(cmds []BotCommand) bool {
	if len(cmds) > MaxBotCommands {
		return false
	}
	seen := make(map[string]bool, len(cmds))
	for _, c := range cmds {
		if !validBotCommandName(c.Name) || seen[c.Name] {
			return false
		}
		seen[c.Name] = true
		d := c.Description
		if strings.TrimSpace(d) == "" || utf8.RuneCountInString(d) > MaxBotCommandDescription || !acctValidText(d, 4*MaxBotCommandDescription) {
			return false
		}
	}
	return true
}

func validBotCommandName(s string) bool {
	if s == "" || len(s) > MaxBotCommandName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
