package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

const (
	signUsage        = "usage: gonets sign send --chat ID --to USER --title T --file PATH [flags] | gonets sign approve|decline [flags] ID"
	signSendUsage    = "usage: gonets sign send --chat ID --to USER --title T --file PATH [--profile NAME] [flags]"
	signDecideUsage  = "usage: gonets sign %s [--profile NAME] [flags] ID"
	maxSignDocument  = 16 << 20 // read no more; the node's cap (1 MiB by default) refuses above its own
	signDecisionHint = "gonets sign approve|decline takes the request id \"<chat>.<seq>\" that gonets sign send printed"
)

// signNotes is the --help text of gonets sign send.
const signNotes = `Sends USER, a member of the chat, the file to sign: the request is
posted in the chat and its id, "<chat>.<seq>", printed. The signer
(who must have linked a state account: gonets link esia) answers with
gonets sign approve ID, which sends the document to the signing
service, or gonets sign decline ID. The outcome, with the signature,
comes later in the chat as a sign_result (gonets tail shows it).`

// runSign sends a document to sign, or answers a signing request:
//
//	gonets sign send --chat C --to U --title T --file PATH
//	gonets sign approve C.SEQ
//	gonets sign decline C.SEQ
func runSign(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "gonets sign: no subcommand: send, approve or decline\n%s\n", signUsage)
		return 2
	}
	switch sub := args[0]; sub {
	case "send":
		return signSend(args[1:], stdout, stderr)
	case "approve", "decline":
		return signDecide(sub, args[1:], stdout, stderr)
	default:
		if isHelp(sub) {
			fmt.Fprintf(stdout, "%s\nRun 'gonets sign send --help' for the flags.\n", signUsage)
			return 0
		}
		fmt.Fprintf(stderr, "gonets sign: unknown subcommand %q: send, approve or decline\n%s\n", sub, signUsage)
		return 2
	}
}

// signSend sends a document to sign and prints the request's id.
func signSend(args []string, stdout, stderr io.Writer) int {
	const name = "sign send"
	fs := newFlagSet(name, signSendUsage, stdout, stderr)
	cf := addClientFlags(fs)
	fs.notes = signNotes + "\n\n" + fs.notes
	chat := fs.Uint64("chat", 0, "the chat `id`: a direct chat or group of yours and the signer's (required)")
	to := fs.Uint64("to", 0, "the signer's user `id` (required)")
	title := fs.String("title", "", "the document's `title`, shown to the signer (required)")
	file := fs.String("file", "", "the document to sign, a `path` (required)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the node")
	if c, ok := fs.parse(args); !ok {
		return c
	}
	switch {
	case fs.NArg() != 0:
		return fs.usage("%s", fs.noArgs())
	case *chat == 0 || *to == 0:
		return fs.usage("--chat and --to are required: the chat's id and the signer's user id")
	case *title == "" || *file == "":
		return fs.usage("--title and --file are required: what the signer sees and the document")
	case *timeout <= 0:
		return fs.usage("--timeout %v must be positive", *timeout)
	}
	doc, err := readDocument(*file)
	if err != nil {
		return cliFail(stderr, name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	stderr = &syncWriter{w: stderr}
	c, err := cf.dial(ctx, client.Options{SendOnly: true, Logger: cliLogger(stderr)})
	if err != nil {
		return cliFail(stderr, name, err)
	}
	defer c.Close()
	ack, err := c.SignRequest(ctx, client.SignRequestOptions{Chat: *chat, Signer: *to, Title: *title, Document: doc})
	if err != nil {
		return cliFail(stderr, name, signError(err))
	}
	fmt.Fprintf(stdout, "%d.%d\n", ack.Chat, ack.Seq)
	return 0
}

// readDocument reads the document at path, up to maxSignDocument bytes.
func readDocument(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSignDocument+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("--file: %w", err)
	case len(b) > maxSignDocument:
		return nil, fmt.Errorf("--file %s: over %d MiB", path, maxSignDocument>>20)
	case len(b) == 0:
		return nil, fmt.Errorf("--file %s: empty", path)
	}
	return b, nil
}

// signDecide answers the signing request given: approve or decline.
func signDecide(sub string, args []string, stdout, stderr io.Writer) int {
	name := "sign " + sub
	fs := newFlagSet(name, fmt.Sprintf(signDecideUsage, sub), stdout, stderr)
	cf := addClientFlags(fs)
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the node")
	if c, ok := fs.parse(args); !ok {
		return c
	}
	switch {
	case fs.NArg() != 1:
		return fs.usage("give one signing request id, \"<chat>.<seq>\" (gonets sign send prints it)")
	case *timeout <= 0:
		return fs.usage("--timeout %v must be positive", *timeout)
	}
	id := fs.Arg(0)
	var chat, seq uint64
	if n, err := fmt.Sscanf(id, "%d.%d", &chat, &seq); err != nil || n != 2 || fmt.Sprintf("%d.%d", chat, seq) != id || chat == 0 || seq == 0 {
		return fs.usage("%q is not a signing request id: \"<chat>.<seq>\", as gonets sign send prints it", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	stderr = &syncWriter{w: stderr}
	c, err := cf.dial(ctx, client.Options{SendOnly: true, NoReconnect: true, Logger: cliLogger(stderr)})
	if err != nil {
		return cliFail(stderr, name, err)
	}
	defer c.Close()
	if err := c.SignDecision(ctx, id, sub == "approve"); err != nil {
		return cliFail(stderr, name, signError(err))
	}
	what := "declined"
	if sub == "approve" {
		what = "approved: the document went to the signing service; the outcome comes in the chat"
	}
	fmt.Fprintf(stderr, "gonets %s: %s %s\n", name, id, what)
	return 0
}

// signError adds to a refused signing request what it means.
func signError(err error) error {
	var e *client.Error
	if !errors.As(err, &e) {
		return err
	}
	switch e.Code {
	case wire.ErrorCode_ERROR_CODE_NOT_LINKED:
		return fmt.Errorf("%w (the signer must link a state account first: gonets link esia)", err)
	case wire.ErrorCode_ERROR_CODE_STATE_SERVICES_OFF:
		return fmt.Errorf("%w (this node has no signing service: its operator sets state.signing.provider)", err)
	case wire.ErrorCode_ERROR_CODE_UNKNOWN_REQUEST:
		return fmt.Errorf("%w (no such request for this login to sign; %s)", err, signDecisionHint)
	case wire.ErrorCode_ERROR_CODE_REQUEST_ENDED:
		return fmt.Errorf("%w (the request was decided already or ended)", err)
	}
	return err
}
