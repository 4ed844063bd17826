package miniapp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxClockSkew is how far in the future Validate lets auth_date be, for
// clocks that disagree a little between the node and the bot's backend.
const MaxClockSkew = time.Minute

// maxInitDataLen bounds the launch data Validate parses. Real launch data
// is a few hundred bytes; Telegram's is well under 4 KiB.
const maxInitDataLen = 64 << 10

// The fields Sign sets itself; Extra may not name them.
const (
	keyQueryID    = "query_id"
	keyUser       = "user"
	keyChat       = "chat"
	keyAuthDate   = "auth_date"
	keyStartParam = "start_param"
	keyHash       = "hash"
)

// User is the user who opened the mini-app, as the user field's JSON
// carries it (Telegram's and MAX's WebAppUser).
type User struct {
	// ID is the user's id.
	ID int64 `json:"id"`
	// FirstName is the user's first name.
	FirstName string `json:"first_name"`
	// LastName is the user's last name, if any.
	LastName string `json:"last_name,omitempty"`
	// Username is the user's username, if any.
	Username string `json:"username,omitempty"`
	// LanguageCode is the IETF language tag of the user's client.
	LanguageCode string `json:"language_code,omitempty"`
	// PhotoURL is the URL of the user's profile photo, if any.
	PhotoURL string `json:"photo_url,omitempty"`
}

// Chat is the chat the mini-app was opened from, as the chat field's JSON
// carries it (Telegram's and MAX's WebAppChat).
type Chat struct {
	// ID is the chat's id.
	ID int64 `json:"id"`
	// Type is the chat's type: "group", "supergroup", "channel" or, in
	// MAX's terms, "chat", "dialog".
	Type string `json:"type"`
	// Title is the chat's title, if any.
	Title string `json:"title,omitempty"`
}

// LaunchData is what a mini-app learns about how it was opened.
type LaunchData struct {
	// QueryID identifies this launch, for answering it through the Bot
	// API. Empty when the launch has none.
	QueryID string
	// User is the user who opened the mini-app. The zero User means the
	// field is absent.
	User User
	// Chat is the chat the mini-app was opened from, or nil.
	Chat *Chat
	// AuthDate is when the launch data was signed, to the second.
	AuthDate time.Time
	// StartParam is the start parameter of the link that opened the
	// mini-app, if any.
	StartParam string
	// Extra holds every other field (such as chat_type, chat_instance or
	// Telegram's signature), URL-decoded. They are signed like the rest.
	// Nil when there are none.
	Extra map[string]string
}

// Sign returns d as the URL-encoded query string the client hands the
// mini-app (its init data), with auth_date and the hash for botToken.
// Fields are in key order, hash last; spaces are encoded as %20, which
// every URL decoder reads back as a space.
func Sign(botToken string, d LaunchData) (string, error) {
	if botToken == "" {
		return "", fmt.Errorf("miniapp: sign: empty bot token")
	}
	return SignWithKey(SecretKey(botToken), d)
}

// SecretKey returns the key launch data of botToken are signed with:
// HMAC-SHA256 keyed with "WebAppData" over the token. A node keeps it
// instead of the token.
func SecretKey(botToken string) []byte {
	secret := hmac.New(sha256.New, []byte("WebAppData"))
	secret.Write([]byte(botToken))
	return secret.Sum(nil)
}

// SignWithKey is Sign with the bot's SecretKey instead of its token.
func SignWithKey(key []byte, d LaunchData) (string, error) {
	if len(key) == 0 {
		return "", fmt.Errorf("miniapp: sign: empty key")
	}
	fields, err := d.fields()
	if err != nil {
		return "", fmt.Errorf("miniapp: sign: %w", err)
	}
	keys := sortedKeys(fields)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(escape(k))
		b.WriteByte('=')
		b.WriteString(escape(fields[k]))
		b.WriteByte('&')
	}
	b.WriteString(keyHash + "=")
	b.WriteString(hex.EncodeToString(checkHash(key, fields, keys)))
	return b.String(), nil
}

