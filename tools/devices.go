package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/gonets/gonets/broker/client"
)

const (
	devicesUsage = "usage: gonets devices [list] [flags] | gonets devices end [flags] ID | gonets devices end [flags] --others"
	endUsage     = "usage: gonets devices end [flags] ID | gonets devices end [flags] --others"
	logoutUsage  = "usage: gonets logout [--profile NAME] [flags]"
)

// runDevices lists the devices of the login's user, or ends some:
//
//	gonets devices [list] [--profile NAME]
//	gonets devices end [--profile NAME] ID
//	gonets devices end [--profile NAME] --others
func runDevices(args []string, stdout, stderr io.Writer) int {
	sub := "list"
	if len(args) > 0 && (args[0] == "list" || args[0] == "end") {
		sub, args = args[0], args[1:]
	}
	name, synopsis := "devices", devicesUsage
	if sub == "end" {
		name, synopsis = "devices end", endUsage
	}
	fs := newFlagSet(name, synopsis, stdout, stderr)
	cf := addClientFlags(fs)
	others := false
	if sub == "end" {
		fs.BoolVar(&others, "others", false, "end every device of the user but this one")
	}
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the node")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	var id uint64
	switch {
	case *timeout <= 0:
		return fs.usage("--timeout %v must be positive", *timeout)
	case sub == "list" && fs.NArg() != 0:
		return fs.usage("unexpected argument %q: the subcommands are list and end", fs.Arg(0))
	case sub == "end" && others && fs.NArg() != 0:
		return fs.usage("--others and a device id are exclusive")
	case sub == "end" && !others && fs.NArg() != 1:
		return fs.usage("give one device id (gonets devices lists them), or --others")
	case sub == "end" && !others:
		var err error
		if id, err = strconv.ParseUint(fs.Arg(0), 10, 64); err != nil || id == 0 {
			return fs.usage("device id %q is not a positive integer", fs.Arg(0))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	stderr = &syncWriter{w: stderr}
	cmd := "gonets " + name
	c, err := cf.dial(ctx, client.Options{SendOnly: true, NoReconnect: true, Logger: cliLogger(stderr)})
	if err != nil {
		return cliFail(stderr, name, err)
	}
	defer c.Close()
	var ds []client.Device
	switch {
	case sub == "list":
		ds, err = c.Devices(ctx)
	case others:
		ds, err = c.EndOtherDevices(ctx)
	default:
		ds, err = c.EndDevice(ctx, id)
	}
	if err != nil {
		if errors.Is(err, client.ErrUnknownDevice) {
			err = fmt.Errorf("%w (gonets devices lists the user's devices)", err)
		}
		return cliFail(stderr, name, err)
	}
	switch {
	case sub == "end" && id == c.Device():
		fmt.Fprintf(stderr, "%s: ended device %d, this login's own\n", cmd, id)
		if cf.pf != nil {
			if err := cf.pf.remove(ctx); err != nil {
				return cliFail(stderr, name, err)
			}
			fmt.Fprintf(stderr, "%s: removed profile %s: log in again with gonets login\n", cmd, cf.pf.name)
		}
		return 0
	case sub == "end" && others:
		fmt.Fprintf(stderr, "%s: ended every other device\n", cmd)
	case sub == "end":
		fmt.Fprintf(stderr, "%s: ended device %d\n", cmd, id)
	}
	if err := printDevices(stdout, ds, time.Now()); err != nil {
		return cliFail(stderr, name, err)
	}
	return 0
}

// printDevices writes ds as a table, the current device marked with *.
func printDevices(w io.Writer, ds []client.Device, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "\tID\tNAME\tPLATFORM\tCREATED\tLAST SEEN\tLAST ADDRESS\tONLINE")
	for _, d := range ds {
		cur, online := "", "no"
		if d.Current {
			cur = "*"
		}
		if d.Online {
			online = "yes"
		}
		fmt.Fprintf(tw, "%s\t%d\t%q\t%s\t%s\t%s\t%s\t%s\n", cur, d.ID, d.Name, orDash(d.Platform),
			when(d.Created, now), when(d.LastSeen, now), orDash(d.LastAddress), online)
	}
	return tw.Flush()
}

// when formats t in local time, without the date when it is today's.
func when(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	t, now = t.Local(), now.Local()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04")
}

// orDash returns s, or "-" for an empty s.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runLogout ends the device of a saved login and deletes it:
//
//	gonets logout [--profile NAME]
func runLogout(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("logout", logoutUsage, stdout, stderr)
	cf := addConnFlags(fs)
	fs.StringVar(&cf.profile, "profile", defaultProfile, "the saved login to end, by `name`")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the node")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	switch {
	case fs.NArg() != 0:
		return fs.usage("%s", fs.noArgs())
	case *timeout <= 0:
		return fs.usage("--timeout %v must be positive", *timeout)
	}
	pf, err := openProfile(cf.profile)
	if err == nil && !pf.exists() {
		_, err = pf.load() // says there is none
	}
	if err != nil {
		return cliFail(stderr, "logout", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	stderr = &syncWriter{w: stderr}
	err = endOwnDevice(ctx, cf, pf, stderr)
	switch {
	case isDeadLogin(err):
		fmt.Fprintf(stderr, "gonets logout: the node had ended this login already (%v)\n", err)
	case err != nil:
		return cliFail(stderr, "logout", fmt.Errorf("%w; the profile is kept: retry, or delete %s to forget the login without ending its device", err, pf.path))
	}
	if err := pf.remove(ctx); err != nil {
		return cliFail(stderr, "logout", err)
	}
	fmt.Fprintf(stderr, "gonets logout: logged out; removed profile %s (%s)\n", pf.name, pf.path)
	return 0
}

// endOwnDevice ends the device of the login in pf. A login the node has
// ended already returns an error that isDeadLogin matches.
func endOwnDevice(ctx context.Context, cf *clientFlags, pf *profileFile, stderr io.Writer) error {
	if err := cf.useProfile(ctx, pf); err != nil {
		return err
	}
	o, err := cf.options(client.Options{SendOnly: true, NoReconnect: true, Logger: cliLogger(stderr), Name: cliName})
	if err != nil {
		return err
	}
	c, err := client.Dial(ctx, cf.server, cf.token, o)
	if err != nil {
		err = cf.dialError(ctx, o, err)
		if errors.Is(err, client.ErrDeviceEnded) || errors.Is(err, client.ErrUnauthenticated) {
			return fmt.Errorf("%w: %w", err, errLoginOver)
		}
		return err
	}
	defer c.Close()
	_, err = c.EndDevice(ctx, cf.prof.Device)
	if errors.Is(err, client.ErrUnknownDevice) {
		return fmt.Errorf("%w: %w", err, errLoginOver)
	}
	return err
}
