package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// probeFile is written, synced and removed in the store's directory before
// Pebble opens it, to learn whether the disk takes writes at all.
const probeFile = "gonets-probe.tmp"

// probeBytes is the size of the probe write.
const probeBytes = 4 << 10

// minFreeBytes is the free space opening needs beside the WAL to replay:
// a new WAL, OPTIONS and MANIFEST files and their first records.
const minFreeBytes = 1 << 20

// checkSpace returns an error wrapping ErrNoSpace when dir has no room to
// open the store, or the disk's error when it refuses writes: a probe file
// must be written and synced, and the free space (where the file system
// reports it) must hold the newest WAL, which opening replays into a
// table, plus minFreeBytes. Opening without this check on a full disk
// left Pebble retrying the replay's flush forever.
func checkSpace(vfsys vfs.FS, dir string) error {
	if err := probe(vfsys, dir); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("%w in %s", ErrNoSpace, dir)
		}
		return fmt.Errorf("storage: open %q: the disk does not take writes: %w", dir, err)
	}
	du, err := vfsys.GetDiskUsage(dir)
	if err != nil {
		return nil // not reported (an in-memory file system): the probe decides
	}
	need := uint64(minFreeBytes) + newestWALBytes(vfsys, dir)
	if du.AvailBytes < need {
		return fmt.Errorf("%w in %s (%s free, opening needs about %s)",
			ErrNoSpace, dir, mib(du.AvailBytes), mib(need))
	}
	return nil
}

// probe writes, syncs and removes probeFile in dir.
func probe(vfsys vfs.FS, dir string) (err error) {
	name := vfsys.PathJoin(dir, probeFile)
	_ = vfsys.Remove(name) // left by a crash between create and remove
	f, err := vfsys.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, vfsys.Remove(name))
	}()
	_, err = f.Write(make([]byte, probeBytes))
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// newestWALBytes returns the size of the highest-numbered WAL in dir, or 0.
func newestWALBytes(vfsys vfs.FS, dir string) uint64 {
	names, err := vfsys.List(dir)
	if err != nil {
		return 0
	}
	var newest string
	var newestNum uint64
	for _, n := range names {
		num, ok := strings.CutSuffix(n, ".log")
		if !ok {
			continue
		}
		if v, err := strconv.ParseUint(num, 10, 64); err == nil && (newest == "" || v > newestNum) {
			newest, newestNum = n, v
		}
	}
	if newest == "" {
		return 0
	}
	fi, err := vfsys.Stat(vfsys.PathJoin(dir, newest))
	if err != nil {
		return 0
	}
	return uint64(fi.Size())
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// lockDir takes the store directory's lock, which the store holds until
// Close, across reopens after a failure.
func lockDir(vfsys vfs.FS, dir string) (*pebble.Lock, error) {
	lock, err := pebble.LockDirectory(dir, vfsys)
	if err == nil {
		return lock, nil
	}
	var pe *fs.PathError
	switch {
	case strings.Contains(err.Error(), "lock held by current process"),
		!errors.As(err, &pe) && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES)):
		return nil, fmt.Errorf("%w in %s", ErrLocked, dir)
	case errors.Is(err, syscall.ENOSPC):
		return nil, fmt.Errorf("%w in %s", ErrNoSpace, dir)
	}
	return nil, fmt.Errorf("storage: open %q: lock: %w", dir, err)
}

// walFS is the file system Pebble runs on: Options.FS with the WAL files
// Pebble writes watched. During a memtable rotation Pebble closes the
// previous WAL and creates the next with its DB mutex released, and
// panics if either fails; the panic unwinds through a deferred unlock of
// that mutex, a runtime fatal error ("sync: unlock of unlocked mutex")
// that no recover catches. While armed (the store is open and not closing
// its database), walFS ends the process with the store's fatal line
// before Pebble sees a WAL close fail; a failed WAL creation is caught by
// the WALCreated event.
type walFS struct {
	vfs.FS
	armed *atomic.Bool
	fatal func(what string)
}

// Create implements vfs.FS.
func (w walFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := w.FS.Create(name, category)
	return w.watch(name, f, err)
}

// ReuseForWrite implements vfs.FS.
func (w walFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := w.FS.ReuseForWrite(oldname, newname, category)
	return w.watch(newname, f, err)
}

func (w walFS) watch(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &walFile{File: f, fs: w, name: name}, nil
}

// walFile is a WAL being written. It remembers the first failure of a
// write or sync, which Pebble's log writer keeps and returns on Close.
type walFile struct {
	vfs.File
	fs     walFS
	name   string
	failed atomic.Pointer[error]
}

func (f *walFile) note(err error) error {
	if err != nil {
		e := err // a copy, so that only a failure allocates
		f.failed.CompareAndSwap(nil, &e)
	}
	return err
}

func (f *walFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	return n, f.note(err)
}

func (f *walFile) Sync() error { return f.note(f.File.Sync()) }

func (f *walFile) SyncData() error { return f.note(f.File.SyncData()) }

func (f *walFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	return full, f.note(err)
}

// Preallocate is not watched: Pebble ignores its failure (a file system
// without fallocate, or less free space than a preallocation block of
// 110% of a memtable), and the WAL goes on unharmed; the writes that
// follow fail on their own if the disk is really full.
func (f *walFile) Preallocate(offset, length int64) error {
	return f.File.Preallocate(offset, length)
}

// Close closes the file. Pebble closes a WAL outside DB.Close only in a
// rotation, where any failure of the file is a panic: end the process
// first.
func (f *walFile) Close() error {
	err := f.File.Close()
	if f.fs.armed.Load() {
		if p := f.failed.Load(); p != nil {
			f.fs.fatal(fmt.Sprintf("finish WAL %s in a rotation: %v", f.name, *p))
		}
		if err != nil {
			f.fs.fatal(fmt.Sprintf("close WAL %s in a rotation: %v", f.name, err))
		}
	}
	return err
}
