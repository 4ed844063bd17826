package identity

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/gonets/gonets/storage"
)

// Errors of Accounts. Each is stable (errors.Is) and changes nothing.
var (
	// ErrAccountPhone is returned by Login for a phone that is not an E.164
	// number (a '+', then 2 to 15 digits, the first not 0). Login expects a
	// number already parsed and verified.
	ErrAccountPhone = errors.New("identity: login needs a verified E.164 number")
	// ErrDeviceInfo is returned by Login for a device name or platform that
	// is too long, not UTF-8 or holds control characters.
	ErrDeviceInfo = errors.New("identity: bad device name or platform")
	// ErrTooManyDevices is returned by Login when the account already has
	// AccountsOptions.MaxDevices live devices: end one first.
	ErrTooManyDevices = errors.New("identity: too many devices; end one first")
	// ErrUnknownDevice is returned for a device the user does not have (never
	// had, ended, or another user's).
	ErrUnknownDevice = errors.New("identity: unknown device")
	// ErrRefreshInvalid is returned by Refresh for a refresh token that is
	// malformed, unknown, expired, or of an ended device.
	ErrRefreshInvalid = errors.New("identity: refresh token invalid")
	// ErrRefreshReused is returned by Refresh for a refresh token that was
	// already used: someone holds a copy, so its device has been ended.
	ErrRefreshReused = errors.New("identity: refresh token reused; the device is ended")
	// ErrAccountsClosed is returned after Close.
	ErrAccountsClosed = errors.New("identity: accounts closed")
	// ErrAccountsKey is returned by OpenAccounts for a missing or short Key,
	// or for a store written under another Key.
	ErrAccountsKey = errors.New("identity: accounts key must be at least 32 bytes, the one the store was written with")
)

// Limits on what a client may send.
const (
	// MaxDeviceName is the longest device name, in bytes.
	MaxDeviceName = 64
	// MaxDevicePlatform is the longest device platform, in bytes.
	MaxDevicePlatform = 32
)

// Lock stripes. Each is held across a synced commit, so two calls that
// meet on one wait an fsync for each other: there are enough that calls
// in flight rarely meet, few enough to cost nothing (a mutex is 8 bytes).
const (
	// phoneStripes is the number of per-number locks; the phone index key
	// (an HMAC, so uniform) hashes onto them.
	phoneStripes = 1024
	// userStripes is the number of per-user locks; user ids, dense from
	// UserBase, fall onto them round robin.
	userStripes = 1024
)

// AccountsOptions configures Accounts. The zero value of every field but
// Key means its default.
type AccountsOptions struct {
	// Key is the node's identity secret, at least 32 bytes. Two keys are
	// derived from it with HKDF-SHA256: one for HMAC-SHA256 of phone
	// numbers (the phone index), one for XChaCha20-Poly1305 over every
	// account and device record. Required; losing it loses every
	// account's phone index.
	Key []byte
	// UserBase is the first user id allocated. Ids grow from here on and
	// are never reused, so they never meet ids operators minted by hand
	// below it; one allocated by a Login that then failed is skipped.
	// Default: 1<<32.
	UserBase storage.UserID
	// MaxDevices caps an account's live devices. Login first ends devices
	// whose refresh tokens have expired, then refuses with
	// ErrTooManyDevices. Default: 64.
	MaxDevices int
	// RefreshTTL is how long a refresh token lives; each rotation starts a
	// new one (sliding). Default: 60 days.
	RefreshTTL time.Duration
	// OnDeviceEnded, if set, is called after a device's end is committed
	// (EndDevice, EndOtherDevices, reuse of a refresh token, expiry at
	// Login), from the caller's goroutine with no lock held.
	OnDeviceEnded func(user storage.UserID, device storage.DeviceID)
	// Logger receives Pebble's lifecycle and error lines. Default:
	// slog.Default().
	Logger *slog.Logger
	// Metrics receives the gonets_identity_* counters of logins, refreshes
	// and ended devices. Default: a new set of its own.
	Metrics *metrics.Set
}

// DeviceInfo is what a client says about the device logging in.
type DeviceInfo struct {
	Name     string
	Platform string
	Addr     netip.Addr
}

