package tools

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

const tailUsage = "usage: gonets tail [flags] [--all | --since V] [--count N] [--save DIR]"

const tailNotes = `
A MEDIA message's line carries its text and its attachments (type, name,
size, mime, sha256, and a picture's width, height and thumb_sha256). With
--save DIR each attachment printed is first downloaded into DIR, under its
name (made safe; with its hash's first 12 digits added when that name is
taken by other content), and its line gives the path as "saved"; a failed
download is reported on stderr and the line printed without it.`

// messageLine is the JSON line tail prints per message.
type messageLine struct {
	Chat   uint64 `json:"chat"`
	Seq    uint64 `json:"seq"`
	Sender uint64 `json:"sender"`
	Device uint64 `json:"device"`
	Time   string `json:"time"`
	Kind   string `json:"kind"`
	// Target is the seq an edit, delete or reaction points at.
	Target uint64 `json:"target,omitempty"`
	Text   string `json:"text"`
	// Body carries, base64, a body that is not UTF-8 text (Text is then
	// empty).
	Body []byte `json:"body,omitempty"`
	// Service is a service message's or call record's body, decoded
	// (wire.Service, wire.CallRecord as protobuf JSON): a new login's
	// note, a live stream's start, a recording.
	Service json.RawMessage `json:"service,omitempty"`
	// Attachments are a MEDIA message's files (Text is its text).
	Attachments []attachmentLine `json:"attachments,omitempty"`
}

// newMessageLine converts a delivered message.
func newMessageLine(m client.Message) messageLine {
	l := messageLine{
		Chat:   m.Chat,
		Seq:    m.Seq,
		Sender: m.Sender,
		Device: m.Device,
		Time:   m.Time.UTC().Format(time.RFC3339Nano),
		Kind:   kindName(m.Kind),
		Target: m.Target,
	}
	if m.Kind == wire.MsgKind_MSG_KIND_MEDIA {
		var c wire.Content
		if proto.Unmarshal(m.Body, &c) == nil {
			l.Text = c.GetText()
			for _, a := range c.GetAttachments() {
				l.Attachments = append(l.Attachments, newAttachmentLine(a))
			}
			return l
		}
	}
	var body proto.Message
	switch m.Kind {
	case wire.MsgKind_MSG_KIND_SERVICE:
		body = &wire.Service{}
	case wire.MsgKind_MSG_KIND_CALL:
		body = &wire.CallRecord{}
	}
	if body != nil && proto.Unmarshal(m.Body, body) == nil {
		if b, err := protojson.Marshal(body); err == nil {
			l.Service = b
			return l
		}
	}
	if utf8.Valid(m.Body) {
		l.Text = string(m.Body)
	} else {
		l.Body = m.Body
	}
	return l
}

// kindName returns "text", "media", "service", "edit", "delete" or
// "reaction".
func kindName(k wire.MsgKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "MSG_KIND_"))
}

