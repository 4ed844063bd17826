package miniapp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testToken = "123456789:AAE-miniapp-known-answer"

// The known-answer vector's fields, as the client would receive them.
var (
	kaUser = `{"id":279058397,"first_name":"Vladislav","last_name":"Kibenko","username":"vdkfrost","language_code":"ru"}`
	kaChat = `{"id":-1001,"type":"group","title":"Team chat"}`
	// kaHash was computed outside Go (Python's hmac and hashlib) over the
	// fields below; checkHashIndependently computes it again with
	// crypto/hmac.
	kaHash = "5e5b0cbbb3550a8212b7c40e0c9de86653e0a5ac5e959947dbd0e83f2e29aa07"
)

func knownAnswerData() LaunchData {
	return LaunchData{
		QueryID: "AAHdF6IQAAAAAN0XohDhrOrc",
		User: User{ID: 279058397, FirstName: "Vladislav", LastName: "Kibenko",
			Username: "vdkfrost", LanguageCode: "ru"},
		Chat:       &Chat{ID: -1001, Type: "group", Title: "Team chat"},
		AuthDate:   time.Unix(1662771648, 0),
		StartParam: "promo_42",
		Extra:      map[string]string{"chat_type": "group", "signature": "c2lnbmF0dXJl"},
	}
}