// Device is one of an account's live devices.
type Device struct {
	ID       storage.DeviceID
	Name     string
	Platform string
	Created  time.Time
	LastSeen time.Time
	LastAddr netip.Addr
}

// LoginResult is what Login hands back.
type LoginResult struct {
	User    storage.UserID
	Device  storage.DeviceID
	Created bool // the account is new
	Refresh string
}

// Accounts is the durable store of accounts, their devices and their
// refresh tokens.
//
// It is a Pebble instance of its own (the node puts it under
// <data>/identity): storage offers chats, logs and dialogs, not a generic
// key-value API, and a separate instance keeps account data out of the
// message store's keyspace, compactions and retention. Every change is one
// batch committed with pebble.Sync before the call returns, so nothing
// acknowledged is lost in a crash. Calls that touch different numbers and
// users commit concurrently, and Pebble makes one fsync of the batches
// that meet in its commit pipeline, so throughput grows with the calls in
// flight rather than being one call per fsync.
//
// Personal data is encrypted at rest. The phone → user index is keyed by
// HMAC-SHA256(phone) under a key derived from AccountsOptions.Key, so no
// number is stored in the clear and a lookup needs the key; account
// records (which hold the number, for support and re-keying) and device
// records (name, platform, last address) are sealed with XChaCha20-Poly1305
// under a second derived key, with the record's key as additional data
// (setSealed says why not AES-GCM). Refresh tokens are stored only as
// SHA-256 hashes; their records hold ids and times, nothing personal.
//
// Accounts starts no goroutines. Lock order: life (shared; Close takes it
// exclusively), then one phone stripe (Login only: two logins of one new
// number must not both create an account), then one user stripe (a
// user's devices and tokens). No call holds two stripes of one kind.
// OnDeviceEnded runs after all of them are released.
//
// New user ids come from an atomic counter, not from a "next" record in
// each batch: concurrent batches may commit in any order, so a persisted
// next could go backwards. OpenAccounts recovers the counter from the
// highest user record present.
type Accounts struct {
	db     *pebble.DB
	opts   AccountsOptions
	aead   cipher.AEAD
	macKey []byte

	life   sync.RWMutex // held shared by every call, exclusively by Close
	closed bool         // guarded by life

	nextUser atomic.Uint64 // the next user id to allocate

	phones [phoneStripes]sync.Mutex // per-number: the phone index entry
	users  [userStripes]sync.Mutex  // per-user: account, devices and tokens

	macs sync.Pool // of hash.Hash: HMAC-SHA256 under macKey

	bots botIndex // the bot accounts in memory (bots.go)

	logins, created, refreshes, reused, invalid, ended *metrics.Counter
}

// acctCacheBytes is the accounts store's block cache: about the records
// of a million accounts' devices and tokens that were used lately.
const acctCacheBytes = 64 << 20

