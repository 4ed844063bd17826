package tools

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gonets/gonets/broker/client"
)

const sendUsage = "usage: gonets send [--server H:P] [--token T] --chat C TEXT"

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
// Several arguments are joined with spaces.
func runSend(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	chat := fs.Uint64("chat", 0, "the chat `id` (required)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the ack, reconnecting if need be")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *chat == 0 || fs.NArg() == 0 || *timeout <= 0 {
		fmt.Fprintln(stderr, sendUsage)
		return 2
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
