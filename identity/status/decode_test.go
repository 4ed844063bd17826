package status

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestDecodeHistory(t *testing.T) {
	apps, err := decodeHistory([]byte(`{"applications":[{"order_id":"o1","service":"Паспорт","extra":1,"statuses":[
		{"code":"accepted","title":"Принято","at":"2026-01-02T15:04:05+03:00"},
		{"code":"done","title":"Готово","at":"2026-01-03T10:00:00.5Z","final":true}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Status{Code: "done", Title: "Готово", At: time.Date(2026, 1, 3, 10, 0, 0, 5e8, time.UTC), Final: true}
	if len(apps) != 1 || apps[0].Service != "Паспорт" || len(apps[0].Statuses) != 2 || !apps[0].Statuses[1].At.Equal(want.At) || apps[0].Statuses[1].Final != true {
		t.Fatalf("got %+v", apps)
	}
	if apps, err := decodeHistory([]byte(`{"applications":[]}`)); apps != nil || err != nil {
		t.Fatalf("empty list: %v %v", apps, err)
	}
	for _, body := range []string{
		``, `nil`, `{}`, `{"applications":null}`, `{"applications":{}}`, `{"applications":[]} trailing`,
		`{"applications":[{"order_id":"","statuses":[]}]}`,
		`{"applications":[{"order_id":"o","statuses":[{"code":"c","at":"yesterday"}]}]}`,
		`{"applications":[{"order_id":"o","statuses":[{"code":"c"}]}]}`,
		`{"applications":[{"order_id":"o","statuses":[{"code":"","at":"2026-01-02T15:04:05Z"}]}]}`,
		`{"applications":[{"order_id":"o"},{"order_id":"o"}]}`,
	} {
		if _, err := decodeHistory([]byte(body)); !errors.Is(err, ErrInvalidResponse) {
			t.Errorf("decodeHistory(%s): err %v, want ErrInvalidResponse", body, err)
		}
	}
}

func FuzzDecodeHistory(f *testing.F) {
	f.Add([]byte(`{"applications":[{"order_id":"o1","service":"s","statuses":[{"code":"c","title":"t","at":"2026-01-02T15:04:05+03:00","final":true}]}]}`))
	f.Add([]byte(`{"applications":[]}`))
	f.Add([]byte(`{"applications":[{"order_id":"o"},{"order_id":"o"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		apps, err := decodeHistory(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("error %v does not wrap ErrInvalidResponse", err)
			}
			return
		}
		if err := Validate(apps); err != nil {
			t.Fatalf("decoded answer fails Validate: %v", err)
		}
	})
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                               0,
		"7":                              7 * time.Second,
		" 120 ":                          2 * time.Minute,
		"0":                              0,
		"-3":                             0,
		"1.5":                            0,
		"soon":                           0,
		"99999999999999999999":           0, // over uint63: malformed
		"9223372036":                     9223372036 * time.Second,
		"9223372037":                     math.MaxInt64,
		"Sun, 01 Mar 2026 09:01:30 GMT":  90 * time.Second,
		"Sunday, 01-Mar-26 09:00:10 GMT": 10 * time.Second,
		"Sun Mar  1 09:00:05 2026":       5 * time.Second,
		"Sun, 01 Mar 2026 08:00:00 GMT":  0, // past
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}