// OpenAccounts opens (or creates) the accounts store in dir.
func OpenAccounts(dir string, opts AccountsOptions) (*Accounts, error) {
	if len(opts.Key) < 32 {
		return nil, ErrAccountsKey
	}
	if opts.UserBase == 0 {
		opts.UserBase = 1 << 32
	}
	if opts.MaxDevices <= 0 {
		opts.MaxDevices = 64
	}
	if opts.RefreshTTL <= 0 {
		opts.RefreshTTL = 60 * 24 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	macKey, err := hkdf.Key(sha256.New, opts.Key, nil, "gonets identity phone index", 32)
	if err != nil {
		return nil, fmt.Errorf("identity: derive keys: %w", err)
	}
	encKey, err := hkdf.Key(sha256.New, opts.Key, nil, "gonets identity records", 32)
	if err != nil {
		return nil, fmt.Errorf("identity: derive keys: %w", err)
	}
	aead, err := chacha20poly1305.NewX(encKey)
	if err != nil {
		return nil, fmt.Errorf("identity: cipher: %w", err)
	}
	// A block cache of its own, above Pebble's 8 MiB default: a refresh
	// reads its token's and its device's records, which otherwise came
	// from the page cache by pread (14% of the node's CPU in the refresh
	// bench's profile).
	cache := pebble.NewCache(acctCacheBytes)
	defer cache.Unref() // the DB holds its own reference
	popts := &pebble.Options{Logger: acctLogger{opts.Logger}, Cache: cache}
	// Every login of a new number looks up a phone index key that is not
	// there; without a filter that miss reads a data block of each table
	// it might be in (half of Login's time in the profile). The policy is
	// inherited by every level below L0.
	popts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("identity: open %q: %w", dir, err)
	}
	m := opts.Metrics
	a := &Accounts{
		db: db, opts: opts, aead: aead, macKey: macKey,
		logins:    m.GetOrCreateCounter("gonets_identity_logins_total"),
		created:   m.GetOrCreateCounter("gonets_identity_accounts_created_total"),
		refreshes: m.GetOrCreateCounter("gonets_identity_refreshes_total"),
		reused:    m.GetOrCreateCounter("gonets_identity_refresh_reused_total"),
		invalid:   m.GetOrCreateCounter("gonets_identity_refresh_invalid_total"),
		ended:     m.GetOrCreateCounter("gonets_identity_devices_ended_total"),
	}
	a.macs.New = func() any { return hmac.New(sha256.New, a.macKey) }
	if err := a.checkKey(dir); err != nil {
		db.Close()
		return nil, err
	}
	next, err := a.recoverNextUser()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("identity: open %q: %w", dir, err)
	}
	a.nextUser.Store(uint64(next))
	if err := a.loadBots(); err != nil {
		db.Close()
		return nil, fmt.Errorf("identity: open %q: %w", dir, err)
	}
	return a, nil
}

// recoverNextUser returns the first user id above every one in the store:
// the highest user record's id + 1, or the next id an older version
// persisted if that is higher, and at least UserBase.
func (a *Accounts) recoverNextUser() (storage.UserID, error) {
	next := a.opts.UserBase
	it, err := a.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{acctPrefixUser},
		UpperBound: []byte{acctPrefixUser + 1},
	})
	if err != nil {
		return 0, fmt.Errorf("read users: %w", err)
	}
	if it.Last() {
		k := it.Key()
		if len(k) != 9 {
			it.Close()
			return 0, fmt.Errorf("corrupt user key %x", k)
		}
		last := storage.UserID(binary.BigEndian.Uint64(k[1:]))
		if last == 1<<64-1 {
			it.Close()
			return 0, fmt.Errorf("user ids exhausted")
		}
		next = max(next, last+1)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, fmt.Errorf("read users: %w", err)
	}
	v, ok, err := a.get(acctKeyNext)
	if err != nil {
		return 0, err
	}
	if ok {
		if len(v) != 8 {
			return 0, fmt.Errorf("corrupt next user id")
		}
		next = max(next, storage.UserID(binary.BigEndian.Uint64(v)))
	}
	return next, nil
}

// checkKey makes sure the store was written under this Key: it keeps
// HMAC-SHA256 of a fixed label under the phone index key, written by the
// first open. Under another key every phone lookup would miss and each
// returning user would silently get a second account.
func (a *Accounts) checkKey(dir string) error {
	m := hmac.New(sha256.New, a.macKey)
	m.Write([]byte("gonets identity key check"))
	want := m.Sum(nil)
	got, ok, err := a.get(acctKeyCheck)
	if err != nil {
		return err
	}
	if !ok {
		if err := a.db.Set(acctKeyCheck, want, pebble.Sync); err != nil {
			return fmt.Errorf("identity: open %q: %w", dir, err)
		}
		return nil
	}
	if !hmac.Equal(got, want) {
		return fmt.Errorf("%w: open %q: the store was written under another key", ErrAccountsKey, dir)
	}
	return nil
}

// Close closes the store; calls after it return ErrAccountsClosed.
func (a *Accounts) Close() error {
	a.life.Lock()
	defer a.life.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	if err := a.db.Close(); err != nil {
		return fmt.Errorf("identity: close accounts: %w", err)
	}
	return nil
}

