// Package tools is the gonets command line: it maps subcommands, flags and
// config files onto the components' Options and runs them. It is the only
// package that knows about flags; the components take Options structs.
//
// Subcommands today:
//
//	gonets serve         runs a node: store, broker on QUIC, HTTP health and metrics
//	gonets token         mints a session token with the node's own key
//	gonets chat create   creates a chat and prints its id
//	gonets send          sends a text message and prints the ack
//	gonets tail          prints every message delivered to a user, as JSON lines
//	gonets version       prints the build's version, Go version and VCS commit
//
// The client commands use the Go SDK (broker/client) and share the flags in
// clientflags.go.
//
// Each subcommand is a func(args, stdout, stderr) int registered in
// commands; Main dispatches to it and returns the process exit code: 0 on
// success, 1 on a failure, 2 on a usage error. Subcommands parse their
// flags with a flagSet (flagset.go): --help prints the flags to stdout and
// exits 0, and a usage error names what was wrong.
package tools
