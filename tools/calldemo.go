package tools

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"time"
)

// The call demo is a page the public listener serves at /calls/demo when
// calls are on: plain HTML, CSS and JavaScript embedded in the binary, no
// build step and nothing loaded from elsewhere. It publishes the camera and
// microphone into a channel's live stream over WHIP and plays a channel's
// stream over WHEP (see calldemo/demo.js).
//
//go:embed calldemo/index.html calldemo/demo.js calldemo/demo.css
var callDemoFS embed.FS

// callDemoCSP is the demo's Content-Security-Policy: its own script, style
// and fetches (WHIP and WHEP on the same origin), its video elements'
// media streams, and nothing else: no inline script, no other origin, no
// framing.
const callDemoCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"media-src 'self' mediastream: blob:; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// callDemoFile is one file of the demo, read once from callDemoFS.
type callDemoFile struct {
	body        []byte
	contentType string
	etag        string // quoted: a hash of the body
}

// callDemo serves the demo's files; it holds no state but the files.
type callDemo struct {
	files map[string]callDemoFile // by URL path
}

// newCallDemo reads the demo's files.
func newCallDemo() (*callDemo, error) {
	d := &callDemo{files: make(map[string]callDemoFile)}
	for _, f := range []struct{ path, file, contentType string }{
		{"/calls/demo", "calldemo/index.html", "text/html; charset=utf-8"},
		{"/calls/demo/demo.js", "calldemo/demo.js", "text/javascript; charset=utf-8"},
		{"/calls/demo/demo.css", "calldemo/demo.css", "text/css; charset=utf-8"},
	} {
		b, err := callDemoFS.ReadFile(f.file)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		d.files[f.path] = callDemoFile{body: b, contentType: f.contentType, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	}
	return d, nil
}

// ServeHTTP serves GET and HEAD of the demo's files, revalidated on every
// load (its ETag), with the headers that keep the page to itself.
func (d *callDemo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := d.files[r.URL.Path]
	if !ok {
		publicError(w, http.StatusNotFound, "not_found", "no such path")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		publicError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here")
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Security-Policy", callDemoCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Permissions-Policy", "camera=(self), microphone=(self)")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