// Login finds or creates the account of phone (E.164, already verified),
// adds a device to it and issues that device's first refresh token, all in
// one synced batch.
func (a *Accounts) Login(ctx context.Context, phone string, dev DeviceInfo, now time.Time) (LoginResult, error) {
	res, expired, err := a.login(ctx, phone, dev, now)
	if err != nil {
		return LoginResult{}, err
	}
	a.logins.Inc()
	if res.Created {
		a.created.Inc()
	}
	a.reportEnded(res.User, expired)
	return res, nil
}

// login is Login but for telling OnDeviceEnded: it returns the devices it
// ended because their refresh tokens had expired.
func (a *Accounts) login(ctx context.Context, phone string, dev DeviceInfo, now time.Time) (LoginResult, []storage.DeviceID, error) {
	if !acctValidE164(phone) {
		return LoginResult{}, nil, ErrAccountPhone
	}
	if !acctValidText(dev.Name, MaxDeviceName) || !acctValidText(dev.Platform, MaxDevicePlatform) {
		return LoginResult{}, nil, ErrDeviceInfo
	}
	if err := ctx.Err(); err != nil {
		return LoginResult{}, nil, err
	}
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return LoginResult{}, nil, ErrAccountsClosed
	}
	pkey := a.phoneKey(phone)
	pmu := a.phoneStripe(pkey)
	pmu.Lock()
	defer pmu.Unlock()

	b := a.db.NewBatch()
	defer b.Close()
	res := LoginResult{}
	v, ok, err := a.get(pkey)
	if err != nil {
		return LoginResult{}, nil, err
	}
	if ok {
		if len(v) != 8 {
			return LoginResult{}, nil, fmt.Errorf("identity: corrupt phone index entry")
		}
		res.User = storage.UserID(binary.BigEndian.Uint64(v))
	} else {
		// The phone stripe keeps a second login of this number out until
		// this one has committed or failed; a failed one's id is skipped.
		res.User, res.Created = storage.UserID(a.nextUser.Add(1)-1), true
		b.Set(pkey, binary.BigEndian.AppendUint64(nil, uint64(res.User)), nil)
	}

	umu := a.userStripe(res.User)
	umu.Lock()
	defer umu.Unlock()
	acct := acctRecord{Created: now, NextDevice: 1, Phone: phone}
	var expired []storage.DeviceID
	if !res.Created {
		if acct, err = a.account(res.User); err != nil {
			return LoginResult{}, nil, err
		}
		devs, err := a.devices(res.User)
		if err != nil {
			return LoginResult{}, nil, err
		}
		live := 0
		for _, d := range devs {
			if !d.LastSeen.Add(a.opts.RefreshTTL).After(now) {
				a.deleteDevice(b, res.User, d)
				expired = append(expired, d.ID)
				continue
			}
			live++
		}
		if live >= a.opts.MaxDevices {
			return LoginResult{}, nil, ErrTooManyDevices
		}
	}

	res.Device = storage.DeviceID(acct.NextDevice)
	acct.NextDevice++
	if err := a.setSealed(b, acctUserKey(res.User), acct.encode()); err != nil {
		return LoginResult{}, nil, err
	}
	d := devRecord{ID: res.Device, Name: dev.Name, Platform: dev.Platform, Created: now, LastSeen: now, LastAddr: dev.Addr}
	if res.Refresh, err = a.issueToken(b, res.User, &d, now); err != nil {
		return LoginResult{}, nil, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return LoginResult{}, nil, fmt.Errorf("identity: login: %w", err)
	}
	return res, expired, nil
}

// Devices lists user's live devices in id order.
func (a *Accounts) Devices(user storage.UserID) ([]Device, error) {
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return nil, ErrAccountsClosed
	}
	recs, err := a.devices(user)
	if err != nil {
		return nil, err
	}
	out := make([]Device, len(recs))
	for i, r := range recs {
		out[i] = Device{ID: r.ID, Name: r.Name, Platform: r.Platform, Created: r.Created, LastSeen: r.LastSeen, LastAddr: r.LastAddr}
	}
	return out, nil
}

