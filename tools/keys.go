package tools

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/gonets/gonets/identity/token"
)

const (
	keysUsage       = "usage: gonets keys rotate [--data DIR] [--force] [--min-interval 1h] | gonets keys show [--data DIR]"
	keysRotateUsage = "usage: gonets keys rotate [--data DIR] [--force] [--min-interval 1h]"
	keysShowUsage   = "usage: gonets keys show [--data DIR]"
)

// keysRotateNotes is the --help text of gonets keys rotate.
const keysRotateNotes = `Makes a new key the node's token signing key (node-token.key in its data
directory) and keeps the one it replaces as the previous key
(node-token.prev.key): new tokens are signed with the new key, and tokens
signed with the previous one verify until they expire. A running node
picks the change up within 10 s, or at once on SIGHUP.

Only one previous key is kept, so a rotation drops the key before it. It
is refused when the last rotation was less than --min-interval ago (the
access token lifetime, so that no token of the dropped key is still
valid); --force rotates anyway, and those tokens stop verifying at once.`

// runKeys manages the node's token signing keys:
//
//	gonets keys rotate [--data DIR] [--force] [--min-interval 1h]
//	gonets keys show [--data DIR]
func runKeys(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprintf(stderr, "gonets keys: no subcommand: the subcommands are rotate and show\n%s\n", keysUsage)
		return 2
	case isHelp(args[0]):
		fmt.Fprintf(stdout, "%s\nRun 'gonets keys rotate --help' or 'gonets keys show --help' for the flags.\n", keysUsage)
		return 0
	case args[0] == "rotate":
		return runKeysRotate(args[1:], stdout, stderr)
	case args[0] == "show":
		return runKeysShow(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "gonets keys: unknown subcommand %q: the subcommands are rotate and show\n%s\n", args[0], keysUsage)
	return 2
}

func runKeysRotate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keys rotate", keysRotateUsage, stdout, stderr)
	fs.notes = keysRotateNotes
	dir := fs.String("data", defaultDataDir, "the node's data `dir`ectory, holding its signing keys")
	force := fs.Bool("force", false, "rotate even if the last rotation was less than --min-interval ago")
	minInterval := fs.Duration("min-interval", time.Hour, "the least time between two rotations: the access token lifetime")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return fs.usage("%s", fs.noArgs())
	}
	if *minInterval < 0 {
		return fs.usage("--min-interval %v must not be negative", *minInterval)
	}
	cur, prev, err := token.RotateKey(*dir, *minInterval, *force, time.Now())
	switch {
	case errors.Is(err, token.ErrRotateTooSoon):
		fmt.Fprintf(stderr, "gonets keys rotate: %v\nWait, or pass --force: tokens signed with the key it drops stop verifying at once.\n", err)
		return 1
	case err != nil:
		return keysFail(stderr, "rotate", *dir, err)
	}
	fmt.Fprintf(stdout, "current   %s (new)\nprevious  %s (its tokens verify until they expire)\n", cur, prev)
	fmt.Fprintln(stdout, "A running node picks the new key up within 10 s, or at once on SIGHUP.")
	return 0
}

func runKeysShow(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keys show", keysShowUsage, stdout, stderr)
	dir := fs.String("data", defaultDataDir, "the node's data `dir`ectory, holding its signing keys")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return fs.usage("%s", fs.noArgs())
	}
	k, err := token.ReadKeyring(*dir)
	if err != nil {
		return keysFail(stderr, "show", *dir, err)
	}
	keys := k.PublicKeys()
	prev, rotated := "none", "never"
	if len(keys) > 1 {
		prev = token.KeyID(keys[1])
	}
	if t := k.Rotated(); !t.IsZero() {
		rotated = fmt.Sprintf("%s (%v ago)", t.UTC().Format(time.RFC3339), time.Since(t).Round(time.Second))
	}
	fmt.Fprintf(stdout, "current   %s\nprevious  %s\nrotated   %s\n", token.KeyID(keys[0]), prev, rotated)
	return 0
}

// keysFail reports err of gonets keys sub and returns 1; a directory
// without a key gets a sentence on where the node's is.
func keysFail(stderr io.Writer, sub, dir string, err error) int {
	if errors.Is(err, fs.ErrNotExist) {
		abs, aerr := filepath.Abs(dir)
		if aerr != nil {
			abs = dir
		}
		fmt.Fprintf(stderr, "gonets keys %s: no node key in %s (no %s): run it where the node's data directory is, or pass --data DIR\n",
			sub, abs, token.KeyFile)
		return 1
	}
	fmt.Fprintf(stderr, "gonets keys %s: %v\n", sub, err)
	return 1
}
