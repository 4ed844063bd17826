package mediahttp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// receipts are the files each user uploaded lately: Attach takes only a
// file its user holds a receipt for, so that knowing a file's SHA-256 is
// not enough to send it (and read it back through one's own message),
// nor to learn whether the node holds it. A receipt lives keep (the
// store's GCGrace) from the upload that gave it; a user keeps at most max,
// the oldest dropped first.
//
// They are durable before the upload is answered: each is a line
// "<user> <sha256> <unix seconds>\n" appended and fsynced to
// <media dir>/receipts/<UTC day>.log (one fsync for the receipts appended
// meanwhile, a group commit), the day's file removed once its
// every line is older than keep. A torn last line (a crash mid-append) is
// skipped at open.
type receipts struct {
	dir  string
	keep time.Duration
	max  int

	mu      sync.Mutex // guards the following; held while a receipt is appended
	users   map[uint64]map[string]time.Time
	written uint64         // receipts appended
	dirty   map[int64]bool // days with receipts appended but not fsynced
	dirOK   map[int64]bool // days whose file's directory entry was fsynced
	// failed is sticky: after an fsync failed, the kernel may have
	// dropped the pages it could not write and a later fsync succeed
	// without them, so no receipt is acknowledged again until a restart
	// reads what is on disk.
	failed error

	syncMu sync.Mutex // serializes the fsyncs; guards synced
	synced uint64     // receipts fsynced
}

// receiptsDir is the directory of the receipts, in the media directory.
const receiptsDir = "receipts"

func utcDay(t time.Time) int64 { return t.Unix() / 86400 }

// loadReceipts loads the receipts younger than keep under dir/receipts
// and removes the day files older than that.
func loadReceipts(dir string, now time.Time, keep time.Duration, max int) (*receipts, error) {
	r := &receipts{
		dir: filepath.Join(dir, receiptsDir), keep: keep, max: max,
		users: make(map[uint64]map[string]time.Time), dirty: make(map[int64]bool), dirOK: make(map[int64]bool),
	}
	if err := mkdirSynced(r.dir); err != nil {
		return nil, fmt.Errorf("mediahttp: open receipts: %w", err)
	}
	names, err := listDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("mediahttp: open receipts: %w", err)
	}
	for _, name := range names {
		day, ok := r.dayOf(name)
		if !ok {
			removeFile(filepath.Join(r.dir, name))
			continue
		}
		if r.stale(day, now) {
			removeFile(filepath.Join(r.dir, name))
			continue
		}
		if err := r.load(filepath.Join(r.dir, name), now); err != nil {
			return nil, fmt.Errorf("mediahttp: open receipts: %w", err)
		}
	}
	return r, nil
}

// dayOf parses a day file's name.
func (r *receipts) dayOf(name string) (int64, bool) {
	d, ok := strings.CutSuffix(name, ".log")
	if !ok {
		return 0, false
	}
	day, err := strconv.ParseInt(d, 10, 64)
	return day, err == nil && day >= 0
}

// stale reports whether every receipt of day is older than keep.
func (r *receipts) stale(day int64, now time.Time) bool {
	return now.Sub(time.Unix((day+1)*86400, 0)) >= r.keep
}

// load reads one day file, skipping malformed lines (a torn last line).
func (r *receipts) load(path string, now time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		user, sha, at, ok := parseReceipt(sc.Text())
		if ok && now.Sub(at) < r.keep {
			r.addLocked(user, sha, at)
		}
	}
	return sc.Err()
}

// parseReceipt parses "<user> <sha256> <unix seconds>".
func parseReceipt(line string) (user uint64, sha string, at time.Time, ok bool) {
	f := strings.Fields(line)
	if len(f) != 3 || !validSHA(f[1]) {
		return 0, "", time.Time{}, false
	}
	user, err1 := strconv.ParseUint(f[0], 10, 64)
	sec, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, "", time.Time{}, false
	}
	return user, f[1], time.Unix(sec, 0), true
}

