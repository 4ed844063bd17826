package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gonets/gonets/identity/esia"
	"github.com/gonets/gonets/identity/esiasim"
)

const (
	simUsage     = "usage: gonets sim esia [flags]"
	simESIAUsage = "usage: gonets sim esia [--addr 127.0.0.1:7450] [--dir DIR] [--client-id gonets] [--redirect URL ...] [--person-json FILE] [--deny]"
)

// defaultESIARedirect is the redirect URI the simulator allows when no
// --redirect is given: the node's ESIA callback on its default public
// listener.
const defaultESIARedirect = "https://127.0.0.1:7445/esia/callback"

// simESIANotes is the --help text of gonets sim esia.
const simESIANotes = `Serves a simulator of ESIA (Gosuslugi) over plain HTTP on the loopback,
for demos: the authorisation endpoint auto-approves the test person (or
refuses, with --deny), the token endpoint trades single-use codes, and
/rs/prns/{oid} returns the person's fields the granted scopes cover.

Every client_secret must be signed by the dev key in --dir (esia-dev.crt,
esia-dev.key): the command makes it on its first run and loads it after,
so a node whose ESIA signer is "dev" with the same directory signs what
the simulator accepts. Point the node's ESIA base URL at the address it
prints. It runs until SIGINT or SIGTERM.

--person-json names a file with the person in ESIA's JSON shape:
{"oid":"1000299654","firstName":"Иван","lastName":"Иванов",
 "middleName":"Иванович","birthDate":"15.03.1990",
 "snils":"123-456-789 64","trusted":true,"student":false,"pensioner":false}
Default: that person.`

// stringsFlag is a flag that may be given more than once.
type stringsFlag []string

func (s *stringsFlag) String() string { return strings.Join(*s, ",") }

func (s *stringsFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// runSim runs a simulator of an outside system: gonets sim esia.
func runSim(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprintf(stderr, "gonets sim: no system: the one simulated is esia\n%s\n", simUsage)
		return 2
	case isHelp(args[0]):
		fmt.Fprintf(stdout, "%s\nRun 'gonets sim esia --help' for the flags.\n", simUsage)
		return 0
	case args[0] == "esia":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return simESIA(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "gonets sim: unknown system %q: the one simulated is esia\n%s\n", args[0], simUsage)
	return 2
}

// simESIA serves the ESIA simulator until ctx ends. It prints one line on
// stdout when it listens: its address and where the dev key is.
func simESIA(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("sim esia", simESIAUsage, stdout, stderr)
	fs.notes = simESIANotes
	addr := fs.String("addr", "127.0.0.1:7450", "loopback `address` to listen on (port 0 picks one)")
	dir := fs.String("dir", defaultDataDir, "`dir`ectory of the dev key pair, made there when missing")
	clientID := fs.String("client-id", "gonets", "the operator's client `id` (mnemonic)")
	var redirects stringsFlag
	fs.Var(&redirects, "redirect", "an allowed redirect `URL`, matched exactly; repeat for more (default "+defaultESIARedirect+")")
	personFile := fs.String("person-json", "", "`file` with the test person in ESIA's JSON shape (default: Иванов Иван Иванович)")
	deny := fs.Bool("deny", false, "the consent page refuses: redirects with error=access_denied")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return fs.usage("%s", fs.noArgs())
	}
	if *clientID == "" {
		return fs.usage("--client-id must not be empty")
	}
	if len(redirects) == 0 {
		redirects = stringsFlag{defaultESIARedirect}
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fs.usage("--addr %q: %v", *addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fs.usage("--addr %q is not a loopback address: the simulator approves anyone who asks", *addr)
	}
	person := esiasim.DevPerson()
	if *personFile != "" {
		if person, err = readPerson(*personFile); err != nil {
			fmt.Fprintf(stderr, "gonets sim esia: %v\n", err)
			return 1
		}
	}
	dev, made, err := loadOrMakeDevKey(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "gonets sim esia: %v\n", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	sim, err := esiasim.New(esiasim.Options{
		ClientID:     *clientID,
		RedirectURIs: redirects,
		Trusted:      dev.Certificate(),
		Person:       person,
		Deny:         *deny,
		Log:          log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "gonets sim esia: %v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "gonets sim esia: %v\n", err)
		return 1
	}
	keyNote := "loaded"
	if made {
		keyNote = "made"
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		abs = *dir
	}
	fmt.Fprintf(stdout, "esia simulator on http://%s (client id %s, redirect %s); dev key %s in %s (%s, %s)\n",
		ln.Addr(), *clientID, strings.Join(redirects, " "), keyNote, abs, esia.DevCertFile, esia.DevKeyFile)

	srv := &http.Server{
		Handler:           sim,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		fmt.Fprintf(stderr, "gonets sim esia: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-served
	if err != nil {
		fmt.Fprintf(stderr, "gonets sim esia: shutdown: %v\n", err)
		return 1
	}
	log.Info("esia simulator stopped")
	return 0
}

// loadOrMakeDevKey loads the dev key pair from dir, or makes one there
// when there is none; made says which.
func loadOrMakeDevKey(dir string) (_ *esia.DevSigner, made bool, _ error) {
	cert, key, err := esia.LoadDevKey(dir)
	if err == nil {
		return esia.NewDevSigner(cert, key), false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	// Both files or neither: half a pair is not overwritten.
	for _, f := range []string{esia.DevCertFile, esia.DevKeyFile} {
		if _, serr := os.Stat(filepath.Join(dir, f)); serr == nil {
			return nil, false, fmt.Errorf("%s is there without its pair: %w", filepath.Join(dir, f), err)
		}
	}
	c, k, err := esia.GenerateDevKey("gonets ESIA dev signer")
	if err != nil {
		return nil, false, err
	}
	if err := esia.WriteDevKey(dir, c, k); err != nil {
		return nil, false, err
	}
	return esia.NewDevSigner(c, k), true, nil
}

// readPerson reads a test person from a JSON file in ESIA's shape.
func readPerson(path string) (esia.Person, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return esia.Person{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p esia.Person
	if err := dec.Decode(&p); err != nil {
		return esia.Person{}, fmt.Errorf("--person-json %s: %w", path, err)
	}
	return p, nil
}
