package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
)

// NewClient returns a client on a transport of its own (a clone of
// http.DefaultTransport) that returns a redirect as the answer instead of
// following it: a redirect would carry the credentials elsewhere. The
// transport is returned for closing its idle connections.
func NewClient() (*http.Client, *http.Transport) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, tr
}

// NewRequest returns a request to u under ctx that accepts JSON. A body
// that is not nil is sent as JSON; authHeader, when set, carries
// authValue.
func NewRequest(ctx context.Context, method, u string, body []byte, authHeader, authValue string) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if authHeader != "" {
		req.Header.Set(authHeader, authValue)
	}
	return req, nil
}

// RedactURL replaces the URL a client error (*url.Error) quotes, whose
// path and query may name a person or hold credentials, with logURL, and
// returns err.
func RedactURL(err error, logURL string) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		ue.URL = logURL
	}
	return err
}
