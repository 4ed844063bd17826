// Package tools is the gonets command line: it maps subcommands, flags and
// config files onto the components' Options and runs them. It is the only
// package that knows about flags; the components take Options structs.
//
// Subcommands today:
//
//	gonets serve         runs a node: store, broker on QUIC and TCP, accounts, calls, HTTP health and metrics
//	gonets login         logs in by phone number with an SMS code and saves the login as a profile
//	gonets logout        ends the profile's device and deletes the profile
//	gonets whoami        prints the user id of a saved login
//	gonets devices       lists the user's devices; devices end ID (or --others) ends them
//	gonets keys          rotates the node's token signing key (keys rotate), shows the keys (keys show)
//	gonets token         mints a session token with the node's own key (the operator's tool)
//	gonets chat create   creates a chat and prints its id
//	gonets send          sends a text message, or files (--file), and prints the ack
//	gonets tail          prints every message delivered to a user, as JSON lines
//	gonets version       prints the build's version, Go version and VCS commit
//
// The client commands use the Go SDK (broker/client) and share the flags in
// clientflags.go; they authenticate with --token, $GONETS_TOKEN or a saved
// login (--profile, profile.go), whose tokens they renew under a file lock
// so that no refresh token is ever sent twice.
//
// Each subcommand is a func(args, stdout, stderr) int registered in
// commands; Main dispatches to it and returns the process exit code: 0 on
// success, 1 on a failure, 2 on a usage error. Subcommands parse their
// flags with a flagSet (flagset.go): --help prints the flags to stdout and
// exits 0, and a usage error names what was wrong.
package tools
