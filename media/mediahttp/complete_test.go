package mediahttp

import (
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/media"
)

// TestCompleteNotBoundedByFinishTimeout: the deadline of the work after
// a file is stored (the thumbnail) does not bound hashing a completed
// upload, which on a slow disk takes as long as the file's size needs.
func TestCompleteNotBoundedByFinishTimeout(t *testing.T) {
	old := finishTimeout
	finishTimeout = time.Nanosecond // a disk far slower than the file
	t.Cleanup(func() { finishTimeout = old })
	f := newFixture(t, media.Options{})
	data := randBytes(4, 200_000)
	up := decode[UploadStatus](t)(f.req(1, "POST", "/media/uploads", strings.NewReader(`{"size":200000}`), nil))
	st := f.putChunks(1, up.URL, data, 64<<10, []int{0, 1, 2, 3})
	var file *File
	for _, a := range st {
		if a.Complete {
			file = a.File
		}
	}
	if file == nil || file.SHA256 != shaOf(data) {
		t.Fatalf("not completed: %+v", st)
	}
}
