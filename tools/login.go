package tools

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
)

const loginUsage = "usage: gonets login --phone +NUMBER [--send-code | --code CODE | --outbox FILE] [--name NAME] [--profile NAME] [flags]"

// loginNotes is the --help text of gonets login.
const loginNotes = `The node sends a one-time code by SMS to the number; gonets login asks
for it on the terminal (a wrong code asks again while tries are left),
or, with --outbox, waits for it in a node's development SMS outbox
(<data>/sms-outbox.jsonl, the file SMS adapter). Without a terminal,
log in in two steps: --send-code has the code sent and exits, then
--code CODE gives it (to the same attempt, kept beside the profile).
The first login of a number creates its account; each login is a new
device of it (gonets devices lists them).

The login is saved as a profile, mode 0600, in
$` + configDirEnv + `/profiles/NAME.json (else your config directory's
gonets/profiles): the node's address and how to trust it, as given here,
and the device's tokens. chat, send, tail and devices use the "default"
profile unless given --token, --profile or $` + tokenEnv + `; gonets
logout ends the device and deletes the profile.`

// loginLine is the JSON line gonets login prints.
type loginLine struct {
	User    uint64 `json:"user"`
	Device  uint64 `json:"device"`
	Created bool   `json:"created"`
	Profile string `json:"profile"`
}

// outboxWait bounds how long --outbox waits for the code to appear.
const outboxWait = 10 * time.Second

// runLogin logs in by phone number and saves the login as a profile:
//
//	gonets login --phone +79000000001 [--code 123456 | --outbox FILE] [--name NAME] [--profile NAME]
func runLogin(args []string, stdout, stderr io.Writer) int {
	return loginMain(args, os.Stdin, stdout, stderr)
}

// loginMain is runLogin reading the code, when prompted for, from in.
func loginMain(args []string, in io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("login", loginUsage, stdout, stderr)
	cf := addConnFlags(fs)
	fs.notes = loginNotes + "\n\n" + clientNotes
	phone := fs.String("phone", "", "the phone `number`, international: +, country code, number (required)")
	sendCode := fs.Bool("send-code", false, "have the code sent and exit; then give it with --code")
	code := fs.String("code", "", "the `code` the SMS sent by an earlier gonets login --send-code brought")
	outbox := fs.String("outbox", "", "wait for the code in this development SMS outbox `file` (a node's <data>/sms-outbox.jsonl)")
	name := fs.String("name", "", "the new device's `name` in the device list (default: this machine's host name)")
	prof := fs.String("profile", defaultProfile, "save the login under this profile `name`")
	timeout := fs.Duration("timeout", 30*time.Second, "how long each request to the node may take")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	switch {
	case fs.NArg() != 0:
		return fs.usage("%s", fs.noArgs())
	case *phone == "":
		return fs.usage("--phone is required: the number to log in with, as +, country code, number")
	case btoi(*sendCode)+btoi(*code != "")+btoi(*outbox != "") > 1:
		return fs.usage("--send-code, --code and --outbox are exclusive: pass one")
	case *timeout <= 0:
		return fs.usage("--timeout %v must be positive", *timeout)
	}
	pf, err := openProfile(*prof)
	if err != nil {
		return cliFail(stderr, "login", err)
	}
	dev := client.DeviceName{Name: *name, Platform: "cli"}
	if dev.Name == "" {
		dev.Name = defaultDeviceName()
	}
	l := &loginRun{cf: cf, pf: pf, timeout: *timeout, stderr: stderr}
	var t client.Tokens
	switch {
	case *code != "":
		t, err = l.resume(context.Background(), *phone, *code, dev)
	case *sendCode:
		if _, err = l.start(context.Background(), *phone); err == nil {
			fmt.Fprintf(stderr, "gonets login: then run: gonets login --phone %s --code CODE%s\n", l.phone, profileFlag(pf.name))
			return 0
		}
	default:
		var src codeSource = &promptCode{in: bufio.NewReader(in), out: stderr, profile: profileFlag(pf.name)}
		if *outbox != "" {
			if src, err = newOutboxWatch(*outbox); err != nil {
				return cliFail(stderr, "login", err)
			}
		}
		var lc client.LoginCode
		if lc, err = l.start(context.Background(), *phone); err == nil {
			t, err = l.verify(context.Background(), lc, dev, src)
		}
	}
	if err != nil {
		return cliFail(stderr, "login", err)
	}
	if old, err := pf.load(); err == nil && (old.User != t.User || old.Device != t.Device) {
		fmt.Fprintf(stderr, "gonets login: profile %s held device %d of user %d on %s, which stays in its device list until ended (gonets devices end %d, from a login of that user)\n",
			pf.name, old.Device, old.User, old.Server, old.Device)
	}
	p, err := cf.newProfile(t)
	if err == nil {
		p.Phone = l.phone
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		err = pf.save(ctx, p)
		cancel()
	}
	if err != nil {
		return cliFail(stderr, "login", fmt.Errorf("logged in as user %d device %d, but the login is not saved: %w", t.User, t.Device, err))
	}
	what := "logged in to"
	if t.Created {
		what = "signed up with a new account on"
	}
	fmt.Fprintf(stderr, "gonets login: %s %s as user %d, device %d (%q); saved as profile %s in %s\n",
		what, cf.server, t.User, t.Device, dev.Name, pf.name, pf.path)
	line, err := json.Marshal(loginLine{User: t.User, Device: t.Device, Created: t.Created, Profile: pf.name})
	if err != nil {
		return cliFail(stderr, "login", err)
	}
	fmt.Fprintf(stdout, "%s\n", line)
	return 0
}

