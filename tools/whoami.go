package tools

import (
	"encoding/json"
	"fmt"
	"io"
)

const whoamiUsage = "usage: gonets whoami [--profile NAME] [--json]"

// runWhoami prints the user id of a saved login, for scripts
// (`BOB=$(gonets whoami --profile bob)`), or with --json the login's
// user, device, phone and node. It reads the profile only: no network,
// no token renewed.
func runWhoami(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("whoami", whoamiUsage, stdout, stderr)
	name := fs.String("profile", defaultProfile, "the saved login, by `name`")
	asJSON := fs.Bool("json", false, "print user, device, phone and server as one JSON object")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return fs.usage("%s", fs.noArgs())
	}
	pf, err := openProfile(*name)
	if err != nil {
		return cliFail(stderr, "whoami", err)
	}
	p, err := pf.load()
	if err != nil {
		return cliFail(stderr, "whoami", err)
	}
	if !*asJSON {
		fmt.Fprintln(stdout, p.User)
		return 0
	}
	json.NewEncoder(stdout).Encode(struct {
		User    uint64 `json:"user"`
		Device  uint64 `json:"device"`
		Phone   string `json:"phone"`
		Server  string `json:"server"`
		Profile string `json:"profile"`
	}{p.User, p.Device, p.Phone, p.Server, pf.name})
	return 0
}