// validSHA reports whether s is a lowercase hex SHA-256.
func validSHA(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// addLocked records user's receipt for sha at at, dropping the user's
// oldest receipt past max. r.mu must be held (or r not shared yet).
func (r *receipts) addLocked(user uint64, sha string, at time.Time) {
	m := r.users[user]
	if m == nil {
		m = make(map[string]time.Time)
		r.users[user] = m
	}
	if old, ok := m[sha]; ok && old.After(at) {
		return
	}
	m[sha] = at
	if len(m) <= r.max {
		return
	}
	var oldest string
	var t time.Time
	for s, a := range m {
		if oldest == "" || a.Before(t) {
			oldest, t = s, a
		}
	}
	delete(m, oldest)
}

// add gives user a receipt for sha, durably: appended to now's day file
// and fsynced, with the receipts appended meanwhile.
func (r *receipts) add(user uint64, sha string, now time.Time) error {
	line := strconv.FormatUint(user, 10) + " " + sha + " " + strconv.FormatInt(now.Unix(), 10) + "\n"
	day := utcDay(now)
	r.mu.Lock()
	err := r.failed
	if err == nil {
		err = r.appendLocked(day, line)
	}
	if err == nil {
		r.written++
		r.dirty[day] = true
	}
	mine := r.written
	r.mu.Unlock()
	if err == nil {
		err = r.sync(mine)
	}
	if err != nil {
		return fmt.Errorf("mediahttp: receipt: %w", err)
	}
	r.mu.Lock()
	r.addLocked(user, sha, now)
	r.mu.Unlock()
	return nil
}

// sync returns once receipt number n is fsynced: by this call, which
// fsyncs every day file appended to since the last fsync, or by another.
func (r *receipts) sync(n uint64) error {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	r.mu.Lock()
	failed := r.failed
	r.mu.Unlock()
	if failed != nil {
		return failed
	}
	if r.synced >= n {
		return nil
	}
	r.mu.Lock()
	target, days := r.written, r.dirty
	r.dirty = make(map[int64]bool)
	r.mu.Unlock()
	for day := range days {
		// A day file GC removed (a clock gone back) has nothing to keep.
		if err := syncFile(r.dayPath(day)); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.mu.Lock()
			r.failed = fmt.Errorf("receipts: fsync failed; no more receipts until a restart: %w", err)
			r.mu.Unlock()
			return err
		}
	}
	r.synced = target
	return nil
}

// syncFile fsyncs the file at path (any descriptor of it will do).
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (r *receipts) dayPath(day int64) string {
	return filepath.Join(r.dir, strconv.FormatInt(day, 10)+".log")
}

// appendLocked appends line to day's file, ending a torn last line
// first, and fsyncs the directory when the file is new. The caller
// fsyncs the file.
func (r *receipts) appendLocked(day int64, line string) error {
	f, err := os.OpenFile(r.dayPath(day), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err == nil && st.Size() > 0 {
		var last [1]byte
		if _, err = f.ReadAt(last[:], st.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	if err == nil {
		_, err = io.WriteString(f, line)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !r.dirOK[day] {
		// Until the directory entry is fsynced once, every append tries.
		if err = syncDir(r.dir); err == nil {
			r.dirOK[day] = true
		}
	}
	return err
}

// has reports whether user holds a live receipt for sha.
func (r *receipts) has(user uint64, sha string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.users[user][sha]
	return ok && now.Sub(at) < r.keep
}

// expire drops the receipts older than keep and the day files holding
// only such.
func (r *receipts) expire(now time.Time) {
	r.mu.Lock()
	for user, m := range r.users {
		for sha, at := range m {
			if now.Sub(at) >= r.keep {
				delete(m, sha)
			}
		}
		if len(m) == 0 {
			delete(r.users, user)
		}
	}
	r.mu.Unlock()
	names, err := listDir(r.dir)
	if err != nil {
		return
	}
	for _, name := range names {
		if day, ok := r.dayOf(name); ok && r.stale(day, now) {
			removeFile(filepath.Join(r.dir, name))
		}
	}
}
