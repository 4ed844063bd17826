package tools

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// flagSet is a subcommand's flags with its synopsis. It prints nothing
// itself: --help (or -h) prints the synopsis, the flags and the notes to
// stdout and the command exits 0; a usage error says on stderr what was
// wrong, with the synopsis, and the command exits 2.
type flagSet struct {
	*flag.FlagSet
	synopsis string // "usage: gonets send [flags] --chat C TEXT"
	notes    string // printed by --help after the flags; optional
	stdout   io.Writer
	stderr   io.Writer
}

// newFlagSet returns the flag set of the subcommand name ("send",
// "chat create").
func newFlagSet(name, synopsis string, stdout, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), synopsis: synopsis, stdout: stdout, stderr: stderr}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses args. When ok is false the command is over and returns
// code: 0 after --help, 2 after a bad flag (reported).
func (fs *flagSet) parse(args []string) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		fs.help(fs.stdout)
		return 0, false
	}
	return fs.usage("%v", err), false
}

// help prints the synopsis, the flags and the notes to w.
func (fs *flagSet) help(w io.Writer) {
	fmt.Fprintln(w, fs.synopsis)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if fs.notes != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(fs.notes))
	}
}

// usage reports a usage error on stderr: what was wrong, the synopsis and
// where the flags are described. It returns the exit code, 2.
func (fs *flagSet) usage(format string, args ...any) int {
	fmt.Fprintf(fs.stderr, "gonets %s: %s\n%s\nRun 'gonets %s --help' for the flags.\n",
		fs.Name(), fmt.Sprintf(format, args...), fs.synopsis, fs.Name())
	return 2
}

// isSet reports whether the flag name was given on the command line.
func (fs *flagSet) isSet(name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// noArgs returns a usage error naming the first argument left after the
// flags, or "" if there is none.
func (fs *flagSet) noArgs() string {
	if fs.NArg() == 0 {
		return ""
	}
	return fmt.Sprintf("unexpected argument %q: this command takes only flags", fs.Arg(0))
}

// flagAfterArgs returns the first of the arguments left after parsing
// args that names one of the command's flags: Go's flag parsing stops at
// the first argument that is not a flag, so "send --chat 1 hello --token
// T" leaves "--token" in the text. It returns "" when there is none, or
// when "--" ended the flags deliberately.
func (fs *flagSet) flagAfterArgs(args []string) string {
	rest := fs.Args()
	if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
		return ""
	}
	for _, a := range rest {
		name, ok := strings.CutPrefix(a, "-")
		if !ok || name == "" || name == "-" {
			continue
		}
		name = strings.TrimPrefix(name, "-")
		name, _, _ = strings.Cut(name, "=")
		if fs.Lookup(name) != nil || name == "h" || name == "help" {
			return a
		}
	}
	return ""
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help"
}
