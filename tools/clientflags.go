package tools

import (
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/nodecert"
)

// defaultServer is the node address client commands dial unless told.
const defaultServer = "127.0.0.1:7443"

// tokenEnv names the environment variable that holds the session token
// when --token is not given.
const tokenEnv = "GONETS_TOKEN"

// clientFlags are the flags the client commands (chat, send, tail) share.
type clientFlags struct {
	server      string
	token       string
	fingerprint string
	insecure    bool
	data        string
}

// addClientFlags defines the shared client flags on fs.
func addClientFlags(fs *flag.FlagSet) *clientFlags {
	f := &clientFlags{}
	fs.StringVar(&f.server, "server", defaultServer, "the node's QUIC `address`, host:port")
	fs.StringVar(&f.token, "token", "", "session `token` (default: $"+tokenEnv+")")
	fs.StringVar(&f.fingerprint, "fingerprint", "", "pin the node's certificate by its SHA-256 `hex` fingerprint")
	fs.BoolVar(&f.insecure, "insecure", false, "skip the node's certificate checks (tests only)")
	fs.StringVar(&f.data, "data", defaultDataDir, "a local node's data `dir`ectory: its certificate is pinned unless --fingerprint or --insecure")
	return f
}

// usageError is a wrong use of the flags: the command exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// Usage errors of the shared flags.
var (
	errNoToken   = &usageError{"no session token: pass --token or set " + tokenEnv}
	errExclusive = &usageError{"--fingerprint and --insecure are exclusive"}
)

// options maps the flags onto the SDK's options, on top of base.
func (f *clientFlags) options(base client.Options) (client.Options, error) {
	if f.token == "" {
		f.token = os.Getenv(tokenEnv)
	}
	if f.token == "" {
		return base, errNoToken
	}
	switch {
	case f.fingerprint != "" && f.insecure:
		return base, errExclusive
	case f.fingerprint != "":
		base.Fingerprint = f.fingerprint
	case f.insecure:
		base.Insecure = true
	default:
		fp, err := localFingerprint(f.data)
		if err != nil {
			return base, err
		}
		base.Fingerprint = fp
	}
	return base, nil
}

// localFingerprint returns the fingerprint of the certificate a node keeps
// in its data directory.
func localFingerprint(dir string) (string, error) {
	path := filepath.Join(dir, nodecert.CertFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no node certificate at %s: pass --fingerprint HEX (gonets serve prints it) or --insecure", path)
	}
	if err != nil {
		return "", err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", fmt.Errorf("%s: no PEM certificate", path)
	}
	return nodecert.Fingerprint(block.Bytes), nil
}

// dial connects with the flags' options on top of base.
func (f *clientFlags) dial(ctx context.Context, base client.Options) (*client.Client, error) {
	o, err := f.options(base)
	if err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = "gonets-cli/" + Version
	}
	return client.Dial(ctx, f.server, f.token, o)
}

// cliFail reports err for command cmd and returns its exit code: 2 for
// a usage error (a missing token), 1 otherwise.
func cliFail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "gonets %s: %v\n", cmd, err)
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// cliLogger logs the SDK's warnings to w.
func cliLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// syncWriter serializes writes from the SDK's goroutines and the
// command's own.
type syncWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// userList is a repeatable flag of user ids.
type userList []uint64

func (l *userList) String() string {
	s := make([]string, len(*l))
	for i, u := range *l {
		s[i] = strconv.FormatUint(u, 10)
	}
	return strings.Join(s, ",")
}

func (l *userList) Set(v string) error {
	u, err := strconv.ParseUint(v, 10, 64)
	if err != nil || u == 0 {
		return fmt.Errorf("user id %q is not a positive integer", v)
	}
	*l = append(*l, u)
	return nil
}
