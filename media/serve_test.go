package media

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestServeContent: what Open returns serves ranges and conditional
// requests through http.ServeContent.
func TestServeContent(t *testing.T) {
	s := openStore(t, t.TempDir(), newClock(), Options{})
	data := randBytes(20, 10000)
	info, err := s.Put(t.Context(), 1, bytes.NewReader(data), int64(len(data)), Meta{Name: "d.bin"})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(h http.Header) *httptest.ResponseRecorder {
		f, fi, err := s.Open(info.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		req := httptest.NewRequest("GET", "/media/"+fi.SHA256, nil)
		req.Header = h
		w := httptest.NewRecorder()
		w.Header().Set("ETag", fi.ETag())
		w.Header().Set("Content-Type", fi.MIME)
		http.ServeContent(w, req, "", fi.Created, f)
		return w
	}
	w := serve(http.Header{"Range": {"bytes=100-199"}})
	if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), data[100:200]) ||
		w.Header().Get("Content-Range") != "bytes 100-199/10000" {
		t.Fatalf("range: %d %q, %d bytes", w.Code, w.Header().Get("Content-Range"), w.Body.Len())
	}
	if w := serve(http.Header{"If-None-Match": {info.ETag()}}); w.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", w.Code)
	}
	if w := serve(http.Header{}); w.Code != 200 || !bytes.Equal(w.Body.Bytes(), data) || w.Header().Get("ETag") != `"`+info.SHA256+`"` {
		t.Fatalf("full: %d, %d bytes", w.Code, w.Body.Len())
	}
}
