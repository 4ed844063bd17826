package tools

import (
	"fmt"
	"io"
	"runtime/debug"
)

// Version is the release version; builds from a checkout report "devel".
// Release builds set it with -ldflags "-X github.com/gonets/gonets/tools.Version=v1.2.3".
var Version = "devel"

// runVersion prints the version, the Go toolchain and, when the binary was
// built with VCS stamping, the commit it was built from.
func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "usage: gonets version", stdout, stderr)
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return fs.usage("%s", fs.noArgs())
	}
	fmt.Fprintf(stdout, "gonets %s\n", Version)
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return 0
	}
	fmt.Fprintf(stdout, "go %s\n", info.GoVersion)
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision", "vcs.time", "vcs.modified":
			fmt.Fprintf(stdout, "%s %s\n", s.Key, s.Value)
		}
	}
	return 0
}
