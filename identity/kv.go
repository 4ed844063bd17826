package identity

import (
	"bytes"
	"errors"
	"slices"
	"sync"
)

// KV is a durable key-value table: the state-service adapters keep their
// records in one (signing requests, the statuses already posted). Keys
// are compared bytewise. Set and Delete are durable when they return: a
// crash after one keeps it. Values are the caller's bytes; a table of the
// accounts' store seals them at rest (Accounts.Table).
type KV interface {
	// Get returns a copy of key's value, or found false.
	Get(key []byte) (value []byte, found bool, err error)
	// Set stores key → value.
	Set(key, value []byte) error
	// Delete removes key; removing a missing key is no error.
	Delete(key []byte) error
	// Scan calls fn for each key with prefix, in key order, with copies
	// of the key and value, until fn returns false or an error (which
	// Scan returns).
	Scan(prefix []byte, fn func(key, value []byte) (bool, error)) error
}

// ErrKVClosed is returned by a table whose store was closed.
var ErrKVClosed = errors.New("identity: table closed")

// MemKV is a KV in memory, for tests and simulators. The zero value is
// ready to use.
type MemKV struct {
	mu     sync.Mutex
	m      map[string][]byte
	closed bool
}

// NewMemKV returns an empty MemKV.
func NewMemKV() *MemKV { return &MemKV{} }

func (k *MemKV) Get(key []byte) ([]byte, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, false, ErrKVClosed
	}
	v, ok := k.m[string(key)]
	return bytes.Clone(v), ok, nil
}

func (k *MemKV) Set(key, value []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return ErrKVClosed
	}
	if k.m == nil {
		k.m = map[string][]byte{}
	}
	k.m[string(key)] = append([]byte{}, value...)
	return nil
}

func (k *MemKV) Delete(key []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return ErrKVClosed
	}
	delete(k.m, string(key))
	return nil
}

func (k *MemKV) Scan(prefix []byte, fn func(key, value []byte) (bool, error)) error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return ErrKVClosed
	}
	var keys []string
	for key := range k.m {
		if bytes.HasPrefix([]byte(key), prefix) {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	vals := make([][]byte, len(keys))
	for i, key := range keys {
		vals[i] = bytes.Clone(k.m[key])
	}
	k.mu.Unlock()
	for i, key := range keys {
		more, err := fn([]byte(key), vals[i])
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// Close makes every later call fail with ErrKVClosed, as a closed store's
// table does; the contents stay for Reopen.
func (k *MemKV) Close() {
	k.mu.Lock()
	k.closed = true
	k.mu.Unlock()
}

// Reopen undoes Close, keeping the contents: a node restart in tests.
func (k *MemKV) Reopen() {
	k.mu.Lock()
	k.closed = false
	k.mu.Unlock()
}
