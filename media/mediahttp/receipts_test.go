package mediahttp

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/media"
	"github.com/gonets/gonets/storage"
)

// attach attaches file sha as user and returns Attach's error, giving
// back what it took.
func (f *fixture) attach(user uint64, sha string) error {
	atts := []*wire.Attachment{{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: sha}}
	err := f.srv.Attach(f.t.Context(), storage.UserID(user), atts)
	if err == nil {
		f.srv.Release(atts)
	}
	return err
}

// TestAttachNeedsReceipt: only a file its user uploaded (within GCGrace)
// can be attached; anyone else's attach of it reads as a missing file,
// so knowing a hash neither sends the file nor reveals it is stored. A
// re-upload of stored content, a resumable upload and a bot's upload give
// receipts; they outlive a restart and end with the grace.
func TestAttachNeedsReceipt(t *testing.T) {
	f := newFixture(t, media.Options{GCGrace: 2 * time.Hour})
	data := randBytes(7, 5000)
	file := decode[File](t)(f.req(1, "POST", "/media/upload", bytes.NewReader(data), nil))
	if err := f.attach(1, file.SHA256); err != nil {
		t.Fatalf("the uploader's attach: %v", err)
	}
	stranger := f.attach(2, file.SHA256)
	missing := f.attach(2, strings.Repeat("ab", 32))
	if !errors.Is(stranger, errUnknownFile()) || !errors.Is(missing, errUnknownFile()) {
		t.Fatalf("a stranger's attach: %v; of a missing file: %v", stranger, missing)
	}
	// A re-upload of the same content (deduplicated) gives user 2 one.
	decode[File](t)(f.req(2, "POST", "/media/upload", bytes.NewReader(data), nil))
	if err := f.attach(2, file.SHA256); err != nil {
		t.Fatalf("attach after a re-upload: %v", err)
	}
	// A resumable upload.
	data3 := randBytes(8, 3000)
	up := decode[UploadStatus](t)(f.req(3, "POST", "/media/uploads", strings.NewReader(`{"size":3000}`), nil))
	f.putChunks(3, up.URL, data3, 3000, []int{0})
	if err := f.attach(3, shaOf(data3)); err != nil {
		t.Fatalf("attach after a resumable upload: %v", err)
	}
	// A bot's upload, resolved.
	url, tok, err := f.srv.NewBotUpload(5, "file")
	if err != nil {
		t.Fatal(err)
	}
	data5 := randBytes(9, 2000)
	if code, body := f.botChunk(url, data5, 0, 2000); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	att, err := f.srv.Resolve(5, tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Attach(t.Context(), 5, []*wire.Attachment{att}); err != nil {
		t.Fatalf("the bot's attach: %v", err)
	}
	// A restart keeps them.
	f.open()
	if err := f.attach(1, file.SHA256); err != nil {
		t.Fatalf("attach after a restart: %v", err)
	}
	if err := f.attach(4, file.SHA256); !errors.Is(err, errUnknownFile()) {
		t.Fatalf("a stranger's attach after a restart: %v", err)
	}
	// Past the grace they are gone (the file is referenced and stays).
	f.post(1, 1, []uint64{1}, &wire.Attachment{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: file.SHA256})
	if err := f.srv.Attach(t.Context(), 1, []*wire.Attachment{{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: file.SHA256}}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(3 * time.Hour)
	if err := f.attach(1, file.SHA256); !errors.Is(err, errUnknownFile()) {
		t.Fatalf("attach past the grace: %v", err)
	}
	f.clock.Advance(48 * time.Hour)
	f.srv.gcOnce()
	if ents, _ := os.ReadDir(filepath.Join(f.dir, receiptsDir)); len(ents) != 0 {
		t.Fatalf("day files left after GC: %v", ents)
	}
	if code, _, _ := f.do(1, "GET", "/media/files/"+file.SHA256+"?chat=1&seq=1", nil, nil); code != 200 {
		t.Fatalf("the referenced file: %d", code)
	}
}

// TestReceiptsBoundedAndTorn: a user keeps at most MaxReceiptsPerUser
// receipts, the oldest dropped; a torn last line is skipped at open and
// the next receipt is not lost to it.
func TestReceiptsBoundedAndTorn(t *testing.T) {
	f := newFixtureWith(t, media.Options{}, false, func(o *Options) { o.MaxReceiptsPerUser = 2 })
	var shas []string
	for i := range 3 {
		file := decode[File](t)(f.req(1, "POST", "/media/upload", bytes.NewReader(randBytes(uint64(20+i), 100)), nil))
		shas = append(shas, file.SHA256)
		f.clock.Advance(time.Second)
	}
	if err := f.attach(1, shas[0]); !errors.Is(err, errUnknownFile()) {
		t.Fatalf("the dropped receipt: %v", err)
	}
	for _, sha := range shas[1:] {
		if err := f.attach(1, sha); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(f.dir, receiptsDir))
	if len(ents) != 1 {
		t.Fatalf("day files %v", ents)
	}
	p := filepath.Join(f.dir, receiptsDir, ents[0].Name())
	fh, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteString("9 " + shas[0][:20]) // a crash mid-append
	fh.Close()
	f.open()
	if err := f.attach(9, shas[0]); !errors.Is(err, errUnknownFile()) {
		t.Fatalf("a torn receipt: %v", err)
	}
	file := decode[File](t)(f.req(9, "POST", "/media/upload", bytes.NewReader(randBytes(30, 100)), nil))
	f.open()
	if err := f.attach(9, file.SHA256); err != nil {
		t.Fatalf("the receipt after a torn line: %v", err)
	}
}

// TestReceiptsConcurrent: receipts added at once (one fsync for many)
// are all there, and all there again once reloaded.
func TestReceiptsConcurrent(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r, err := loadReceipts(dir, now, time.Hour, 100)
	if err != nil {
		t.Fatal(err)
	}
	sha := func(i int) string { return shaOf([]byte{byte(i)}) }
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			if err := r.add(uint64(i%4), sha(i), now); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	r2, err := loadReceipts(dir, now.Add(time.Minute), time.Hour, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 64 {
		if !r.has(uint64(i%4), sha(i), now) || !r2.has(uint64(i%4), sha(i), now) {
			t.Fatalf("receipt %d missing", i)
		}
	}
	if r.synced != 64 {
		t.Fatalf("synced %d of 64", r.synced)
	}
}

// TestAttachEdit: an edit may keep the message's files after their
// receipts expired, but not add a file without a receipt.
func TestAttachEdit(t *testing.T) {
	f := newFixture(t, media.Options{GCGrace: time.Hour})
	a := decode[File](t)(f.req(1, "POST", "/media/upload", bytes.NewReader(randBytes(40, 100)), nil))
	b := decode[File](t)(f.req(2, "POST", "/media/upload", bytes.NewReader(randBytes(41, 100)), nil))
	prev := []*wire.Attachment{{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: a.SHA256}}
	if err := f.srv.Attach(t.Context(), 1, prev); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2 * time.Hour)
	kept := []*wire.Attachment{{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: a.SHA256}}
	if err := f.srv.Attach(t.Context(), 1, kept); !errors.Is(err, errUnknownFile()) {
		t.Fatalf("Attach past the receipt: %v", err)
	}
	if err := f.srv.AttachEdit(t.Context(), 1, kept, prev); err != nil {
		t.Fatalf("AttachEdit keeping the file: %v", err)
	}
	added := []*wire.Attachment{kept[0], {Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: b.SHA256}}
	if err := f.srv.AttachEdit(t.Context(), 1, added, prev); !errors.Is(err, errUnknownFile()) {
		t.Fatalf("AttachEdit adding another's file: %v", err)
	}
	if n, _ := f.store.Refs(a.SHA256); n != 2 {
		t.Fatalf("refs %d, want 2 (the message and the kept edit; the refused edit gave its back)", n)
	}
}