// btoi is 1 for true.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// profileFlag is the --profile flag that names profile name, or "" for
// the default one.
func profileFlag(name string) string {
	if name == defaultProfile {
		return ""
	}
	return " --profile " + name
}

// defaultDeviceName is this machine's host name, within the 64 bytes a
// device name may take.
func defaultDeviceName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "gonets cli"
	}
	for len(h) > 64 {
		_, n := utf8.DecodeLastRuneInString(h)
		h = h[:len(h)-n]
	}
	return h
}

// newProfile returns the profile of a login with tokens t over the
// flags: the node's address and the certificate flags given.
func (f *clientFlags) newProfile(t client.Tokens) (*profile, error) {
	c, err := f.nodeConn()
	if err != nil {
		return nil, err
	}
	p := &profile{nodeConn: c}
	p.setTokens(t)
	return p, nil
}

// nodeConn returns where the flags reach the node and how they trust it.
func (f *clientFlags) nodeConn() (nodeConn, error) {
	p := nodeConn{Server: f.server, TCPServer: f.tcpServer, Fingerprint: f.fingerprint, Insecure: f.insecure}
	abs := func(path string) (string, error) {
		a, err := filepath.Abs(path)
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return a, nil
	}
	var err error
	if f.ca != "" {
		if p.CA, err = abs(f.ca); err != nil {
			return p, err
		}
	}
	if f.dataGiven() {
		if p.Data, err = abs(f.data); err != nil {
			return p, err
		}
	}
	return p, nil
}

// loginRun is one login: the start, then codes until one is right.
type loginRun struct {
	cf      *clientFlags
	pf      *profileFile // where the login goes, the pending attempt beside it
	timeout time.Duration
	stderr  io.Writer
	phone   string // E.164, from the node's answer
}

// options returns the SDK's options of the login's requests.
func (l *loginRun) options() (client.Options, error) {
	return l.cf.connOptions(client.Options{Name: cliName})
}

