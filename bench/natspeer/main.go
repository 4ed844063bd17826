package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "natspeer:", err)
		}
		os.Exit(1)
	}
}

const usageText = `usage:
  natspeer run --scenario chat|group|channel|connect|sync|storage --target nats-core|nats-jetstream [flags] [--json]
  natspeer server [--js --store DIR] [--port P] [--cpus LIST] [--tls-cert F --tls-key F]
Run "natspeer run -h" for the scenario flags.
`

// run dispatches a subcommand.
func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return errors.New("no subcommand")
	}
	switch args[0] {
	case "server":
		return serverCommand(args[1:], stdout)
	case "run":
		return runCommand(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText)
		return nil
	}
	fmt.Fprint(stderr, usageText)
	return fmt.Errorf("unknown subcommand %q", args[0])
}

// runCommand runs one scenario and prints its result: one JSON document
// with --json, a short table otherwise.
func runCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts Options
	opts.flags(fs)
	asJSON := fs.Bool("json", false, "print one JSON result document")
	cpuProfile := fs.String("cpuprofile", "", "write the load generator's CPU profile to `file`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("run: unexpected arguments %q", fs.Args())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := runScenario(ctx, opts)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(res)
	}
	return printTable(stdout, res)
}
