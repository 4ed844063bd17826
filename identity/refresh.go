package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/gonets/gonets/storage"
)

// refreshHistory is how many of a device's refresh tokens are remembered,
// the current one included. A used token among them presented again ends
// the device (ErrRefreshReused); one older than that is merely unknown
// (ErrRefreshInvalid). It bounds a device's token keys.
const refreshHistory = 16

// refreshTokenLen is the length of a refresh token: 32 random bytes in
// unpadded base64url.
const refreshTokenLen = 43

// Refresh rotates a refresh token. A current token is marked used and a
// new one issued in its place, and the device's last seen time and address
// are updated, in one synced batch. A used token presented again ends its
// device (all its tokens die) and returns ErrRefreshReused: the client and
// someone else both hold it, and Refresh cannot tell which is which, so a
// client must never refresh the same token twice, even concurrently. A
// malformed, unknown, expired or ended device's token returns
// ErrRefreshInvalid and changes nothing.
func (a *Accounts) Refresh(ctx context.Context, tok string, addr netip.Addr, now time.Time) (storage.UserID, storage.DeviceID, string, error) {
	user, device, next, err := a.refresh(ctx, tok, addr, now)
	switch {
	case err == nil:
		a.refreshes.Inc()
	case errors.Is(err, ErrRefreshReused):
		a.reused.Inc()
		a.reportEnded(user, []storage.DeviceID{device})
		return 0, 0, "", err
	case errors.Is(err, ErrRefreshInvalid):
		a.invalid.Inc()
	}
	return user, device, next, err
}

// refresh is Refresh but for telling OnDeviceEnded: with ErrRefreshReused
// it returns the user and the device it ended.
func (a *Accounts) refresh(ctx context.Context, tok string, addr netip.Addr, now time.Time) (storage.UserID, storage.DeviceID, string, error) {
	h, ok := refreshHash(tok)
	if !ok {
		return 0, 0, "", ErrRefreshInvalid
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, "", err
	}
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return 0, 0, "", ErrAccountsClosed
	}
	key := acctTokenKey(h)
	t, ok, err := a.token(key)
	if err != nil || !ok {
		return 0, 0, "", refreshErr(err)
	}
	// The user's stripe, not a global lock, is held across the synced
	// commit: refreshes of other users (but for the few on this stripe)
	// commit concurrently and share an fsync.
	mu := a.userStripe(t.User)
	mu.Lock()
	defer mu.Unlock()
	// Read again under the user's lock: a concurrent call may have rotated
	// the token or ended the device since.
	if t, ok, err = a.token(key); err != nil || !ok {
		return 0, 0, "", refreshErr(err)
	}
	d, ok, err := a.device(t.User, t.Device)
	if err != nil || !ok {
		return 0, 0, "", refreshErr(err)
	}
	b := a.db.NewBatch()
	defer b.Close()
	if t.Gen != d.Gen {
		a.deleteDevice(b, t.User, d)
		if err := b.Commit(pebble.Sync); err != nil {
			return 0, 0, "", fmt.Errorf("identity: end device of a reused token: %w", err)
		}
		return t.User, d.ID, "", ErrRefreshReused
	}
	if !now.Before(t.Expires) {
		return 0, 0, "", ErrRefreshInvalid
	}
	d.LastSeen, d.LastAddr = now, addr
	next, err := a.issueToken(b, t.User, &d, now)
	if err != nil {
		return 0, 0, "", err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, 0, "", fmt.Errorf("identity: refresh: %w", err)
	}
	return t.User, d.ID, next, nil
}

// refreshErr maps a lookup's outcome to Refresh's error: a miss is an
// invalid token, a storage error stays itself.
func refreshErr(err error) error {
	if err != nil {
		return err
	}
	return ErrRefreshInvalid
}

// issueToken makes a new current token for d (d.Gen+1), forgets the
// oldest beyond refreshHistory, and adds to b d's record and the token.
func (a *Accounts) issueToken(b *pebble.Batch, user storage.UserID, d *devRecord, now time.Time) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("identity: refresh token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	h := sha256.Sum256([]byte(tok))
	d.Gen++
	if n := len(d.Tokens) - refreshHistory + 1; n > 0 {
		for _, old := range d.Tokens[:n] {
			b.Delete(acctTokenKey(old), nil)
		}
		d.Tokens = d.Tokens[:copy(d.Tokens, d.Tokens[n:])]
	}
	d.Tokens = append(d.Tokens, h)
	t := tokenRecord{User: user, Device: d.ID, Gen: d.Gen, Expires: now.Add(a.opts.RefreshTTL)}
	if err := b.Set(acctTokenKey(h), t.encode(), nil); err != nil {
		return "", fmt.Errorf("identity: refresh token: %w", err)
	}
	if err := a.setSealed(b, acctDeviceKey(user, d.ID), d.encode()); err != nil {
		return "", err
	}
	return tok, nil
}

