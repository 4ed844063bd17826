// Package tools is the gonets command line: it maps subcommands, flags and
// config files onto the components' Options and runs them. It is the only
// package that knows about flags; the components take Options structs.
//
// Subcommands today:
//
//	gonets version   prints the build's version, Go version and VCS commit
//	gonets token     mints a session token with the node's own key
//
// Each subcommand is a func(args, stdout, stderr) int registered in
// commands; Main dispatches to it and returns the process exit code.
package tools