// DeviceActive reports whether device is a live device of user: logged in
// and not ended. A device whose refresh token expired stays live until it
// is ended or a Login of its account needs the room. It is false on any
// error, and after Close: CheckDevice tells those apart from an end.
func (a *Accounts) DeviceActive(user storage.UserID, device storage.DeviceID) bool {
	return a.CheckDevice(user, device) == nil
}

// CheckDevice returns nil when device is a live device of user (see
// DeviceActive), ErrUnknownDevice when it is not (never was, or ended),
// ErrAccountsClosed after Close, and the store's error when it cannot
// tell: only ErrUnknownDevice says that the device has no way in.
func (a *Accounts) CheckDevice(user storage.UserID, device storage.DeviceID) error {
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return ErrAccountsClosed
	}
	_, ok, err := a.get(acctDeviceKey(user, device))
	switch {
	case err != nil:
		return err
	case !ok:
		return ErrUnknownDevice
	}
	return nil
}

// EndDevice ends one of user's devices: its refresh tokens die.
func (a *Accounts) EndDevice(user storage.UserID, device storage.DeviceID) error {
	if err := a.endDevice(user, device); err != nil {
		return err
	}
	a.reportEnded(user, []storage.DeviceID{device})
	return nil
}

func (a *Accounts) endDevice(user storage.UserID, device storage.DeviceID) error {
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return ErrAccountsClosed
	}
	mu := a.userStripe(user)
	mu.Lock()
	defer mu.Unlock()
	d, ok, err := a.device(user, device)
	if err != nil {
		return err
	}
	if !ok {
		return ErrUnknownDevice
	}
	b := a.db.NewBatch()
	defer b.Close()
	a.deleteDevice(b, user, d)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("identity: end device: %w", err)
	}
	return nil
}

// EndOtherDevices ends every device of user but keep, which must be live,
// and returns the ended ones.
func (a *Accounts) EndOtherDevices(user storage.UserID, keep storage.DeviceID) ([]storage.DeviceID, error) {
	ended, err := a.endOtherDevices(user, keep)
	if err != nil {
		return nil, err
	}
	a.reportEnded(user, ended)
	return ended, nil
}

func (a *Accounts) endOtherDevices(user storage.UserID, keep storage.DeviceID) ([]storage.DeviceID, error) {
	a.life.RLock()
	defer a.life.RUnlock()
	if a.closed {
		return nil, ErrAccountsClosed
	}
	mu := a.userStripe(user)
	mu.Lock()
	defer mu.Unlock()
	devs, err := a.devices(user)
	if err != nil {
		return nil, err
	}
	b := a.db.NewBatch()
	defer b.Close()
	var ended []storage.DeviceID
	kept := false
	for _, d := range devs {
		if d.ID == keep {
			kept = true
			continue
		}
		a.deleteDevice(b, user, d)
		ended = append(ended, d.ID)
	}
	if !kept {
		return nil, ErrUnknownDevice
	}
	if len(ended) == 0 {
		return nil, nil
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, fmt.Errorf("identity: end other devices: %w", err)
	}
	return ended, nil
}

// reportEnded counts committed ends and tells OnDeviceEnded. Callers hold
// no lock, so the callback may call back into Accounts.
func (a *Accounts) reportEnded(user storage.UserID, devs []storage.DeviceID) {
	a.ended.Add(len(devs))
	if a.opts.OnDeviceEnded == nil {
		return
	}
	for _, d := range devs {
		a.opts.OnDeviceEnded(user, d)
	}
}

func (a *Accounts) userStripe(user storage.UserID) *sync.Mutex {
	return &a.users[uint64(user)%userStripes]
}

// phoneStripe returns the lock of the number whose phone index key is
// pkey.
func (a *Accounts) phoneStripe(pkey []byte) *sync.Mutex {
	return &a.phones[binary.BigEndian.Uint64(pkey[1:9])%phoneStripes]
}

// deleteDevice adds to b the deletes of d's record and of all its tokens.
func (a *Accounts) deleteDevice(b *pebble.Batch, user storage.UserID, d devRecord) {
	for _, h := range d.Tokens {
		b.Delete(acctTokenKey(h), nil)
	}
	b.Delete(acctDeviceKey(user, d.ID), nil)
}

