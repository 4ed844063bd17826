// Command gonets is the Gonets realtime backend appliance: one binary that
// serves chats, groups and channels, and the tools that operate it.
//
// main is a thin dispatch into package tools, which owns every subcommand.
package main

import (
	"os"

	"github.com/gonets/gonets/tools"
)

func main() {
	os.Exit(tools.Main(os.Args[1:], os.Stdout, os.Stderr))
}
