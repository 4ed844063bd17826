package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gonets/gonets/broker/client"
)

const sendUsage = "usage: gonets send [flags] --chat C TEXT   (flags before the text)"

// ackLine is the JSON line send prints.
type ackLine struct {
	Chat      uint64 `json:"chat"`
	Seq       uint64 `json:"seq"`
	Time      string `json:"time"`
	Duplicate bool   `json:"duplicate"`
}

// runSend sends one text message and prints its ack as a JSON line:
//
//	gonets send --server H:P --token T --chat C TEXT
//
// Several arguments are joined with spaces. The flags come first: an
// argument after the text that names a flag is a usage error, unless
// "--" ends the flags.
func runSend(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("send", sendUsage, stdout, stderr)
	cf := addClientFlags(fs)
	chat := fs.Uint64("chat", 0, "the chat `id` (required)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the ack, reconnecting if need be")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if f := fs.flagAfterArgs(args); f != "" {
		return fs.usage("flag %s comes after the message text: put the flags first (or \"--\" before a text that holds %s)", f, f)
	}
	switch {
	case !fs.isSet("chat"):
		return fs.usage("--chat is required: the chat's id, as chat create prints it")
	case *chat == 0:
		return fs.usage("--chat 0 is not a chat id: ids start at 1")
	case fs.NArg() == 0:
		return fs.usage("no message text: give it after the flags")
	case *timeout <= 0:
		return fs.usage("--timeout %v must be positive", *timeout)
	}
	text := strings.Join(fs.Args(), " ")
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	stderr = &syncWriter{w: stderr}
	c, err := cf.dial(ctx, client.Options{SendOnly: true, Logger: cliLogger(stderr)})
	if err != nil {
		return cliFail(stderr, "send", err)
	}
	defer c.Close()
	ack, err := c.Send(ctx, *chat, []byte(text))
	if err != nil {
		return cliFail(stderr, "send", err)
	}
	line, err := json.Marshal(ackLine{Chat: ack.Chat, Seq: ack.Seq, Time: ack.Time.UTC().Format(time.RFC3339Nano), Duplicate: ack.Duplicate})
	if err != nil {
		return cliFail(stderr, "send", err)
	}
	fmt.Fprintf(stdout, "%s\n", line)
	return 0
}