// runTail prints every message delivered to the token's user as one JSON
// line, until SIGINT or SIGTERM (exit 0), --count messages (exit 0), or
// the node rejecting the session for good (exit 1):
//
//	gonets tail --server H:P --token T [--all | --since V] [--count N] [--save DIR]
//
// By default it prints only messages appended after it connected; --all
// prints every retained message of every chat first, and --since V the
// messages of the chats that changed after sync point V (each from its
// first retained message). After a lost connection it reconnects and
// first prints what it missed, in order, so nothing is skipped or printed
// twice while it runs. With --save DIR it downloads the attachments of
// the MEDIA messages it prints into DIR.
func runTail(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("tail", tailUsage, stdout, stderr)
	fs.notes = tailNotes
	cf := addClientFlags(fs)
	all := fs.Bool("all", false, "print every retained message of every chat first")
	since := fs.Uint64("since", 0, "print first the chats changed after sync `point` V")
	count := fs.Int("count", 0, "exit after `N` messages (0: run until interrupted)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long the first connection may take, finding where to start included")
	save := fs.String("save", "", "download each attachment printed into `dir`ectory DIR")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	switch {
	case fs.NArg() != 0:
		return fs.usage("%s", fs.noArgs())
	case *all && fs.isSet("since"):
		return fs.usage("--all and --since are exclusive: --all prints every retained message, --since V the chats changed after V")
	case *count < 0:
		return fs.usage("--count %d is negative", *count)
	case *timeout <= 0:
		return fs.usage("--timeout %v must be positive", *timeout)
	}
	if *save != "" {
		if st, err := os.Stat(*save); err != nil || !st.IsDir() {
			return fs.usage("--save %s: not a directory", *save)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stderr = &syncWriter{w: stderr}
	opts := client.Options{Logger: cliLogger(stderr)}
	switch {
	case *all:
	case *since != 0:
		opts.State = client.SyncState{Since: *since}
	default:
		opts.FromNow = true
	}
	dialCtx, cancel := context.WithTimeout(ctx, *timeout)
	c, err := cf.dial(dialCtx, opts)
	cancel()
	if err != nil {
		return cliFail(stderr, "tail", err)
	}
	defer c.Close()
	defer cf.keep(c, stderr, "tail")() // a profile's token renewed as it runs out
	fmt.Fprintf(stderr, "gonets tail: connected to %s over %v as user %d device %d\n", cf.server, c.Transport(), c.User(), c.Device())
	return tailEvents(ctx, c, *count, *save, json.NewEncoder(stdout), stderr)
}

// tailEvents prints c's messages until ctx ends, count are printed, or c
// stops; with save, it downloads their attachments there first.
func tailEvents(ctx context.Context, c *client.Client, count int, save string, out *json.Encoder, stderr io.Writer) int {
	printed := 0
	for {
		select {
		case <-ctx.Done():
			return 0
		case ev, ok := <-c.Events():
			if !ok {
				err := c.Err()
				if err == nil || errors.Is(err, client.ErrClosed) {
					return 0
				}
				fmt.Fprintf(stderr, "gonets tail: %v\n", err)
				return 1
			}
			switch ev.Kind {
			case client.EventMessage:
				l := newMessageLine(ev.Message)
				if save != "" {
					saveAttachments(ctx, c, save, ev.Message, l.Attachments, stderr)
				}
				if err := out.Encode(l); err != nil {
					fmt.Fprintf(stderr, "gonets tail: %v\n", err)
					return 1
				}
				if printed++; count > 0 && printed >= count {
					return 0
				}
			case client.EventDisconnected:
				fmt.Fprintf(stderr, "gonets tail: disconnected: %v\n", ev.Err)
			case client.EventConnected:
				fmt.Fprintln(stderr, "gonets tail: in sync")
			}
		}
	}
}

// saveAttachments downloads the attachments of m, printed as atts, into
// dir and records each path in its line.
func saveAttachments(ctx context.Context, c *client.Client, dir string, m client.Message, atts []attachmentLine, stderr io.Writer) {
	for i := range atts {
		a := &atts[i]
		p, err := saveAttachment(ctx, c, dir, m, a)
		if err != nil {
			fmt.Fprintf(stderr, "gonets tail: save %s of chat %d seq %d: %v\n", a.SHA256, m.Chat, m.Seq, err)
			continue
		}
		a.Saved = p
	}
}

// saveAttachment downloads a into dir, under its name made safe, and
// returns the path. A file of that name with other content is kept: the
// name then gets the hash's first 12 digits. It writes a temporary file
// and renames it, so a failed download leaves nothing behind.
func saveAttachment(ctx context.Context, c *client.Client, dir string, m client.Message, a *attachmentLine) (string, error) {
	if len(a.SHA256) != 64 {
		return "", fmt.Errorf("bad sha256 %q", a.SHA256)
	}
	name := safeFileName(a.Name)
	if name == "" {
		name = a.SHA256
	}
	p := filepath.Join(dir, name)
	if st, err := os.Stat(p); err == nil {
		if st.Size() == a.Size && fileSHA256(p) == a.SHA256 {
			return p, nil // saved before
		}
		ext := filepath.Ext(name)
		p = filepath.Join(dir, strings.TrimSuffix(name, ext)+"-"+a.SHA256[:12]+ext)
	}
	f, err := os.CreateTemp(dir, ".gonets-download-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	err = c.Download(ctx, m.Chat, m.Seq, a.SHA256, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return p, nil
}

// safeFileName keeps a name's last path element, without control
// characters, leading dots or separators.
func safeFileName(n string) string {
	n = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' || r == ':' {
			return '_'
		}
		return r
	}, filepath.Base(strings.ReplaceAll(n, "\\", "/")))
	n = strings.TrimLeft(n, ".")
	if len(n) > 200 {
		n = strings.ToValidUTF8(n[:200], "")
	}
	return n
}

// fileSHA256 returns the hex SHA-256 of the file at p, "" on error.
func fileSHA256(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}