// start asks the node to send a code to phone, and keeps the attempt
// beside the profile for a later gonets login --code.
func (l *loginRun) start(ctx context.Context, phone string) (client.LoginCode, error) {
	o, err := l.options()
	if err != nil {
		return client.LoginCode{}, err
	}
	conn, err := l.cf.nodeConn()
	if err != nil {
		return client.LoginCode{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	lc, err := client.StartLogin(ctx, l.cf.server, phone, o)
	if err = l.cf.dialError(ctx, o, err); err != nil {
		return client.LoginCode{}, loginError(err)
	}
	l.phone = lc.Phone
	if lc.CodeLength <= 0 {
		lc.CodeLength = 6
	}
	fmt.Fprintf(l.stderr, "gonets login: a %d-digit code was sent to %s; it is valid for %v, %d tries\n",
		lc.CodeLength, lc.Phone, lc.Expires.Round(time.Second), lc.Tries)
	err = l.pf.savePending(&pendingLogin{nodeConn: conn, Phone: lc.Phone, Attempt: lc.Attempt,
		CodeLength: lc.CodeLength, Tries: lc.Tries, Expires: time.Now().Add(lc.Expires)})
	return lc, err
}

// resume verifies code for the attempt an earlier gonets login
// --send-code started for phone, on the node it asked.
func (l *loginRun) resume(ctx context.Context, phone, code string, dev client.DeviceName) (client.Tokens, error) {
	pl, err := l.pf.loadPending()
	switch {
	case err != nil:
		return client.Tokens{}, err
	case pl == nil || !samePhone(pl.Phone, phone):
		return client.Tokens{}, fmt.Errorf("no code was requested for %s%s: run gonets login --phone %s --send-code%s first (or without --code, to be asked for it)",
			phone, profileFlag(l.pf.name), phone, profileFlag(l.pf.name))
	case !pl.Expires.After(time.Now()):
		l.pf.removePending()
		return client.Tokens{}, fmt.Errorf("the code sent to %s expired at %s: run gonets login --phone %s --send-code%s for a new one",
			pl.Phone, pl.Expires.Local().Format(time.TimeOnly), phone, profileFlag(l.pf.name))
	}
	l.cf.applyConn(pl.nodeConn)
	l.phone = pl.Phone
	lc := client.LoginCode{Attempt: pl.Attempt, Phone: pl.Phone, CodeLength: pl.CodeLength, Tries: pl.Tries, Expires: time.Until(pl.Expires)}
	return l.verify(ctx, lc, dev, &fixedCode{value: code})
}

// verify tries codes from src for the attempt lc until one is right, the
// tries run out, or src has none. The pending attempt is forgotten once
// it is used or dead.
func (l *loginRun) verify(ctx context.Context, lc client.LoginCode, dev client.DeviceName, src codeSource) (client.Tokens, error) {
	o, err := l.options()
	if err != nil {
		return client.Tokens{}, err
	}
	for {
		code, err := src.code(ctx, lc)
		if err != nil {
			return client.Tokens{}, err
		}
		vctx, cancel := context.WithTimeout(ctx, l.timeout)
		t, err := client.VerifyLogin(vctx, l.cf.server, lc.Attempt, code, dev, o)
		err = l.cf.dialError(vctx, o, err)
		cancel()
		var e *client.Error
		wrong := errors.As(err, &e) && e.Code == wire.ErrorCode_ERROR_CODE_WRONG_CODE && e.TriesLeft > 0
		if wrong && src.again() {
			fmt.Fprintf(l.stderr, "gonets login: wrong code: %d %s left\n", e.TriesLeft, plural(e.TriesLeft, "try", "tries"))
			continue
		}
		if !wrong && !errors.Is(err, client.ErrTooManyDevices) {
			l.pf.removePending()
		}
		if err != nil {
			return client.Tokens{}, loginError(err)
		}
		return t, nil
	}
}

// plural returns one or many after n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// loginError adds to a refused login what it means and what to do.
func loginError(err error) error {
	if errors.Is(err, client.ErrConnLost) {
		return fmt.Errorf("%w: the answer was lost, and the code may be spent; run gonets login again", err)
	}
	var e *client.Error
	if !errors.As(err, &e) {
		return err
	}
	var hint string
	switch e.Code {
	case wire.ErrorCode_ERROR_CODE_ACCOUNTS_OFF:
		hint = "this node has no phone login: its operator mints session tokens with gonets token"
	case wire.ErrorCode_ERROR_CODE_BAD_PHONE:
		hint = "give the number in international form: +, the country code, the number"
	case wire.ErrorCode_ERROR_CODE_NOT_MOBILE, wire.ErrorCode_ERROR_CODE_NUMBER_NOT_ALLOWED, wire.ErrorCode_ERROR_CODE_VIRTUAL_NUMBER:
		hint = "this node does not sign up this number"
	case wire.ErrorCode_ERROR_CODE_WRONG_CODE:
		hint = fmt.Sprintf("%d %s left: run gonets login again and give the code", e.TriesLeft, plural(e.TriesLeft, "try", "tries"))
		if e.TriesLeft == 0 {
			hint = "no tries left: run gonets login again for a new code"
		}
	case wire.ErrorCode_ERROR_CODE_CODE_EXPIRED, wire.ErrorCode_ERROR_CODE_TOO_MANY_TRIES:
		hint = "this code is dead: run gonets login again for a new one"
	case wire.ErrorCode_ERROR_CODE_TOO_MANY_DEVICES:
		hint = "the account has all the devices it may: end one first (gonets devices, then gonets devices end ID, from a device logged in)"
	case wire.ErrorCode_ERROR_CODE_RATE_LIMITED:
		hint = "too many logins"
		if e.Limit != "" {
			hint += " for this " + e.Limit
		}
	case wire.ErrorCode_ERROR_CODE_SMS_UNAVAILABLE:
		hint = "the node could not send the SMS now"
	}
	if e.RetryAfter > 0 {
		if hint != "" {
			hint += "; "
		}
		hint += fmt.Sprintf("retry after %v", e.RetryAfter.Round(time.Second))
	}
	if hint == "" {
		return err
	}
	return fmt.Errorf("%w (%s)", err, hint)
}

// codeSource supplies the codes a login tries.
type codeSource interface {
	// code returns the next code to try for lc.
	code(ctx context.Context, lc client.LoginCode) (string, error)
	// again reports whether a wrong code is worth asking again for.
	again() bool
}

// fixedCode is --code: one code.
type fixedCode struct{ value string }

func (f *fixedCode) code(context.Context, client.LoginCode) (string, error) {
	return strings.TrimSpace(f.value), nil
}
func (f *fixedCode) again() bool { return false }

// promptCode asks for the code on out and reads it from in, a line at a
// time.
type promptCode struct {
	in      *bufio.Reader
	out     io.Writer
	profile string // the --profile flag, for the hint
}

func (p *promptCode) code(_ context.Context, lc client.LoginCode) (string, error) {
	for {
		fmt.Fprintf(p.out, "Code sent to %s: ", lc.Phone)
		line, err := p.in.ReadString('\n')
		code := strings.Join(strings.Fields(line), "")
		if code != "" {
			return code, nil
		}
		if err != nil {
			fmt.Fprintln(p.out)
			return "", fmt.Errorf("no code: the input ended (%v); give it with gonets login --phone %s --code CODE%s", err, lc.Phone, p.profile)
		}
	}
}

func (p *promptCode) again() bool { return true }

// outboxWatch waits for the code in a development SMS outbox: the
// lines appended after it was made, to the login's number.
type outboxWatch struct {
	path string
	skip int // lines there before the login started
}

// newOutboxWatch notes the lines already in the outbox at path.
func newOutboxWatch(path string) (*outboxWatch, error) {
	lines, err := identity.ReadOutbox(path)
	if err != nil {
		return nil, fmt.Errorf("--outbox: %w", err)
	}
	return &outboxWatch{path: path, skip: len(lines)}, nil
}

func (o *outboxWatch) code(ctx context.Context, lc client.LoginCode) (string, error) {
	re := regexp.MustCompile(fmt.Sprintf(`\b[0-9]{%d}\b`, lc.CodeLength))
	ctx, cancel := context.WithTimeout(ctx, outboxWait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		lines, err := identity.ReadOutbox(o.path)
		if err != nil {
			return "", fmt.Errorf("--outbox: %w", err)
		}
		for i := len(lines) - 1; i >= o.skip; i-- {
			if samePhone(lines[i].To, lc.Phone) {
				if c := re.FindString(lines[i].Text); c != "" {
					o.skip = len(lines)
					return c, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no code for %s appeared in %s within %v: is it the outbox of the node at --server (its <data>/sms-outbox.jsonl, with the file SMS adapter)?", lc.Phone, o.path, outboxWait)
		case <-tick.C:
		}
	}
}

func (o *outboxWatch) again() bool { return false }

// samePhone reports whether a and b are the same number, whatever their
// spaces, dashes and brackets.
func samePhone(a, b string) bool {
	digits := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, s)
	}
	return digits(a) == digits(b)
}
