package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// configDirEnv names the environment variable that replaces the user's
// configuration directory for gonets (os.UserConfigDir()/gonets).
const configDirEnv = "GONETS_CONFIG_DIR"

// defaultProfile is the profile the client commands use unless
// --profile names another.
const defaultProfile = "default"

// refreshMargin is how long an access token must still be valid for a
// command to use it as it is: a shorter life left is refreshed first.
// It covers the client commands' timeouts.
const refreshMargin = time.Minute

// lockPoll is how often a process waiting for another's refresh tries
// the profile's lock again.
const lockPoll = 20 * time.Millisecond

// nodeConn is where a node is and how to trust it, as given to gonets
// login.
type nodeConn struct {
	Server      string `json:"server"`
	TCPServer   string `json:"tcp_server,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	CA          string `json:"ca,omitempty"`   // absolute path
	Data        string `json:"data,omitempty"` // absolute path, when --data was given
	Insecure    bool   `json:"insecure,omitempty"`
}

// profile is a saved login: where the node is, how to trust it, and the
// device's tokens. It is stored as JSON, mode 0600.
type profile struct {
	nodeConn

	Phone          string    `json:"phone"`
	User           uint64    `json:"user"`
	Device         uint64    `json:"device"`
	Access         string    `json:"access_token"`
	AccessExpires  time.Time `json:"access_expires"`
	Refresh        string    `json:"refresh_token"`
	RefreshExpires time.Time `json:"refresh_expires"`
	// Lost says why the refresh token was discarded: a refresh whose
	// answer never came may have spent it, and presenting it again
	// would end the device. The login is then over.
	Lost string `json:"lost,omitempty"`
}

// setTokens records t, a pair the node issued to p's device.
func (p *profile) setTokens(t client.Tokens) {
	p.User, p.Device = t.User, t.Device
	p.Access, p.AccessExpires = t.Access, t.AccessExpires
	p.Refresh, p.RefreshExpires = t.Refresh, t.RefreshExpires
}

// fresh reports whether p's access token is valid for margin after now.
func (p *profile) fresh(now time.Time, margin time.Duration) bool {
	return p.Access != "" && p.AccessExpires.After(now.Add(margin))
}

// profileNameRE is what a profile name may hold: it becomes a file name.
var profileNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)

// profileFile is a profile's file and the lock beside it.
type profileFile struct {
	name string
	path string // DIR/NAME.json
}

// noProfileError is a profile that was never saved (or was removed); it
// wraps fs.ErrNotExist.
type noProfileError struct {
	name, path string
}

func (e *noProfileError) Error() string {
	flag := ""
	if e.name != defaultProfile {
		flag = " --profile " + e.name
	}
	return fmt.Sprintf("no saved login %q (%s): log in first: gonets login --phone +NUMBER%s", e.name, e.path, flag)
}

func (e *noProfileError) Unwrap() error { return fs.ErrNotExist }

// profileDir returns the directory of the profiles:
// $GONETS_CONFIG_DIR/profiles, or else os.UserConfigDir()/gonets/profiles.
func profileDir() (string, error) {
	if d := os.Getenv(configDirEnv); d != "" {
		return filepath.Join(d, "profiles"), nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no directory for saved logins (set %s): %w", configDirEnv, err)
	}
	return filepath.Join(d, "gonets", "profiles"), nil
}

// openProfile returns the profile file of name; it need not exist.
func openProfile(name string) (*profileFile, error) {
	if !profileNameRE.MatchString(name) {
		return nil, &usageError{fmt.Sprintf("--profile %q is not a profile name: letters, digits, '_', '.' and '-', up to 64, not starting with '.' or '-'", name)}
	}
	dir, err := profileDir()
	if err != nil {
		return nil, err
	}
	return &profileFile{name: name, path: filepath.Join(dir, name+".json")}, nil
}

// exists reports whether the profile has been saved.
func (f *profileFile) exists() bool { return exists(f.path) }

// load reads the profile. A missing one returns a *noProfileError.
func (f *profileFile) load() (*profile, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &noProfileError{name: f.name, path: f.path}
	}
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", f.name, err)
	}
	var p profile
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("profile %s: %s is not a saved login: %w (log in again: gonets login)", f.name, f.path, err)
	}
	if p.Lost != "" {
		return nil, fmt.Errorf("profile %s: %w: %s; log in again: %s", f.name, errLoginOver, p.Lost, f.loginHint(&p))
	}
	if p.Server == "" || p.Access == "" || p.Refresh == "" {
		return nil, fmt.Errorf("profile %s: %s lacks its server or tokens (log in again: gonets login)", f.name, f.path)
	}
	return &p, nil
}

// saveLocked writes p atomically. The caller holds the lock.
func (f *profileFile) saveLocked(p *profile) error {
	if err := writeJSONFile(f.path, p); err != nil {
		return fmt.Errorf("profile %s: %w", f.name, err)
	}
	return nil
}

// writeJSONFile writes v as JSON to path atomically, mode 0600: a
// temporary file beside it, synced, renamed over it, and the directory
// synced.
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}

// lock takes the exclusive lock on the profile (an flock on NAME.json.lock
// beside it, created with its directory if missing), waiting until ctx
// ends. Whoever refreshes or saves the profile holds it, so that two
// processes never present the same refresh token: the node ends a device
// whose used token comes back. The returned func releases the lock.
func (f *profileFile) lock(ctx context.Context) (unlock func(), err error) {
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("profile %s: %w", f.name, err)
	}
	lf, err := os.OpenFile(f.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", f.name, err)
	}
	for {
		err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { lf.Close() }, nil // closing releases the flock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			lf.Close()
			return nil, fmt.Errorf("profile %s: lock %s: %w", f.name, lf.Name(), err)
		}
		select {
		case <-ctx.Done():
			lf.Close()
			return nil, fmt.Errorf("profile %s: waiting for another gonets refreshing it: %w", f.name, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// save writes p under the lock.
func (f *profileFile) save(ctx context.Context, p *profile) error {
	unlock, err := f.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return f.saveLocked(p)
}

// remove deletes the profile under the lock. The lock file stays: a
// process waiting on it must not find a new one in its place.
func (f *profileFile) remove(ctx context.Context) error {
	unlock, err := f.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("profile %s: %w", f.name, err)
	}
	return syncDir(filepath.Dir(f.path))
}

// errLoginOver is a saved login that can no longer be renewed: its
// refresh token expired or is dead, or its device was ended.
var errLoginOver = errors.New("the login is over")

// isDeadLogin reports whether err means the profile's login is over.
func isDeadLogin(err error) bool { return errors.Is(err, errLoginOver) }

// refresher trades a refresh token for a new pair (client.RefreshTokens
// bound to the profile's node).
type refresher func(ctx context.Context, refresh string) (client.Tokens, error)

// current returns the profile with an access token valid for margin
// after now, refreshing it with refresh if need be. The refresh happens
// under the lock, after reading the profile again: another process may
// have refreshed it meanwhile, and its old refresh token is dead.
func (f *profileFile) current(ctx context.Context, now time.Time, margin time.Duration, refresh refresher) (*profile, error) {
	p, err := f.load()
	if err != nil || p.fresh(now, margin) {
		return p, err
	}
	unlock, err := f.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if p, err = f.load(); err != nil || p.fresh(now, margin) {
		return p, err
	}
	if !p.RefreshExpires.IsZero() && !p.RefreshExpires.After(now) {
		return nil, fmt.Errorf("profile %s: %w: it expired %s; log in again: %s", f.name, errLoginOver, p.RefreshExpires.Local().Format(time.DateTime), f.loginHint(p))
	}
	t, err := refresh(ctx, p.Refresh)
	if errors.Is(err, client.ErrRefreshLost) {
		p.Access, p.Refresh = "", ""
		p.Lost = fmt.Sprintf("the answer to renewing its access token was lost at %s, so its refresh token may be spent", now.Local().Format(time.DateTime))
		if serr := f.saveLocked(p); serr != nil {
			return nil, errors.Join(f.refreshError(p, err), serr)
		}
	}
	if err != nil {
		return nil, f.refreshError(p, err)
	}
	p.setTokens(t)
	if err := f.saveLocked(p); err != nil {
		return nil, err
	}
	return p, nil
}

// pendingLogin is a login attempt waiting for its code: gonets login
// --send-code saves it beside the profile (NAME.pending.json), and
// gonets login --code verifies the code it sent.
type pendingLogin struct {
	nodeConn
	Phone      string    `json:"phone"` // E.164
	Attempt    string    `json:"attempt"`
	CodeLength int       `json:"code_length"`
	Tries      int       `json:"tries"`
	Expires    time.Time `json:"expires"`
}

// pendingPath is where the profile's pending login attempt is kept.
func (f *profileFile) pendingPath() string {
	return filepath.Join(filepath.Dir(f.path), f.name+".pending.json")
}

// savePending keeps a login attempt for gonets login --code.
func (f *profileFile) savePending(l *pendingLogin) error {
	if err := writeJSONFile(f.pendingPath(), l); err != nil {
		return fmt.Errorf("profile %s: %w", f.name, err)
	}
	return nil
}

// loadPending returns the pending login attempt, or nil if there is none.
func (f *profileFile) loadPending() (*pendingLogin, error) {
	b, err := os.ReadFile(f.pendingPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", f.name, err)
	}
	var l pendingLogin
	if err := json.Unmarshal(b, &l); err != nil || l.Attempt == "" {
		return nil, fmt.Errorf("profile %s: %s is not a pending login (%v): delete it and run gonets login again", f.name, f.pendingPath(), err)
	}
	return &l, nil
}

// removePending forgets the pending login attempt.
func (f *profileFile) removePending() {
	os.Remove(f.pendingPath()) // absent is fine; a leftover one expires
}

// refreshError explains a failed refresh.
func (f *profileFile) refreshError(p *profile, err error) error {
	var e *client.Error
	switch {
	case errors.As(err, &e) && (e.Code == wire.ErrorCode_ERROR_CODE_REFRESH_INVALID ||
		e.Code == wire.ErrorCode_ERROR_CODE_REFRESH_REUSED || e.Code == wire.ErrorCode_ERROR_CODE_DEVICE_ENDED):
		return fmt.Errorf("profile %s: renewing the access token: %w: %w; log in again: %s", f.name, err, errLoginOver, f.loginHint(p))
	case errors.Is(err, client.ErrRefreshLost):
		return fmt.Errorf("profile %s: renewing the access token: %w: %w; log in again: %s", f.name, err, errLoginOver, f.loginHint(p))
	}
	return fmt.Errorf("profile %s: renewing the access token: %w", f.name, err)
}

// loginHint is the command that logs p's number in again.
func (f *profileFile) loginHint(p *profile) string {
	s := "gonets login --phone " + p.Phone
	if p.Phone == "" {
		s = "gonets login --phone +NUMBER"
	}
	if f.name != defaultProfile {
		s += " --profile " + f.name
	}
	return s
}