// refreshHash checks tok's shape and returns its SHA-256. Only hashes are
// stored: a copy of the store issues no tokens.
func refreshHash(tok string) ([32]byte, bool) {
	if len(tok) != refreshTokenLen {
		return [32]byte{}, false
	}
	var raw [32]byte
	if n, err := base64.RawURLEncoding.Decode(raw[:], []byte(tok)); err != nil || n != 32 {
		return [32]byte{}, false
	}
	return sha256.Sum256([]byte(tok)), true
}

func acctTokenKey(h [32]byte) []byte {
	return append([]byte{acctPrefixToken}, h[:]...)
}

func (a *Accounts) token(key []byte) (tokenRecord, bool, error) {
	v, ok, err := a.get(key)
	if err != nil || !ok {
		return tokenRecord{}, false, err
	}
	var t tokenRecord
	if err := t.decode(v); err != nil {
		return tokenRecord{}, false, fmt.Errorf("identity: refresh token record: %w", err)
	}
	return t, true, nil
}

// tokenRecord is what a refresh token's hash maps to: its device, its
// generation (current if the device's, used if older) and its expiry. It
// holds no personal data, so it is stored in the clear.
type tokenRecord struct {
	User    storage.UserID
	Device  storage.DeviceID
	Gen     uint64
	Expires time.Time
}

func (t tokenRecord) encode() []byte {
	b := append(make([]byte, 0, 1+4*binary.MaxVarintLen64), 1)
	b = binary.AppendUvarint(b, uint64(t.User))
	b = binary.AppendUvarint(b, uint64(t.Device))
	b = binary.AppendUvarint(b, t.Gen)
	return binary.AppendVarint(b, t.Expires.UnixNano())
}

func (t *tokenRecord) decode(b []byte) error {
	d := acctDecoder{b: b}
	if d.byte() != 1 {
		return errAcctCorrupt
	}
	t.User = storage.UserID(d.uvarint())
	t.Device = storage.DeviceID(d.uvarint())
	t.Gen = d.uvarint()
	t.Expires = time.Unix(0, d.varint())
	return d.done()
}

// devRecord is a device and the hashes of its refresh tokens, oldest
// first; the last is current, the others used.
type devRecord struct {
	ID       storage.DeviceID // from the key
	Name     string
	Platform string
	Created  time.Time
	LastSeen time.Time
	LastAddr netip.Addr
	Gen      uint64 // generation of the current token, from 1
	Tokens   [][32]byte
}

func (r devRecord) encode() []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen16+len(r.Name)+len(r.Platform)+2*binary.MaxVarintLen64+
		binary.MaxVarintLen16+18+2*binary.MaxVarintLen64+32*len(r.Tokens))
	b = append(b, 1)
	b = acctAppendString(b, r.Name)
	b = acctAppendString(b, r.Platform)
	b = binary.AppendVarint(b, r.Created.UnixNano())
	b = binary.AppendVarint(b, r.LastSeen.UnixNano())
	addr, _ := r.LastAddr.MarshalBinary()
	b = acctAppendString(b, string(addr))
	b = binary.AppendUvarint(b, r.Gen)
	b = binary.AppendUvarint(b, uint64(len(r.Tokens)))
	for _, h := range r.Tokens {
		b = append(b, h[:]...)
	}
	return b
}

func (r *devRecord) decode(b []byte) error {
	d := acctDecoder{b: b}
	if d.byte() != 1 {
		return errAcctCorrupt
	}
	r.Name = d.string()
	r.Platform = d.string()
	r.Created = time.Unix(0, d.varint())
	r.LastSeen = time.Unix(0, d.varint())
	if err := r.LastAddr.UnmarshalBinary([]byte(d.string())); err != nil {
		return errAcctCorrupt
	}
	r.Gen = d.uvarint()
	n := d.uvarint()
	if n > refreshHistory {
		return errAcctCorrupt
	}
	r.Tokens = make([][32]byte, n)
	for i := range r.Tokens {
		copy(r.Tokens[i][:], d.bytes(32))
	}
	return d.done()
}
