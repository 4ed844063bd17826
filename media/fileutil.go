package media

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// A streaming copy holds one pooled buffer sized to what it copies, so
// node memory per in-flight request is at most maxCopyBuf whatever the
// file size, and a small file's request holds only a small buffer.
const (
	// maxCopyBuf bounds the buffer of a chunk or of Complete's hash.
	maxCopyBuf = 256 << 10
	// maxPutBuf bounds the buffer of a single-request upload: many small
	// files (photos) are in flight at once, each holding its buffer.
	maxPutBuf = 64 << 10
	// smallPut is the size up to which a single-request upload gets the
	// smallest buffer (a TLS record's, an HTTP/2 frame's): a photo is
	// copied in a dozen writes, and a node with hundreds in flight holds
	// a few MiB of buffers.
	smallPut = 1 << 20
)

// putBuf returns the pooled buffer of a single-request upload of size
// bytes (-1: unknown).
func putBuf(size int64) *[]byte {
	if size >= 0 && size <= smallPut {
		return getCopyBuf(0, maxPutBuf)
	}
	return getCopyBuf(size, maxPutBuf)
}

// copyBufClasses are the pooled buffer sizes, ascending; the last is
// maxCopyBuf.
var copyBufClasses = [...]int{16 << 10, 64 << 10, maxCopyBuf}

var copyBufPools [len(copyBufClasses)]sync.Pool

// getCopyBuf returns a pooled buffer of the smallest class holding
// min(n, limit) bytes (limit itself when n is negative: unknown); give it
// back with putCopyBuf.
func getCopyBuf(n int64, limit int) *[]byte {
	want := limit
	if n >= 0 && n < int64(limit) {
		want = int(n)
	}
	i := 0
	for i < len(copyBufClasses)-1 && copyBufClasses[i] < want {
		i++
	}
	if bp, ok := copyBufPools[i].Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, copyBufClasses[i])
	return &b
}

// putCopyBuf gives back a buffer from getCopyBuf.
func putCopyBuf(bp *[]byte) {
	for i, c := range copyBufClasses {
		if len(*bp) == c {
			copyBufPools[i].Put(bp)
			return
		}
	}
}

// syncDir fsyncs a directory, making a rename or remove in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeJSONAtomic replaces path with v's JSON: write a temporary file,
// fsync it, rename it over path, fsync the directory. A crash leaves
// either the old or the new content.
func writeJSONAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// randomID returns 128 random bits, base64url without padding.
func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validID reports whether id has randomID's shape; anything else is never
// used in a path.
func validID(id string) bool {
	if len(id) != 22 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil
}

// readFull fills buf from r, stopping early only at EOF; it returns the
// bytes read and io.EOF when r ended, nil otherwise.
func readFull(r io.Reader, buf []byte) (int, error) {
	n, err := io.ReadFull(r, buf)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

// checkCtx returns ctx's error, wrapped, once it is done.
func checkCtx(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("media: %w", err)
	}
	return nil
}
