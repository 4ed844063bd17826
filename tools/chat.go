package tools

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// chatKinds maps --kind onto the wire's chat kinds.
var chatKinds = map[string]wire.ChatKind{
	"direct":  wire.ChatKind_CHAT_KIND_DIRECT,
	"group":   wire.ChatKind_CHAT_KIND_GROUP,
	"channel": wire.ChatKind_CHAT_KIND_CHANNEL,
}

const chatUsage = "usage: gonets chat create [flags] --kind direct|group|channel [--title S] --member U [--member U ...]"

// runChat manages chats. Its one subcommand creates a chat and prints
// its id:
//
//	gonets chat create --server H:P --token T --kind direct|group [--title S] --member U [--member U ...]
func runChat(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprintf(stderr, "gonets chat: no subcommand: the one subcommand is create\n%s\n", chatUsage)
		return 2
	case isHelp(args[0]):
		fmt.Fprintf(stdout, "%s\nRun 'gonets chat create --help' for the flags.\n", chatUsage)
		return 0
	case args[0] != "create":
		fmt.Fprintf(stderr, "gonets chat: unknown subcommand %q: the one subcommand is create\n%s\n", args[0], chatUsage)
		return 2
	}
	fs := newFlagSet("chat create", chatUsage, stdout, stderr)
	cf := addClientFlags(fs)
	kind := fs.String("kind", "", "chat `kind`: direct, group or channel (required)")
	title := fs.String("title", "", "the chat's title")
	var members userList
	fs.Var(&members, "member", "a member's user `id`, besides the token's user (repeat; a direct chat has one)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the node")
	if code, ok := fs.parse(args[1:]); !ok {
		return code
	}
	k, ok := chatKinds[*kind]
	switch {
	case fs.NArg() != 0:
		return fs.usage("%s", fs.noArgs())
	case *kind == "":
		return fs.usage("--kind is required: direct, group or channel")
	case !ok:
		return fs.usage("--kind %q is not a chat kind: want direct, group or channel", *kind)
	case len(members) == 0:
		return fs.usage("no --member: name at least one other user (a direct chat has exactly one)")
	case *timeout <= 0:
		return fs.usage("--timeout %v must be positive", *timeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	stderr = &syncWriter{w: stderr}
	c, err := cf.dial(ctx, client.Options{SendOnly: true, NoReconnect: true, Logger: cliLogger(stderr)})
	if err != nil {
		return cliFail(stderr, "chat", err)
	}
	defer c.Close()
	ci, err := c.CreateChat(ctx, k, members, *title)
	if err != nil {
		return cliFail(stderr, "chat", err)
	}
	fmt.Fprintln(stdout, ci.Chat)
	return 0
}
