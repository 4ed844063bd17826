package identity

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/gonets/gonets/storage"
)

// Key prefixes of the accounts' store beyond the account records
// (accounts.go): 'l' the linked attributes of a user, 'x' the tables.
const (
	acctPrefixLink  = 'l' // + user → sealed JSON Attributes
	acctPrefixTable = 'x' // + len(name) + name + key → sealed value
)

// maxTableName bounds a table's name.
const maxTableName = 32

// Table returns the table name of the accounts' store: a KV whose values
// are sealed like the account records (XChaCha20-Poly1305 under the
// store's key, the full key as additional data), written with a synced
// commit. Keys are stored in the clear: callers keep personal data out of
// them. The table shares the store's life: after Close every call fails
// with ErrAccountsClosed.
func (a *Accounts) Table(name string) (KV, error) {
	if name == "" || len(name) > maxTableName {
		return nil, fmt.Errorf("identity: table name %q: 1 to %d bytes", name, maxTableName)
	}
	p := append([]byte{acctPrefixTable, byte(len(name))}, name...)
	return &table{a: a, prefix: p}, nil
}

type table struct {
	a      *Accounts
	prefix []byte
}

func (t *table) key(k []byte) []byte {
	return append(append(make([]byte, 0, len(t.prefix)+len(k)), t.prefix...), k...)
}

func (t *table) Get(key []byte) ([]byte, bool, error) {
	t.a.life.RLock()
	defer t.a.life.RUnlock()
	if t.a.closed {
		return nil, false, ErrAccountsClosed
	}
	return t.a.getSealed(t.key(key))
}

func (t *table) Set(key, value []byte) error {
	t.a.life.RLock()
	defer t.a.life.RUnlock()
	if t.a.closed {
		return ErrAccountsClosed
	}
	b := t.a.db.NewBatch()
	defer b.Close()
	if err := t.a.setSealed(b, t.key(key), value); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("identity: write: %w", err)
	}
	return nil
}

func (t *table) Delete(key []byte) error {
	t.a.life.RLock()
	defer t.a.life.RUnlock()
	if t.a.closed {
		return ErrAccountsClosed
	}
	if err := t.a.db.Delete(t.key(key), pebble.Sync); err != nil {
		return fmt.Errorf("identity: delete: %w", err)
	}
	return nil
}

func (t *table) Scan(prefix []byte, fn func(key, value []byte) (bool, error)) error {
	t.a.life.RLock()
	defer t.a.life.RUnlock()
	if t.a.closed {
		return ErrAccountsClosed
	}
	lower := t.key(prefix)
	it, err := t.a.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return fmt.Errorf("identity: scan: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		v, err := t.a.open(k, it.Value())
		if err != nil {
			return err
		}
		more, err := fn(bytes.Clone(k[len(t.prefix):]), v)
		if err != nil || !more {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("identity: scan: %w", err)
	}
	return nil
}

// prefixEnd returns the first key after every key with prefix p (nil when
// there is none: p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// ErrNotLinked is returned for a user with no linked state account.
var ErrNotLinked = errors.New("identity: no linked state account")

func acctLinkKey(user storage.UserID) []byte {
	return binary.BigEndian.AppendUint64([]byte{acctPrefixLink}, uint64(user))
}

// Link stores attrs as user's linked state account, replacing any
// earlier one, sealed at rest. The user must have an account.
func (a *Accounts) Link(user storage.UserID, attrs Attributes) error {
	if attrs.Provider == "" || attrs.Subject == "" || attrs.VerifiedAt.IsZero() {
		return errors.New("identity: link: attributes need a provider, a subject and the time they were verified")
	}
	plain, err := json.Marshal(attrs)
	if err != nil {
		return fmt.Errorf("identity: link: %w", err)
	}
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return ErrAccountsClosed
	}
	mu := a.userStripe(user)
	mu.Lock()
	defer mu.Unlock()
	if _, err := a.account(user); err != nil {
		return err
	}
	b := a.db.NewBatch()
	defer b.Close()
	if err := a.setSealed(b, acctLinkKey(user), plain); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("identity: link: %w", err)
	}
	return nil
}

// Linked returns user's linked state account, or ErrNotLinked.
func (a *Accounts) Linked(user storage.UserID) (Attributes, error) {
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return Attributes{}, ErrAccountsClosed
	}
	plain, ok, err := a.getSealed(acctLinkKey(user))
	if err != nil {
		return Attributes{}, err
	}
	if !ok {
		return Attributes{}, ErrNotLinked
	}
	var attrs Attributes
	if err := json.Unmarshal(plain, &attrs); err != nil {
		return Attributes{}, fmt.Errorf("identity: linked account of %d: %w", user, err)
	}
	return attrs, nil
}

// Unlink erases user's linked state account; unlinking a user with none
// is ErrNotLinked. The record is deleted with a synced commit; Pebble
// drops its bytes from the files at the next compaction of that range.
func (a *Accounts) Unlink(user storage.UserID) error {
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return ErrAccountsClosed
	}
	mu := a.userStripe(user)
	mu.Lock()
	defer mu.Unlock()
	k := acctLinkKey(user)
	if _, ok, err := a.get(k); err != nil {
		return err
	} else if !ok {
		return ErrNotLinked
	}
	if err := a.db.Delete(k, pebble.Sync); err != nil {
		return fmt.Errorf("identity: unlink: %w", err)
	}
	return nil
}

// LinkedUsers calls fn for each user with a linked state account, in user
// order, until fn returns false. Records that do not open are skipped.
func (a *Accounts) LinkedUsers(fn func(user storage.UserID, attrs Attributes) bool) error {
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return ErrAccountsClosed
	}
	lower := []byte{acctPrefixLink}
	it, err := a.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{acctPrefixLink + 1}})
	if err != nil {
		return fmt.Errorf("identity: linked users: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 9 {
			continue
		}
		plain, err := a.open(k, it.Value())
		if err != nil {
			a.opts.Logger.Warn("identity: a linked account record does not open", "err", err)
			continue
		}
		var attrs Attributes
		if json.Unmarshal(plain, &attrs) != nil {
			continue
		}
		if !fn(storage.UserID(binary.BigEndian.Uint64(k[1:])), attrs) {
			return nil
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("identity: linked users: %w", err)
	}
	return nil
}
