package mediahttp

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/media"
)

// TestBotUploadsCapped: a user's bot upload tokens waiting for their file
// are capped (ErrTooManyUploads); a completed, expired or failed one
// makes room, and an expired token is gone before GC drops it.
func TestBotUploadsCapped(t *testing.T) {
	f := newFixtureWith(t, media.Options{UploadTTL: time.Hour}, false, func(o *Options) { o.MaxBotUploadsPerUser = 3 })
	var urls, toks []string
	for i := range 3 {
		url, tok, err := f.srv.NewBotUpload(5, "file")
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		urls, toks = append(urls, url), append(toks, tok)
	}
	if _, _, err := f.srv.NewBotUpload(5, "file"); !errors.Is(err, ErrTooManyUploads) {
		t.Fatalf("fourth open upload: %v", err)
	}
	if _, _, err := f.srv.NewBotUpload(6, "file"); err != nil {
		t.Fatalf("another bot: %v", err)
	}
	// A restart keeps the count.
	f.open()
	if _, _, err := f.srv.NewBotUpload(5, "file"); !errors.Is(err, ErrTooManyUploads) {
		t.Fatalf("fourth open upload after a restart: %v", err)
	}
	// A completed upload makes room.
	data := randBytes(6, 1000)
	if code, body := f.botChunk(urls[0], data, 0, 1000); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if _, _, err := f.srv.NewBotUpload(5, "file"); err != nil {
		t.Fatalf("after a completion: %v", err)
	}
	if _, _, err := f.srv.NewBotUpload(5, "file"); !errors.Is(err, ErrTooManyUploads) {
		t.Fatalf("over the cap again: %v", err)
	}
	// Expired tokens are gone at once, GC or not, and make room.
	f.clock.Advance(time.Hour)
	if _, err := f.srv.Resolve(5, toks[1]); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("Resolve of an expired token: %v", err)
	}
	if code, body := f.botChunk(urls[1], data, 0, 1000); code != 404 {
		t.Fatalf("chunk to an expired token: %d %s", code, body)
	}
	for i := range 3 {
		if _, _, err := f.srv.NewBotUpload(5, "file"); err != nil {
			t.Fatalf("upload %d after the others expired: %v", i, err)
		}
	}
}

// crashBeforeRecord rewrites bot upload url's record as a crash between
// the store's completion of its upload and the record's update leaves it
// (Upload set, no File), then restarts; lost also removes the store's
// record of the completion.
func (f *fixture) crashBeforeRecord(lost bool) {
	f.t.Helper()
	ents, _ := os.ReadDir(filepath.Join(f.dir, "bot-uploads"))
	if len(ents) != 1 {
		f.t.Fatalf("records %v", ents)
	}
	p := filepath.Join(f.dir, "bot-uploads", ents[0].Name())
	var rec botRecord
	if err := readJSONFile(p, &rec); err != nil {
		f.t.Fatal(err)
	}
	if rec.Upload == "" || rec.File == nil {
		f.t.Fatalf("record %+v", rec)
	}
	rec.File, rec.Completed = nil, time.Time{}
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		f.t.Fatal(err)
	}
	if lost {
		if err := os.Remove(filepath.Join(f.dir, "uploads", rec.Upload+".done")); err != nil {
			f.t.Fatal(err)
		}
	}
	f.open()
}

// TestBotChunkCrashWindow: a crash after the store completed a bot's
// chunked upload but before its record got the file: at open the record
// gets the file from the store's record of the completion, so a retry is
// 200 and Resolve works, not 404 and ErrNotReady until the token expires.
func TestBotChunkCrashWindow(t *testing.T) {
	f := newFixture(t, media.Options{})
	url, tok, err := f.srv.NewBotUpload(5, "file")
	if err != nil {
		t.Fatal(err)
	}
	data := randBytes(3, 1000)
	if code, body := f.botChunk(url, data, 0, 1000); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	f.crashBeforeRecord(false)
	if code, body := f.botChunk(url, data, 0, 1000); code != 200 {
		t.Fatalf("retry after the restart: %d %s", code, body)
	}
	att, err := f.srv.Resolve(5, tok)
	if err != nil || att.Sha256 != shaOf(data) {
		t.Fatalf("Resolve: %v %v", att, err)
	}
	if err := f.srv.Attach(t.Context(), 5, []*wire.Attachment{att}); err != nil {
		t.Fatalf("Attach: %v", err)
	}
}

// TestBotChunkLost: the same crash with the store's completion record
// lost too leaves the record failed: a retry is 400 upload_failed and
// Resolve ErrUploadFailed; a new token works.
func TestBotChunkLost(t *testing.T) {
	f := newFixture(t, media.Options{})
	url, tok, err := f.srv.NewBotUpload(5, "file")
	if err != nil {
		t.Fatal(err)
	}
	data := randBytes(3, 1000)
	if code, body := f.botChunk(url, data, 0, 1000); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	f.crashBeforeRecord(true)
	code, body := f.botChunk(url, data, 0, 1000)
	wantErr(t, code, body, 400, CodeUploadFailed)
	if _, err := f.srv.Resolve(5, tok); !errors.Is(err, ErrUploadFailed) {
		t.Fatalf("Resolve: %v", err)
	}
	url2, tok2, err := f.srv.NewBotUpload(5, "file")
	if err != nil {
		t.Fatal(err)
	}
	if code, body := f.botChunk(url2, data, 0, 1000); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if att, err := f.srv.Resolve(5, tok2); err != nil || att.Sha256 != shaOf(data) {
		t.Fatalf("Resolve of the new token: %v %v", att, err)
	}
}

// TestBotUploadLivesFromLastChunk: a bot upload's token lives UploadTTL
// from its last chunk, not from its creation, across a restart too.
func TestBotUploadLivesFromLastChunk(t *testing.T) {
	f := newFixture(t, media.Options{UploadTTL: time.Hour})
	url, tok, err := f.srv.NewBotUpload(5, "file")
	if err != nil {
		t.Fatal(err)
	}
	data := randBytes(11, 3000)
	for i := range 3 {
		f.clock.Advance(50 * time.Minute)
		f.srv.gcOnce()
		if code, body := f.botChunk(url, data, i*1000, (i+1)*1000); code != 200 {
			t.Fatalf("chunk %d, %d min after the last: %d %s", i, 50, code, body)
		}
		if i == 1 {
			f.open()
		}
	}
	if att, err := f.srv.Resolve(5, tok); err != nil || att.Sha256 != shaOf(data) {
		t.Fatalf("Resolve: %v %v", att, err)
	}
}