func (a *Accounts) account(user storage.UserID) (acctRecord, error) {
	key := acctUserKey(user)
	v, ok, err := a.getSealed(key)
	if err != nil {
		return acctRecord{}, err
	}
	if !ok {
		return acctRecord{}, fmt.Errorf("identity: account %d missing behind its phone index", user)
	}
	var r acctRecord
	if err := r.decode(v); err != nil {
		return acctRecord{}, fmt.Errorf("identity: account %d: %w", user, err)
	}
	return r, nil
}

func (a *Accounts) device(user storage.UserID, device storage.DeviceID) (devRecord, bool, error) {
	v, ok, err := a.getSealed(acctDeviceKey(user, device))
	if err != nil || !ok {
		return devRecord{}, false, err
	}
	var r devRecord
	if err := r.decode(v); err != nil {
		return devRecord{}, false, fmt.Errorf("identity: device %d/%d: %w", user, device, err)
	}
	r.ID = device
	return r, true, nil
}

// devices returns user's device records in id order; they are at most
// MaxDevices (Login refuses more).
func (a *Accounts) devices(user storage.UserID) ([]devRecord, error) {
	lo := acctDeviceKey(user, 0)
	hi := acctDeviceKey(user+1, 0)
	if user == 1<<64-1 {
		hi = []byte{acctPrefixDevice + 1}
	}
	it, err := a.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("identity: devices: %w", err)
	}
	defer it.Close()
	var out []devRecord
	for ok := it.First(); ok; ok = it.Next() {
		key := it.Key()
		v, err := a.open(key, it.Value())
		if err != nil {
			return nil, err
		}
		var r devRecord
		if err := r.decode(v); err != nil {
			return nil, fmt.Errorf("identity: device of %d: %w", user, err)
		}
		r.ID = storage.DeviceID(binary.BigEndian.Uint64(key[9:]))
		out = append(out, r)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("identity: devices: %w", err)
	}
	return out, nil
}

// Keys. Ids are big-endian so a user's devices sort in id order.
const (
	acctPrefixNext   = 'n' // → next user id, 8 bytes; no longer written
	acctPrefixCheck  = 'k' // → HMAC of a fixed label: the key in use
	acctPrefixPhone  = 'p' // + HMAC-SHA256(phone) → user id, 8 bytes
	acctPrefixUser   = 'u' // + user → sealed acctRecord
	acctPrefixDevice = 'd' // + user + device → sealed devRecord
	acctPrefixToken  = 't' // + SHA-256(token) → tokenRecord
)

var (
	acctKeyNext  = []byte{acctPrefixNext}
	acctKeyCheck = []byte{acctPrefixCheck}
)

func (a *Accounts) phoneKey(phone string) []byte {
	m := a.macs.Get().(hash.Hash)
	m.Reset()
	io.WriteString(m, phone)
	k := m.Sum(append(make([]byte, 0, 1+sha256.Size), acctPrefixPhone))
	a.macs.Put(m)
	return k
}

func acctUserKey(user storage.UserID) []byte {
	return binary.BigEndian.AppendUint64([]byte{acctPrefixUser}, uint64(user))
}

func acctDeviceKey(user storage.UserID, device storage.DeviceID) []byte {
	k := append(make([]byte, 0, 17), acctPrefixDevice)
	k = binary.BigEndian.AppendUint64(k, uint64(user))
	return binary.BigEndian.AppendUint64(k, uint64(device))
}

// get returns a copy of key's value.
func (a *Accounts) get(key []byte) ([]byte, bool, error) {
	v, c, err := a.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("identity: read: %w", err)
	}
	out := bytes.Clone(v)
	c.Close()
	return out, true, nil
}

// getSealed returns key's value opened; it opens straight from Pebble's
// buffer into a new one.
func (a *Accounts) getSealed(key []byte) ([]byte, bool, error) {
	v, c, err := a.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("identity: read: %w", err)
	}
	p, err := a.open(key, v)
	c.Close()
	return p, err == nil, err
}

