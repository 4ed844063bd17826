package media

import (
	"fmt"
	"os"
	"time"
)

// doneUpload is a completed upload's record, uploads/<id>.done: which
// blob the upload became, kept GCGrace from its completion so that a
// caller that lost Complete's answer (a crash before it recorded it)
// finds the file again (CompletedUpload).
type doneUpload struct {
	User      uint64    `json:"user"`
	SHA256    string    `json:"sha256"`
	Size      int64     `json:"size"`
	Completed time.Time `json:"completed"`
}

func (s *Store) donePath(id string) string { return s.path("uploads", id+".done") }

// recordDone writes upload u's completion record, durably, before the
// upload is dropped. It is best effort: a failure is logged, and the
// completion stands.
func (s *Store) recordDone(u *upload, sha string, now time.Time) {
	d := doneUpload{User: u.user, SHA256: sha, Size: u.size, Completed: now.UTC()}
	if err := writeJSONAtomic(s.donePath(u.id), d); err != nil {
		s.opts.Log.Error("media: record a completed upload", "id", u.id, "err", err)
		return
	}
	s.umu.Lock()
	s.done[u.id] = d
	s.umu.Unlock()
}

// CompletedUpload returns the file the user's upload id became, if it
// completed within GCGrace and the blob is still stored: for a caller
// that lost Complete's answer, such as a crash between Complete and the
// caller's own record of it. ErrUnknownUpload otherwise.
func (s *Store) CompletedUpload(user uint64, id string) (Info, error) {
	if err := s.checkOpen(); err != nil {
		return Info{}, err
	}
	s.umu.Lock()
	d, ok := s.done[id]
	s.umu.Unlock()
	if !ok || d.User != user || s.now().Sub(d.Completed) >= s.opts.GCGrace {
		return Info{}, fmt.Errorf("%w: %s", ErrUnknownUpload, truncate(id, 40))
	}
	info, err := s.Stat(d.SHA256)
	if err != nil {
		return Info{}, fmt.Errorf("%w: %s: %v", ErrUnknownUpload, id, err)
	}
	return info, nil
}

// loadDone loads completion record id (its file at path), removing it
// when unreadable or older than GCGrace.
func (s *Store) loadDone(id, path string, now time.Time) {
	var d doneUpload
	if err := readJSON(path, &d); err != nil || !validID(id) || !validSHA(d.SHA256) || now.Sub(d.Completed) >= s.opts.GCGrace {
		os.Remove(path)
		return
	}
	s.done[id] = d
}

// expireDone drops the completion records older than GCGrace.
func (s *Store) expireDone(now time.Time) {
	s.umu.Lock()
	var old []string
	for id, d := range s.done {
		if now.Sub(d.Completed) >= s.opts.GCGrace {
			old = append(old, id)
			delete(s.done, id)
		}
	}
	s.umu.Unlock()
	for _, id := range old {
		os.Remove(s.donePath(id))
	}
}
