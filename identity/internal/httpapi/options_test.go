package httpapi

import (
	"strings"
	"testing"
	"time"
)

var testDefaults = Options{
	Timeout: 10 * time.Second, Retries: 3, BackoffBase: 200 * time.Millisecond, BackoffMax: 5 * time.Second,
	MaxResponse: 1 << 20,
}

func TestNormalizeDefaults(t *testing.T) {
	o := Options{BaseURL: "https://sign.example/api/", AuthHeader: "Authorization", AuthValue: "Bearer x"}
	u, err := o.Normalize(testDefaults)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "https" || u.Host != "sign.example" || u.Path != "/api/" {
		t.Errorf("url = %v", u)
	}
	want := testDefaults
	want.BaseURL, want.AuthHeader, want.AuthValue = o.BaseURL, o.AuthHeader, o.AuthValue
	if o != want {
		t.Errorf("filled %+v, want %+v", o, want)
	}
}

func TestNormalizeKeepsSetFields(t *testing.T) {
	o := Options{BaseURL: "http://127.0.0.1:8080", Timeout: time.Second, Retries: -1,
		BackoffBase: time.Millisecond, BackoffMax: time.Millisecond, MaxResponse: 7}
	if _, err := o.Normalize(testDefaults); err != nil {
		t.Fatal(err)
	}
	want := Options{BaseURL: o.BaseURL, Timeout: time.Second, Retries: 0,
		BackoffBase: time.Millisecond, BackoffMax: time.Millisecond, MaxResponse: 7}
	if o != want {
		t.Errorf("filled %+v, want %+v", o, want)
	}
	o = Options{BaseURL: "http://h", Retries: 5}
	if _, err := o.Normalize(testDefaults); err != nil || o.Retries != 5 {
		t.Errorf("Retries 5: %d, %v", o.Retries, err)
	}
}

func TestNormalizeNoMaxResponseDefault(t *testing.T) {
	def := testDefaults
	def.MaxResponse = 0
	o := Options{BaseURL: "http://h"}
	if _, err := o.Normalize(def); err != nil || o.MaxResponse != 0 || o.Timeout != def.Timeout {
		t.Errorf("got %+v, %v", o, err)
	}
	o = Options{BaseURL: "http://h", Timeout: -1}
	if _, err := o.Normalize(def); err == nil || err.Error() != "negative timeout or backoff" {
		t.Errorf("negative timeout without a limit option: %v", err)
	}
}

func TestNormalizeErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		o    Options
		want string
	}{
		"no URL":                 {Options{}, `base URL "" is not an http(s) URL without a query`},
		"ftp":                    {Options{BaseURL: "ftp://h"}, "is not an http(s) URL"},
		"no host":                {Options{BaseURL: "http:///x"}, "is not an http(s) URL"},
		"query":                  {Options{BaseURL: "http://h/?a=1"}, "is not an http(s) URL"},
		"fragment":               {Options{BaseURL: "http://h/#f"}, "is not an http(s) URL"},
		"unparsable":             {Options{BaseURL: "http://h\x7f/"}, "is not an http(s) URL"},
		"bad header name":        {Options{BaseURL: "http://h", AuthHeader: "Auth orization"}, `auth header "Auth orization" is not a valid header`},
		"bad value":              {Options{BaseURL: "http://h", AuthHeader: "Authorization", AuthValue: "a\nb"}, "is not a valid header"},
		"value only":             {Options{BaseURL: "http://h", AuthValue: "x"}, "auth value without a header name"},
		"timeout":                {Options{BaseURL: "http://h", Timeout: -1}, "negative timeout, backoff or limit"},
		"base":                   {Options{BaseURL: "http://h", BackoffBase: -1}, "negative timeout, backoff or limit"},
		"max under base":         {Options{BaseURL: "http://h", BackoffBase: time.Second, BackoffMax: time.Millisecond}, "negative timeout, backoff or limit"},
		"default max under base": {Options{BaseURL: "http://h", BackoffBase: time.Minute}, "negative timeout, backoff or limit"},
		"limit":                  {Options{BaseURL: "http://h", MaxResponse: -1}, "negative timeout, backoff or limit"},
	} {
		o := tc.o
		_, err := o.Normalize(testDefaults)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", name, err, tc.want)
		}
	}
}
