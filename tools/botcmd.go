package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	botUsage       = "usage: gonets bot create|list|revoke|token|set [flags]"
	botCreateUsage = "usage: gonets bot create --name NAME [--username U] [--app-url URL] [--data DIR] [--admin URL]"
	botListUsage   = "usage: gonets bot list [--data DIR] [--admin URL]"
	botRevokeUsage = "usage: gonets bot revoke ID [--data DIR] [--admin URL]"
	botTokenUsage  = "usage: gonets bot token ID [--data DIR] [--admin URL]"
	botSetUsage    = "usage: gonets bot set ID [--app-url URL] [--description TEXT] [--data DIR] [--admin URL]"
)

// botNotes is the --help text shared by the gonets bot subcommands.
const botNotes = `Asks the running node, on its private HTTP listener (node.http_addr,
where /metrics is), with the admin token the node wrote at its first start
to admin.token in its data directory: run it as the node's user, where
that directory is, or pass --data DIR and --admin URL.`

// botCreateNotes is the --help text of gonets bot create.
const botCreateNotes = `Creates a bot: a user of kind bot that people open a direct chat with or
add to groups. Prints one JSON line, {"user_id":N,"token":"..."}: the
token drives the bot over the Bot API and is shown only here; the node
keeps only its hash. Lost or leaked, it is replaced with gonets bot token
ID, which kills the old one.

The name is 1 to 64 characters. The username is optional: 3 to 32 of
a-z, A-Z, 0-9 and _, ending in "bot", unique. --app-url declares the
bot's mini-app, an https URL opened from its chats with launch data the
node signs for the bot.

` + botNotes

// botDefaultAdmin is --admin's default: node.http_addr's default.
const botDefaultAdmin = "http://" + defaultHTTPAddr

// botRequestTimeout bounds each request to the node.
const botRequestTimeout = 10 * time.Second

// maxBotAdminResponse bounds a response of the admin endpoint.
const maxBotAdminResponse = 8 << 20

// runBot administers the node's bots:
//
//	gonets bot create --name NAME [--username U] [--app-url URL]
//	gonets bot list
//	gonets bot revoke ID
//	gonets bot token ID
//	gonets bot set ID [--app-url URL] [--description TEXT]
func runBot(args []string, stdout, stderr io.Writer) int {
	const subs = "the subcommands are create, list, revoke, token and set"
	switch {
	case len(args) == 0:
		fmt.Fprintf(stderr, "gonets bot: no subcommand: %s\n%s\n", subs, botUsage)
		return 2
	case isHelp(args[0]):
		fmt.Fprintf(stdout, "%s\n\n%s\n\nRun 'gonets bot SUBCOMMAND --help' for its flags.\n", botUsage, botNotes)
		return 0
	}
	switch args[0] {
	case "create":
		return runBotCreate(args[1:], stdout, stderr)
	case "list":
		return runBotList(args[1:], stdout, stderr)
	case "revoke":
		return runBotByID("revoke", botRevokeUsage, "Revokes the bot's token: the Bot API refuses it at once. The bot keeps its\nchats; gonets bot token ID gives it a new token. Prints the bot as a JSON\nline.", args[1:], stdout, stderr)
	case "token":
		return runBotByID("token", botTokenUsage, "Issues the bot a new token, revoked or not, and prints one JSON line,\n{\"user_id\":N,\"token\":\"...\"}; the old token dies at once.", args[1:], stdout, stderr)
	case "set":
		return runBotByID("set", botSetUsage, "Changes the bot's mini-app URL (an https URL; \"\" removes the mini-app)\nor its description, and prints the bot as a JSON line.", args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "gonets bot: unknown subcommand %q: %s\n%s\n", args[0], subs, botUsage)
	return 2
}

// botFlags are the flags every gonets bot subcommand takes.
type botFlags struct {
	data, admin *string
}

func addBotFlags(fs *flagSet) botFlags {
	return botFlags{
		data:  fs.String("data", defaultDataDir, "the node's data `dir`ectory, holding its "+adminTokenFile),
		admin: fs.String("admin", botDefaultAdmin, "the node's private HTTP `url` (node.http_addr)"),
	}
}

func runBotCreate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bot create", botCreateUsage, stdout, stderr)
	fs.notes = botCreateNotes
	bf := addBotFlags(fs)
	name := fs.String("name", "", "the bot's `name`, 1 to 64 characters (required)")
	username := fs.String("username", "", "the bot's unique `username`, ending in \"bot\"")
	appURL := fs.String("app-url", "", "the bot's mini-app, an https `url`")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return fs.usage("%s", fs.noArgs())
	}
	if *name == "" {
		return fs.usage("--name is required")
	}
	c, err := newBotClient(bf)
	if err != nil {
		return botFail(stderr, "create", err)
	}
	var out botTokenJSON
	if err := c.do(http.MethodPost, "/admin/bots", botCreateJSON{Name: *name, Username: *username, AppURL: *appURL}, &out); err != nil {
		return botFail(stderr, "create", err)
	}
	return botPrint(stdout, stderr, "create", out)
}

