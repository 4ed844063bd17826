package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

const sendUsage = "usage: gonets send [flags] --chat C [--file PATH]... [TEXT]   (flags before the text)"

const sendNotes = `
With --file (repeatable) the files are uploaded to the node's public HTTPS
listener (its URL comes with the connection) and sent in one message, the
text as their caption; each file's attachment type follows its MIME type
(from its extension, else sniffed by the node): image/* a photo, video/* a
video, audio/* audio, anything else a file. Large files go in resumable
chunks, several at once. The ack line then lists the attachments sent,
as the node described each upload (size; a picture's width, height and
thumbnail).`

// ackLine is the JSON line send prints.
type ackLine struct {
	Chat      uint64 `json:"chat"`
	Seq       uint64 `json:"seq"`
	Time      string `json:"time"`
	Duplicate bool   `json:"duplicate"`
	// Attachments are the files sent with --file.
	Attachments []attachmentLine `json:"attachments,omitempty"`
}

// attachmentLine describes an attachment in send's and tail's lines.
type attachmentLine struct {
	Type        string `json:"type"`
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	MIME        string `json:"mime"`
	SHA256      string `json:"sha256"`
	Width       uint32 `json:"width,omitempty"`
	Height      uint32 `json:"height,omitempty"`
	ThumbSHA256 string `json:"thumb_sha256,omitempty"`
	// Saved is where tail --save wrote the file.
	Saved string `json:"saved,omitempty"`
}

// newAttachmentLine converts an attachment.
func newAttachmentLine(a *wire.Attachment) attachmentLine {
	return attachmentLine{
		Type: strings.ToLower(strings.TrimPrefix(a.GetType().String(), "ATTACHMENT_TYPE_")),
		Name: a.GetName(), Size: a.GetSize(), MIME: a.GetMime(), SHA256: a.GetSha256(),
		Width: a.GetWidth(), Height: a.GetHeight(), ThumbSHA256: a.GetThumbSha256(),
	}
}

// pathList is a repeatable flag of paths.
type pathList []string

func (p *pathList) String() string { return strings.Join(*p, ",") }

func (p *pathList) Set(v string) error {
	if v == "" {
		return fmt.Errorf("empty path")
	}
	*p = append(*p, v)
	return nil
}

// runSend sends one message and prints its ack as a JSON line:
//
//	gonets send --server H:P --token T --chat C TEXT
//	gonets send --server H:P --token T --chat C --file PATH [--file PATH2] [CAPTION]
//
// Several arguments are joined with spaces. The flags come first: an
// argument after the text that names a flag is a usage error, unless
// "--" ends the flags. With --file the files are uploaded first and sent
// as one MEDIA message, the text as their caption.
func runSend(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("send", sendUsage, stdout, stderr)
	fs.notes = sendNotes
	cf := addClientFlags(fs)
	chat := fs.Uint64("chat", 0, "the chat `id` (required)")
	var files pathList
	fs.Var(&files, "file", "upload the file at `path` and send it (repeatable; the text is the caption)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the ack, reconnecting if need be")
	uploadTimeout := fs.Duration("upload-timeout", 30*time.Minute, "how long the uploads of --file may take, all together")
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
	case fs.NArg() == 0 && len(files) == 0:
		return fs.usage("no message text: give it after the flags (or a --file)")
	case len(files) > 10:
		return fs.usage("%d files: a message carries at most 10", len(files))
	case *timeout <= 0:
		return fs.usage("--timeout %v must be positive", *timeout)
	case *uploadTimeout <= 0:
		return fs.usage("--upload-timeout %v must be positive", *uploadTimeout)
	}
	text := strings.Join(fs.Args(), " ")
	total := *timeout
	if len(files) > 0 {
		total += *uploadTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), total)
	defer cancel()
	stderr = &syncWriter{w: stderr}
	c, err := cf.dial(ctx, client.Options{SendOnly: true, Logger: cliLogger(stderr)})
	if err != nil {
		return cliFail(stderr, "send", err)
	}
	defer c.Close()
	var ack client.Ack
	var sent []*wire.Attachment
	if len(files) == 0 {
		ack, err = c.Send(ctx, *chat, []byte(text))
	} else {
		ack, sent, err = sendFiles(ctx, c, *chat, text, files, *uploadTimeout)
	}
	if err != nil {
		return cliFail(stderr, "send", err)
	}
	l := ackLine{Chat: ack.Chat, Seq: ack.Seq, Time: ack.Time.UTC().Format(time.RFC3339Nano), Duplicate: ack.Duplicate}
	for _, a := range sent {
		l.Attachments = append(l.Attachments, newAttachmentLine(a))
	}
	line, err := json.Marshal(l)
	if err != nil {
		return cliFail(stderr, "send", err)
	}
	fmt.Fprintf(stdout, "%s\n", line)
	return 0
}

// sendFiles uploads files, within uploadTimeout, and sends them with
// caption as one MEDIA message. It returns the attachments sent, as the
// node described each upload (its size, a picture's dimensions and
// thumbnail).
func sendFiles(ctx context.Context, c *client.Client, chat uint64, caption string, files []string, uploadTimeout time.Duration) (client.Ack, []*wire.Attachment, error) {
	uctx, cancel := context.WithTimeout(ctx, uploadTimeout)
	defer cancel()
	content := &wire.Content{Text: caption}
	for _, p := range files {
		a, err := c.UploadFile(uctx, p, client.UploadOptions{})
		if err != nil {
			return client.Ack{}, nil, fmt.Errorf("upload %s: %w", p, err)
		}
		content.Attachments = append(content.Attachments, a)
	}
	ack, err := c.SendContent(ctx, chat, content)
	if err != nil {
		return client.Ack{}, nil, err
	}
	return ack, content.Attachments, nil
}