// setSealed adds to b key → plain sealed with XChaCha20-Poly1305 under a
// random 192-bit nonce, with the key as additional data (a value cannot be
// moved to another key).
//
// Not AES-256-GCM: its nonce is 96 bits, and random 96-bit nonces under
// one key are safe for about 2^32 seals (NIST SP 800-38D, 8.3) before a
// repeat becomes likely enough to matter; a repeat leaks the XOR of two
// records and GCM's authentication key, so records could be forged. Every
// login seals two records and every refresh one: at the 10,000 refreshes/s
// the store is built for, 2^32 is reached in five days. A 192-bit random
// nonce does not repeat in any life of the key. Records sealed with
// AES-GCM by earlier builds are not read: none was ever deployed.
//
// It seals straight into the batch's buffer: no copy of the sealed value.
func (a *Accounts) setSealed(b *pebble.Batch, key, plain []byte) error {
	n := a.aead.NonceSize()
	op := b.SetDeferred(len(key), n+len(plain)+a.aead.Overhead())
	copy(op.Key, key)
	nonce := op.Value[:n]
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("identity: nonce: %w", err)
	}
	a.aead.Seal(nonce, nonce, plain, op.Key)
	return op.Finish()
}

func (a *Accounts) open(key, sealed []byte) ([]byte, error) {
	n := a.aead.NonceSize()
	if len(sealed) < n {
		return nil, fmt.Errorf("identity: record %x: too short", key)
	}
	p, err := a.aead.Open(nil, sealed[:n], sealed[n:], key)
	if err != nil {
		return nil, fmt.Errorf("identity: record %x: does not open under this key: %w", key, err)
	}
	return p, nil
}

// acctRecord is an account.
type acctRecord struct {
	Created    time.Time
	NextDevice uint64
	Phone      string
}

func (r acctRecord) encode() []byte {
	b := append(make([]byte, 0, 1+2*binary.MaxVarintLen64+binary.MaxVarintLen16+len(r.Phone)), 1)
	b = binary.AppendVarint(b, r.Created.UnixNano())
	b = binary.AppendUvarint(b, r.NextDevice)
	return acctAppendString(b, r.Phone)
}

func (r *acctRecord) decode(b []byte) error {
	d := acctDecoder{b: b}
	if d.byte() != 1 {
		return errAcctCorrupt
	}
	r.Created = time.Unix(0, d.varint())
	r.NextDevice = d.uvarint()
	r.Phone = d.string()
	return d.done()
}

var errAcctCorrupt = errors.New("corrupt record")

func acctAppendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// acctDecoder reads a record; the first error sticks.
type acctDecoder struct {
	b   []byte
	bad bool
}

func (d *acctDecoder) byte() byte {
	if len(d.b) < 1 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *acctDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *acctDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *acctDecoder) bytes(n uint64) []byte {
	if uint64(len(d.b)) < n {
		d.bad = true
		d.b = nil
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *acctDecoder) string() string { return string(d.bytes(d.uvarint())) }

func (d *acctDecoder) done() error {
	if d.bad || len(d.b) != 0 {
		return errAcctCorrupt
	}
	return nil
}

// acctValidE164 reports whether s is '+' and 2 to 15 digits, the first
// not 0.
func acctValidE164(s string) bool {
	if len(s) < 3 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// acctValidText reports whether s is UTF-8 of at most max bytes without
// control characters.
func acctValidText(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		// Control characters, and the invisible format characters
		// (bidirectional overrides and isolates, zero-width joiners,
		// the BOM: Unicode's Cf) with which a name could show as another
		// in a device list.
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return false
		}
	}
	return true
}

// acctLogger routes Pebble's log lines into slog.
type acctLogger struct{ l *slog.Logger }

func (p acctLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "identity-pebble")
}

func (p acctLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "identity-pebble")
}

// Fatalf is called by Pebble in states it cannot leave, some with its
// mutexes held; like Pebble's own logger it ends the process. Every
// acknowledged change was synced to the WAL first, so a restart recovers it.
func (p acctLogger) Fatalf(format string, args ...any) {
	p.l.Error("identity: fatal: "+fmt.Sprintf(format, args...)+"; the process stops; restart", "component", "identity-pebble")
	os.Exit(1)
}