// checkHashIndependently computes the documented scheme step by step,
// sharing no code with the package.
func checkHashIndependently(token string, lines []string) string {
	secret := hmac.New(sha256.New, []byte("WebAppData"))
	secret.Write([]byte(token))
	mac := hmac.New(sha256.New, secret.Sum(nil))
	mac.Write([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(mac.Sum(nil))
}

func TestSignKnownAnswer(t *testing.T) {
	lines := []string{ // sorted by key by hand
		"auth_date=1662771648",
		"chat=" + kaChat,
		"chat_type=group",
		"query_id=AAHdF6IQAAAAAN0XohDhrOrc",
		"signature=c2lnbmF0dXJl",
		"start_param=promo_42",
		"user=" + kaUser,
	}
	if got := checkHashIndependently(testToken, lines); got != kaHash {
		t.Fatalf("independent hash = %s, want the precomputed %s", got, kaHash)
	}
	got, err := Sign(testToken, knownAnswerData())
	if err != nil {
		t.Fatal(err)
	}
	want := "auth_date=1662771648" +
		"&chat=" + url.QueryEscape(kaChat) +
		"&chat_type=group" +
		"&query_id=AAHdF6IQAAAAAN0XohDhrOrc" +
		"&signature=c2lnbmF0dXJl" +
		"&start_param=promo_42" +
		"&user=" + url.QueryEscape(kaUser) +
		"&hash=" + kaHash
	want = strings.ReplaceAll(want, "+", "%20")
	if got != want {
		t.Fatalf("Sign =\n%s\nwant\n%s", got, want)
	}
	q, err := url.ParseQuery(got)
	if err != nil {
		t.Fatal(err)
	}
	if q.Get("user") != kaUser || q.Get("chat") != kaChat {
		t.Fatalf("user/chat decode to %q, %q", q.Get("user"), q.Get("chat"))
	}
}

// A validator written from the documentation alone (as bot authors'
// existing ones are) accepts what Sign produced, however it decodes.
func TestSignAcceptedByPlainValidator(t *testing.T) {
	s, err := Sign(testToken, LaunchData{
		User:     User{ID: 1, FirstName: "Anna Maria", LastName: "O'Neil & Co"},
		AuthDate: time.Unix(1700000000, 0),
		Extra:    map[string]string{"note": "a+b=c ü"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s, "+") {
		t.Fatalf("Sign used '+' for a space: %s", s)
	}
	var lines []string
	var hash string
	for _, part := range strings.Split(s, "&") {
		k, v, _ := strings.Cut(part, "=")
		v, err := url.PathUnescape(v) // decodeURIComponent: '+' is not a space
		if err != nil {
			t.Fatal(err)
		}
		if k == "hash" {
			hash = v
			continue
		}
		lines = append(lines, k+"="+v)
	}
	if got := checkHashIndependently(testToken, lines); got != hash {
		t.Fatalf("plain validator computed %s, Sign's hash is %s", got, hash)
	}
}

func TestValidateKnownAnswer(t *testing.T) {
	// The fields in the order a Telegram client sends them, not sorted,
	// with spaces as '+' as URLSearchParams writes them.
	initData := "query_id=AAHdF6IQAAAAAN0XohDhrOrc" +
		"&user=" + url.QueryEscape(kaUser) +
		"&chat=" + url.QueryEscape(kaChat) +
		"&chat_type=group&auth_date=1662771648&start_param=promo_42" +
		"&signature=c2lnbmF0dXJl&hash=" + kaHash
	now := time.Unix(1662771648+60, 0)
	got, err := Validate(initData, testToken, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	assertSame(t, got, knownAnswerData())
}

func TestRoundTrip(t *testing.T) {
	now := time.Unix(1750000000, 0)
	for _, d := range []LaunchData{
		knownAnswerData(),
		{AuthDate: now},
		{User: User{ID: 7, FirstName: "Пётр", PhotoURL: "https://example.org/p.jpg?a=1&b=2"}, AuthDate: now},
		{QueryID: "q", Chat: &Chat{ID: 9, Type: "dialog"}, AuthDate: now.Add(-time.Minute),
			Extra: map[string]string{"empty": "", "spaced key": "x y", "json": `{"a":[1,2]}`}},
	} {
		s, err := Sign(testToken, d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Validate(s, testToken, 0, now)
		if err != nil {
			t.Fatalf("Validate(%s): %v", s, err)
		}
		assertSame(t, got, d)
	}
}

func TestValidateRefuses(t *testing.T) {
	now := time.Unix(1750000000, 0)
	d := knownAnswerData()
	d.AuthDate = now.Add(-10 * time.Minute)
	good, err := Sign(testToken, d)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(auth time.Time) string {
		d := d
		d.AuthDate = auth
		s, err := Sign(testToken, d)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// A part of good by key, to rebuild it.
	parts := strings.Split(good, "&")
	without := func(key string) []string {
		var out []string
		for _, p := range parts {
			if !strings.HasPrefix(p, key+"=") {
				out = append(out, p)
			}
		}
		return out
	}
	hashPart := parts[len(parts)-1]
	reordered := append([]string{hashPart}, parts[:len(parts)-1]...)
	for i, j := 1, len(reordered)-1; i < j; i, j = i+1, j-1 {
		reordered[i], reordered[j] = reordered[j], reordered[i]
	}
	tamperedUser := strings.Replace(good, url.QueryEscape(`"id":279058397`), url.QueryEscape(`"id":279058398`), 1)
	if tamperedUser == good {
		t.Fatal("the tamper did not change the data")
	}
	for _, c := range []struct {
		name     string
		initData string
		token    string
		maxAge   time.Duration
		want     error
	}{
		{"valid", good, testToken, time.Hour, nil},
		{"reordered", strings.Join(reordered, "&"), testToken, time.Hour, nil},
		{"trailing ampersand", good + "&", testToken, time.Hour, nil},
		{"tampered user", tamperedUser, testToken, time.Hour, ErrBadHash},
		{"added field", good + "&admin=1", testToken, time.Hour, ErrBadHash},
		{"dropped field", strings.Join(without("start_param"), "&"), testToken, time.Hour, ErrBadHash},
		{"wrong token", good, testToken + "x", time.Hour, ErrBadHash},
		{"empty token", good, "", time.Hour, ErrBadHash},
		{"hash not hex", strings.Join(append(without("hash"), "hash=zz"), "&"), testToken, time.Hour, ErrBadHash},
		{"hash short", strings.Join(append(without("hash"), "hash="+kaHash[:62]), "&"), testToken, time.Hour, ErrBadHash},
		{"missing hash", strings.Join(without("hash"), "&"), testToken, time.Hour, ErrNoHash},
		{"empty", "", testToken, time.Hour, ErrNoHash},
		{"duplicate key", good + "&" + parts[0], testToken, time.Hour, ErrMalformed},
		{"duplicate hash", good + "&" + hashPart, testToken, time.Hour, ErrMalformed},
		{"duplicate key encoded", good + "&auth%5Fdate=1", testToken, time.Hour, ErrMalformed},
		{"field without =", "auth_date&" + hashPart, testToken, time.Hour, ErrMalformed},
		{"bad escape", "user=%zz&" + hashPart, testToken, time.Hour, ErrMalformed},
		{"too long", strings.Repeat("a", maxInitDataLen+1), testToken, time.Hour, ErrMalformed},
		{"expired", good, testToken, 5 * time.Minute, ErrExpired},
		{"just in age", sign(now.Add(-time.Hour)), testToken, time.Hour, nil},
		{"just past age", sign(now.Add(-time.Hour - time.Second)), testToken, time.Hour, ErrExpired},
		{"future within skew", sign(now.Add(MaxClockSkew)), testToken, time.Hour, nil},
		{"future", sign(now.Add(MaxClockSkew + time.Second)), testToken, time.Hour, ErrExpired},
		{"future, no max age", sign(now.Add(time.Hour)), testToken, 0, ErrExpired},
		{"old, no max age", sign(now.Add(-24 * 365 * time.Hour)), testToken, 0, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Validate(c.initData, c.token, c.maxAge, now)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("Validate = %v, want %v", err, c.want)
			}
			if err == nil && got.User.ID != 279058397 {
				t.Fatalf("user id %d", got.User.ID)
			}
			if err != nil && !reflect.DeepEqual(got, LaunchData{}) {
				t.Fatalf("data returned with an error: %+v", got)
			}
		})
	}
}

// Fields signed correctly but not as Sign would write them: refused after
// the hash is checked, because the data inside cannot be trusted to mean
// one thing.
func TestValidateRefusesSignedNonsense(t *testing.T) {
	now := time.Unix(1750000000, 0)
	auth := strconv.FormatInt(now.Unix(), 10)
	for _, c := range []struct {
		name  string
		lines []string // key=value, sorted
	}{
		{"no auth_date", []string{"query_id=q"}},
		{"auth_date text", []string{"auth_date=yesterday"}},
		{"auth_date zero", []string{"auth_date=0"}},
		{"user not JSON", []string{"auth_date=" + auth, "user={id:1"}},
		{"user id text", []string{"auth_date=" + auth, `user={"id":"1"}`}},
		{"chat not JSON", []string{"auth_date=" + auth, "chat=[]"}},
		{"line feed in value", []string{"auth_date=" + auth, "note=a\nb=c"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var q []string
			for _, l := range c.lines {
				k, v, _ := strings.Cut(l, "=")
				q = append(q, url.QueryEscape(k)+"="+url.QueryEscape(v))
			}
			q = append(q, "hash="+checkHashIndependently(testToken, c.lines))
			_, err := Validate(strings.Join(q, "&"), testToken, time.Hour, now)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Validate = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	now := time.Unix(1750000000, 0)
	for _, c := range []struct {
		name  string
		token string
		d     LaunchData
	}{
		{"empty token", "", LaunchData{AuthDate: now}},
		{"no auth date", testToken, LaunchData{QueryID: "q"}},
		{"auth date before 1970", testToken, LaunchData{AuthDate: time.Unix(-5, 0)}},
		{"reserved extra", testToken, LaunchData{AuthDate: now, Extra: map[string]string{"user": "{}"}}},
		{"hash in extra", testToken, LaunchData{AuthDate: now, Extra: map[string]string{"hash": "00"}}},
		{"empty key", testToken, LaunchData{AuthDate: now, Extra: map[string]string{"": "x"}}},
		{"= in key", testToken, LaunchData{AuthDate: now, Extra: map[string]string{"a=b": "x"}}},
		{"line feed in value", testToken, LaunchData{AuthDate: now, StartParam: "a\nauth_date=1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if s, err := Sign(c.token, c.d); err == nil {
				t.Fatalf("Sign = %q, want an error", s)
			}
		})
	}
}

func assertSame(t *testing.T, got, want LaunchData) {
	t.Helper()
	if !got.AuthDate.Equal(want.AuthDate) {
		t.Errorf("AuthDate = %v, want %v", got.AuthDate, want.AuthDate)
	}
	got.AuthDate, want.AuthDate = time.Time{}, time.Time{}
	if len(want.Extra) == 0 {
		want.Extra = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v (chat %+v)\nwant %+v (chat %+v)", got, got.Chat, want, want.Chat)
	}
}

func FuzzValidate(f *testing.F) {
	now := time.Unix(1750000000, 0)
	good, err := Sign(testToken, knownAnswerData())
	if err != nil {
		f.Fatal(err)
	}
	recent := knownAnswerData()
	recent.AuthDate = now
	fresh, err := Sign(testToken, recent)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, fresh, "", "hash=", "&&&", "a=%", "auth_date=1&hash=" + kaHash,
		fresh + "&" + fresh, strings.ReplaceAll(fresh, "%22", "%27")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, initData string) {
		d, err := Validate(initData, testToken, time.Hour, now)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNoHash) &&
				!errors.Is(err, ErrBadHash) && !errors.Is(err, ErrExpired) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		// Whatever validates signs back to data that validates the same.
		again, err := Sign(testToken, d)
		if err != nil {
			t.Fatalf("Sign of validated data: %v", err)
		}
		d2, err := Validate(again, testToken, time.Hour, now)
		if err != nil {
			t.Fatalf("Validate(Sign(Validate(x))): %v", err)
		}
		if d2.QueryID != d.QueryID || d2.StartParam != d.StartParam || !d2.AuthDate.Equal(d.AuthDate) ||
			d2.User != d.User {
			t.Fatalf("round trip changed the data: %+v vs %+v", d2, d)
		}
	})
}

func BenchmarkValidate(b *testing.B) {
	now := time.Unix(1662771648, 0)
	s, err := Sign(testToken, knownAnswerData())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if _, err := Validate(s, testToken, time.Hour, now); err != nil {
			b.Fatal(err)
		}
	}
}
