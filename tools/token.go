package tools

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/gonets/gonets/identity/token"
)

// defaultDataDir is where a node keeps its data unless told otherwise.
const defaultDataDir = "gonets-data"

// runToken mints a session token with the node's own key, creating the
// key in the data directory if there is none:
//
//	gonets token --user U --device D [--data DIR] [--ttl 24h]
func runToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.Uint64("user", 0, "user id (required)")
	device := fs.Uint64("device", 0, "device id (required)")
	dir := fs.String("data", defaultDataDir, "the node's data directory, holding its signing key")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *user == 0 || *device == 0 || fs.NArg() != 0 || *ttl <= 0 {
		fmt.Fprintln(stderr, "usage: gonets token --user U --device D [--data DIR] [--ttl 24h]")
		return 2
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