// Validate checks the init data a mini-app received against botToken and
// returns what it carries. It checks, in order: that the data parses with
// no key repeated (ErrMalformed), that it has a hash (ErrNoHash), that the
// hash matches, compared in constant time (ErrBadHash), and that auth_date
// is no older than maxAge and no further than MaxClockSkew ahead of now
// (ErrExpired). A maxAge of zero or less skips the age check but not the
// check for a future auth_date.
func Validate(initData, botToken string, maxAge time.Duration, now time.Time) (LaunchData, error) {
	fields, hash, err := parse(initData)
	if err != nil {
		return LaunchData{}, err
	}
	if botToken == "" {
		return LaunchData{}, fmt.Errorf("%w: empty bot token", ErrBadHash)
	}
	want, err := hex.DecodeString(hash)
	if err != nil || len(want) != sha256.Size {
		return LaunchData{}, fmt.Errorf("%w: hash is not %d hex bytes", ErrBadHash, sha256.Size)
	}
	if !hmac.Equal(want, checkHash(SecretKey(botToken), fields, sortedKeys(fields))) {
		return LaunchData{}, ErrBadHash
	}
	d, err := decode(fields)
	if err != nil {
		return LaunchData{}, err
	}
	if d.AuthDate.Sub(now) > MaxClockSkew {
		return LaunchData{}, fmt.Errorf("%w: auth_date %s is ahead of now (%s)",
			ErrExpired, d.AuthDate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if maxAge > 0 && now.Sub(d.AuthDate) > maxAge {
		return LaunchData{}, fmt.Errorf("%w: auth_date %s is older than %s",
			ErrExpired, d.AuthDate.UTC().Format(time.RFC3339), maxAge)
	}
	return d, nil
}

// fields returns d's fields, unescaped, without hash.
func (d LaunchData) fields() (map[string]string, error) {
	if d.AuthDate.IsZero() || d.AuthDate.Unix() <= 0 {
		return nil, fmt.Errorf("%w: auth_date %v is not after 1970", ErrMalformed, d.AuthDate)
	}
	f := make(map[string]string, 5+len(d.Extra))
	for k, v := range d.Extra {
		if reserved(k) {
			return nil, fmt.Errorf("%w: extra field %q is set by Sign", ErrMalformed, k)
		}
		f[k] = v
	}
	f[keyAuthDate] = strconv.FormatInt(d.AuthDate.Unix(), 10)
	if d.QueryID != "" {
		f[keyQueryID] = d.QueryID
	}
	if d.StartParam != "" {
		f[keyStartParam] = d.StartParam
	}
	if d.User != (User{}) {
		b, err := json.Marshal(d.User)
		if err != nil {
			return nil, fmt.Errorf("user: %w", err)
		}
		f[keyUser] = string(b)
	}
	if d.Chat != nil {
		b, err := json.Marshal(d.Chat)
		if err != nil {
			return nil, fmt.Errorf("chat: %w", err)
		}
		f[keyChat] = string(b)
	}
	for k, v := range f {
		if err := checkField(k, v); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// parse splits init data into its URL-decoded fields and the hash, refusing
// repeated keys. The hash is "" when absent (ErrNoHash).
func parse(initData string) (map[string]string, string, error) {
	if len(initData) > maxInitDataLen {
		return nil, "", fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(initData), maxInitDataLen)
	}
	fields := make(map[string]string)
	hash, hasHash := "", false
	for part := range strings.SplitSeq(initData, "&") {
		if part == "" {
			continue
		}
		rawKey, rawValue, ok := strings.Cut(part, "=")
		if !ok {
			return nil, "", fmt.Errorf("%w: field %q has no '='", ErrMalformed, clip(part))
		}
		k, err := url.QueryUnescape(rawKey)
		if err != nil {
			return nil, "", fmt.Errorf("%w: key %q: %v", ErrMalformed, clip(rawKey), err)
		}
		v, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, "", fmt.Errorf("%w: field %q: %v", ErrMalformed, clip(k), err)
		}
		if k == keyHash {
			if hasHash {
				return nil, "", fmt.Errorf("%w: hash appears twice", ErrMalformed)
			}
			hash, hasHash = v, true
			continue
		}
		if _, dup := fields[k]; dup {
			return nil, "", fmt.Errorf("%w: field %q appears twice", ErrMalformed, clip(k))
		}
		fields[k] = v
	}
	if !hasHash {
		return nil, "", ErrNoHash
	}
	return fields, hash, nil
}

// decode turns fields whose hash matched into LaunchData.
func decode(fields map[string]string) (LaunchData, error) {
	var d LaunchData
	for k, v := range fields {
		if err := checkField(k, v); err != nil {
			return LaunchData{}, err
		}
		switch k {
		case keyQueryID:
			d.QueryID = v
		case keyStartParam:
			d.StartParam = v
		case keyAuthDate:
			sec, err := strconv.ParseInt(v, 10, 64)
			if err != nil || sec <= 0 {
				return LaunchData{}, fmt.Errorf("%w: auth_date %q is not a positive Unix time", ErrMalformed, clip(v))
			}
			d.AuthDate = time.Unix(sec, 0)
		case keyUser:
			if err := json.Unmarshal([]byte(v), &d.User); err != nil {
				return LaunchData{}, fmt.Errorf("%w: user: %v", ErrMalformed, err)
			}
		case keyChat:
			d.Chat = new(Chat)
			if err := json.Unmarshal([]byte(v), d.Chat); err != nil {
				return LaunchData{}, fmt.Errorf("%w: chat: %v", ErrMalformed, err)
			}
		default:
			if d.Extra == nil {
				d.Extra = make(map[string]string)
			}
			d.Extra[k] = v
		}
	}
	if d.AuthDate.IsZero() {
		return LaunchData{}, fmt.Errorf("%w: no auth_date", ErrMalformed)
	}
	return d, nil
}

// checkField refuses a field that would make the data-check-string
// ambiguous: an empty key, a key with "=" or a line feed, a value with a
// line feed.
func checkField(k, v string) error {
	if k == "" || strings.ContainsAny(k, "=\n") {
		return fmt.Errorf("%w: key %q", ErrMalformed, clip(k))
	}
	if strings.Contains(v, "\n") {
		return fmt.Errorf("%w: field %q has a line feed", ErrMalformed, clip(k))
	}
	return nil
}

// checkHash is HMAC_SHA256(key = SecretKey(botToken),
// data_check_string) over fields in the order of keys (sorted).
func checkHash(key []byte, fields map[string]string, keys []string) []byte {
	mac := hmac.New(sha256.New, key)
	for i, k := range keys {
		if i > 0 {
			mac.Write([]byte{'\n'})
		}
		mac.Write([]byte(k))
		mac.Write([]byte{'='})
		mac.Write([]byte(fields[k]))
	}
	return mac.Sum(nil)
}

func sortedKeys(fields map[string]string) []string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func reserved(k string) bool {
	switch k {
	case keyQueryID, keyUser, keyChat, keyAuthDate, keyStartParam, keyHash:
		return true
	}
	return false
}

// escape is url.QueryEscape with spaces as %20: decoders built on
// decodeURIComponent do not read "+" as a space.
func escape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
