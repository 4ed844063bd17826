package tools

import (
	"context"
	"flag"
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

const chatUsage = "usage: gonets chat create [--server H:P] [--token T] --kind direct|group|channel [--title S] --member U [--member U ...]"

// runChat manages chats. Its one subcommand creates a chat and prints
// its id:
//
//	gonets chat create --server H:P --token T --kind direct|group [--title S] --member U [--member U ...]
func runChat(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(stderr, chatUsage)
		return 2
	}
	fs := flag.NewFlagSet("chat create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	kind := fs.String("kind", "", "chat `kind`: direct, group or channel (required)")
	title := fs.String("title", "", "the chat's title")
	var members userList
	fs.Var(&members, "member", "a member's user `id`, besides the token's user (repeat; a direct chat has one)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the node")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	k, ok := chatKinds[*kind]
	if !ok || len(members) == 0 || fs.NArg() != 0 || *timeout <= 0 {
		fmt.Fprintln(stderr, chatUsage)
		return 2
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