func runBotList(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bot list", botListUsage, stdout, stderr)
	fs.notes = "Prints the node's bots, one JSON line each, in id order; never their tokens.\n\n" + botNotes
	bf := addBotFlags(fs)
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return fs.usage("%s", fs.noArgs())
	}
	c, err := newBotClient(bf)
	if err != nil {
		return botFail(stderr, "list", err)
	}
	var out struct {
		Bots []botJSON `json:"bots"`
	}
	if err := c.do(http.MethodGet, "/admin/bots", nil, &out); err != nil {
		return botFail(stderr, "list", err)
	}
	for _, b := range out.Bots {
		if code := botPrint(stdout, stderr, "list", b); code != 0 {
			return code
		}
	}
	return 0
}

// runBotByID runs the subcommands that take a bot's id: revoke, token and
// set. The id may come before or after the flags.
func runBotByID(sub, synopsis, notes string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bot "+sub, synopsis, stdout, stderr)
	fs.notes = notes + "\n\n" + botNotes
	bf := addBotFlags(fs)
	var appURL, desc *string
	if sub == "set" {
		appURL = fs.String("app-url", "", "the bot's mini-app, an https `url`; \"\" removes it")
		desc = fs.String("description", "", "the bot's description, at most 512 characters")
	}
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		return fs.usage("no bot id: give the bot's user id")
	}
	idArg := fs.Arg(0)
	if code, ok := fs.parse(fs.Args()[1:]); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return fs.usage("unexpected argument %q: give one bot id", fs.Arg(0))
	}
	id, err := strconv.ParseUint(idArg, 10, 64)
	if err != nil || id == 0 {
		return fs.usage("bot id %q: want a user id, as gonets bot list prints it", idArg)
	}
	path := "/admin/bots/" + strconv.FormatUint(id, 10)
	var body any
	method := http.MethodPost
	switch sub {
	case "revoke", "token":
		path += "/" + sub
	case "set":
		var p botPatchJSON
		if fs.isSet("app-url") {
			p.AppURL = appURL
		}
		if fs.isSet("description") {
			p.Description = desc
		}
		if p.AppURL == nil && p.Description == nil {
			return fs.usage("nothing to set: give --app-url or --description")
		}
		method, body = http.MethodPatch, p
	}
	c, err := newBotClient(bf)
	if err != nil {
		return botFail(stderr, sub, err)
	}
	var out json.RawMessage
	if err := c.do(method, path, body, &out); err != nil {
		return botFail(stderr, sub, err)
	}
	return botPrint(stdout, stderr, sub, out)
}

// botPrint writes v as one JSON line.
func botPrint(stdout, stderr io.Writer, sub string, v any) int {
	b, err := json.Marshal(v)
	if err == nil {
		_, err = fmt.Fprintf(stdout, "%s\n", b)
	}
	if err != nil {
		fmt.Fprintf(stderr, "gonets bot %s: %v\n", sub, err)
		return 1
	}
	return 0
}

func botFail(stderr io.Writer, sub string, err error) int {
	fmt.Fprintf(stderr, "gonets bot %s: %v\n", sub, err)
	return 1
}

// botClient calls the node's bot admin endpoint.
type botClient struct {
	base  string // scheme://host:port, no trailing slash
	token string
	tfile string // where the token came from, for errors
	hc    *http.Client
}

// newBotClient reads the admin token from the data directory and checks
// --admin.
func newBotClient(bf botFlags) (*botClient, error) {
	base := strings.TrimRight(*bf.admin, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base // node.http_addr's host:port, as the config file has it
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--admin %q: want the node's http_addr, such as %s", *bf.admin, botDefaultAdmin)
	}
	path := filepath.Join(*bf.data, adminTokenFile)
	abs, aerr := filepath.Abs(path)
	if aerr != nil {
		abs = path
	}
	tok, err := readAdminToken(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no admin token at %s: the node writes it when it starts; run where the node's data directory is, or pass --data DIR", abs)
	}
	if err != nil {
		return nil, err
	}
	return &botClient{base: base, token: tok, tfile: abs, hc: &http.Client{Timeout: botRequestTimeout}}, nil
}

// do sends in (nil for no body) as JSON and decodes the answer into out.
func (c *botClient) do(method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), botRequestTimeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("no node answers at %s: is it running? Pass --admin with its node.http_addr", c.base)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s did not answer within %v", c.base, botRequestTimeout)
	case err != nil:
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBotAdminResponse))
	if err != nil {
		return fmt.Errorf("read the answer of %s: %w", c.base, err)
	}
	var refusal struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	isJSON := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
	switch {
	case resp.StatusCode == http.StatusUnauthorized && isJSON:
		return fmt.Errorf("the node at %s refused the admin token in %s: is that the running node's data directory?", c.base, c.tfile)
	case resp.StatusCode >= 300 && isJSON && json.Unmarshal(raw, &refusal) == nil && refusal.Code != "":
		return fmt.Errorf("%s (%s)", refusal.Message, refusal.Code)
	case resp.StatusCode >= 300:
		return fmt.Errorf("%s answered %s to %s %s: is it a gonets node with the bot admin endpoint?", c.base, resp.Status, method, path)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the answer of %s: %w", c.base, err)
	}
	return nil
}
