package tools

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/gonets/gonets/identity/token"
)

// defaultDataDir is where a node keeps its data unless told otherwise.
const defaultDataDir = "gonets-data"

const tokenUsage = "usage: gonets token --user U --device D [--data DIR] [--ttl 24h] [--init]"

// tokenNotes is the --help text of gonets token.
const tokenNotes = `The token is signed with the node's key, node-token.key in its data
directory, which gonets serve creates on first start: run gonets token
where the node runs (beside its gonets-data), or pass --data DIR. Without
a key there it refuses, since a new key would sign tokens the node
rejects; --init creates one deliberately, for a node not started yet.`

// runToken mints a session token with the node's own key:
//
//	gonets token --user U --device D [--data DIR] [--ttl 24h] [--init]
//
// The data directory must hold the node's key; --init creates one there
// if it does not.
func runToken(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("token", tokenUsage, stdout, stderr)
	fs.notes = tokenNotes
	user := fs.Uint64("user", 0, "user `id` (required; ids start at 1)")
	device := fs.Uint64("device", 0, "device `id` (required; ids start at 1)")
	dir := fs.String("data", defaultDataDir, "the node's data `dir`ectory, holding its signing key")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	initKey := fs.Bool("init", false, "create the signing key if the data directory has none")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return fs.usage("%s", fs.noArgs())
	}
	for _, id := range []struct {
		name string
		v    uint64
	}{{"user", *user}, {"device", *device}} {
		switch {
		case !fs.isSet(id.name):
			return fs.usage("--%s is required", id.name)
		case id.v == 0:
			return fs.usage("--%s 0 is not a %s id: ids start at 1", id.name, id.name)
		}
	}
	if *ttl <= 0 {
		return fs.usage("--ttl %v must be positive", *ttl)
	}
	if err := checkNodeDir(*dir, *initKey); err != nil {
		fmt.Fprintf(stderr, "gonets token: %v\n", err)
		return 1
	}
	key, err := token.LoadOrCreateKey(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "gonets token: %v\n", err)
		return 1
	}
	tok, err := token.NewSigner(key).Sign(token.Claims{User: *user, Device: *device, Expires: time.Now().Add(*ttl)})
	if err != nil {
		fmt.Fprintf(stderr, "gonets token: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

// checkNodeDir refuses a data directory without the node's token key,
// unless initKey asks for one to be created.
func checkNodeDir(dir string, initKey bool) error {
	if initKey || exists(filepath.Join(dir, token.KeyFile)) {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	if exists(filepath.Join(dir, storeDir)) {
		return fmt.Errorf("%s holds a node's store but no %s: a new key would sign tokens the node rejects; "+
			"restore the key from a backup, or pass --init to create one and restart the node", abs, token.KeyFile)
	}
	return fmt.Errorf("no node in %s (no %s): run gonets token where the node's data directory is, "+
		"pass --data DIR, or pass --init to create a new key deliberately", abs, token.KeyFile)
}
