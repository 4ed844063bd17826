package httpapi

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Options are the settings the adapters' options share. An adapter copies
// its own options in, calls Normalize and copies the filled fields back.
type Options struct {
	// BaseURL is the API's root: http or https, with a host, without a
	// query or a fragment.
	BaseURL string
	// AuthHeader and AuthValue are one request header with the
	// credentials; a value needs a header name.
	AuthHeader string
	AuthValue  string
	// Timeout bounds each attempt.
	Timeout time.Duration
	// Retries is the number of attempts after the first; negative means
	// none.
	Retries int
	// BackoffBase is the wait before the first retry; BackoffMax caps one
	// wait and is at least BackoffBase.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxResponse caps the response bytes read.
	MaxResponse int64
}

// Normalize validates o's base URL and auth header, fills o's zero fields
// from def, turns negative Retries into 0 and returns the parsed base
// URL. A def.MaxResponse of 0 means the adapter has no such option: o's
// is then left alone and not checked. Errors name the bad setting.
func (o *Options) Normalize(def Options) (*url.URL, error) {
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("base URL %q is not an http(s) URL without a query", o.BaseURL)
	}
	if o.AuthHeader != "" && (!httpguts.ValidHeaderFieldName(o.AuthHeader) || !httpguts.ValidHeaderFieldValue(o.AuthValue)) {
		return nil, fmt.Errorf("auth header %q is not a valid header", o.AuthHeader)
	}
	if o.AuthHeader == "" && o.AuthValue != "" {
		return nil, errors.New("auth value without a header name")
	}
	if o.Timeout == 0 {
		o.Timeout = def.Timeout
	}
	if o.Retries == 0 {
		o.Retries = def.Retries
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	if o.BackoffBase == 0 {
		o.BackoffBase = def.BackoffBase
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = def.BackoffMax
	}
	if def.MaxResponse == 0 {
		if o.Timeout < 0 || o.BackoffBase < 0 || o.BackoffMax < o.BackoffBase {
			return nil, errors.New("negative timeout or backoff")
		}
		return u, nil
	}
	if o.MaxResponse == 0 {
		o.MaxResponse = def.MaxResponse
	}
	if o.Timeout < 0 || o.BackoffBase < 0 || o.BackoffMax < o.BackoffBase || o.MaxResponse < 0 {
		return nil, errors.New("negative timeout, backoff or limit")
	}
	return u, nil
}
