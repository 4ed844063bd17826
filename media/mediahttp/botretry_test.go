package mediahttp

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gonets/gonets/media"
)

// TestBotRetryAfterRecordFailure: the last chunk's store upload
// completes but the bot record's update fails; the bot retries the
// chunk, is answered 200, and the token resolves (it did not, before the retry wrote the record).
func TestBotRetryAfterRecordFailure(t *testing.T) {
	f := newFixture(t, media.Options{GCGrace: time.Hour})
	data := randBytes(9, 200_000)
	url, tok, err := f.srv.NewBotUpload(5, "video")
	if err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	if code, body := f.botChunk(url, data, 0, n); code != 200 {
		t.Fatalf("chunk 0: %d %s", code, body)
	}
	f.srv.bots.mu.Lock()
	var b *botUpload
	for _, x := range f.srv.bots.m {
		b = x
	}
	f.srv.bots.mu.Unlock()
	p := f.srv.bots.path(b.id)
	// The record cannot be replaced: its path is a non-empty directory.
	os.Rename(p, p+".saved")
	os.MkdirAll(filepath.Join(p, "x"), 0o700)
	code, body := f.botChunk(url, data, n, 2*n)
	t.Logf("last chunk, record update failing: %d %s", code, body)
	os.RemoveAll(p)
	os.Rename(p+".saved", p)
	code, body = f.botChunk(url, data, n, 2*n)
	t.Logf("last chunk retried: %d %s", code, body)
	_, err = f.srv.Resolve(5, tok)
	t.Logf("Resolve: %v", err)
	if code == 200 && err != nil {
		t.Fatalf("chunk answered 200 but the token does not resolve: %v", err)
	}
}
