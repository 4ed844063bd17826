package mediahttp

import (
	"fmt"
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

// TestCompletionsEvictOldestFinished: past maxCompletions the oldest
// finished completion is forgotten, never a running one.
func TestCompletionsEvictOldestFinished(t *testing.T) {
	c := completions{m: make(map[string]*completion)}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := range maxCompletions {
		x, _ := c.start(1, fmt.Sprint("id", i))
		if i%2 == 0 {
			c.finish(x, File{}, nil, t0.Add(time.Duration(maxCompletions-i)*time.Second))
		}
	}
	c.start(1, "next")
	if len(c.m) != maxCompletions || c.m["id0"] == nil || c.m[fmt.Sprint("id", maxCompletions-2)] != nil {
		t.Fatalf("after one more: %d remembered, the oldest finished kept: %v", len(c.m), c.m[fmt.Sprint("id", maxCompletions-2)] != nil)
	}
	for id, x := range c.m { // only running ones left
		select {
		case <-x.ready:
			delete(c.m, id)
		default:
		}
	}
	n := len(c.m)
	c.start(1, "more")
	if len(c.m) != n+1 {
		t.Fatalf("a running completion forgotten: %d, want %d", len(c.m), n+1)
	}
}
