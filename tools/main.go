package tools

import (
	"fmt"
	"io"
	"sort"
)

// command is one gonets subcommand.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
	hidden  bool // internal: left out of the usage list
}

// commands maps a subcommand name to its implementation.
var commands = map[string]command{
	"bot":           {summary: "create, list, revoke or change the node's bots, and issue their tokens", run: runBot},
	"chat":          {summary: "create a chat", run: runChat},
	"id":            {summary: "a digital ID: issue, present, verify, nonce", run: runID},
	"keys":          {summary: "rotate or show the node's token signing keys", run: runKeys},
	"link":          {summary: "link a Gosuslugi account to a login (esia), show or remove it", run: runLink},
	"devices":       {summary: "list the devices of the login's user, or end some", run: runDevices},
	"login":         {summary: "log in by phone number and save the login as a profile", run: runLogin},
	"logout":        {summary: "end a saved login's device and delete the profile", run: runLogout},
	"whoami":        {summary: "print the user id of a saved login", run: runWhoami},
	"send":          {summary: "send a text message, or files (--file), and print its ack", run: runSend},
	"serve":         {summary: "run a node: QUIC for clients, HTTP for metrics and health", run: runServe},
	"sign":          {summary: "send a document to sign, or approve or decline a signing request", run: runSign},
	"sim":           {summary: "run a simulator of an outside system (esia) for demos", run: runSim},
	"tail":          {summary: "print the messages delivered to a user, as JSON lines", run: runTail},
	"bench":         {summary: "measure a node under load: chat, group, channel, connect, sync, storage, call, stream, login, id, upload", run: runBench},
	"bench-summary": {summary: "the medians of gonets bench --out files, as a markdown table", run: runBenchSummary},
	"bench-worker":  {summary: "internal: one load generator process of gonets bench --procs", run: runBenchWorker, hidden: true},
	"token":         {summary: "mint a session token with the node's key", run: runToken},
	"version":       {summary: "print version information", run: runVersion},
}

// Main runs the gonets command line with args (without the program name) and
// returns the process exit code: 0 on success (and after --help), 1 when
// the command failed, 2 on a usage error, which says what was wrong.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "gonets: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return cmd.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: gonets COMMAND [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(commands))
	for name, cmd := range commands {
		if !cmd.hidden {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-14s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'gonets COMMAND --help' for a command's flags.")
}
