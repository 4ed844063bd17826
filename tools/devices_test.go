package tools

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
)

// deviceRows runs gonets devices with args and returns its table's rows
// (the header left out), each split into its columns.
func deviceRows(t *testing.T, args ...string) [][]string {
	t.Helper()
	code, out, errOut := run(append([]string{"devices"}, args...)...)
	if code != 0 {
		t.Fatalf("devices %q: exit %d: %s", args, code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) == 0 || !strings.Contains(lines[0], "ID") || !strings.Contains(lines[0], "LAST ADDRESS") {
		t.Fatalf("devices printed %q", out)
	}
	var rows [][]string
	for _, l := range lines[1:] {
		rows = append(rows, strings.Fields(l))
	}
	return rows
}

func TestDevices(t *testing.T) {
	checkClientLeaks(t)
	testProfiles(t)
	n := accountsNode(t, brokertest.Options{})
	const phone = "+79000000041"
	laptop := loginAs(t, n, phone, "laptop", "--name", "laptop")
	phoneDev := loginAs(t, n, phone, "phone", "--name", "phone")
	tablet := loginAs(t, n, phone, "tablet", "--name", "tablet")

	// The list, as the laptop sees it: its own row marked.
	rows := deviceRows(t, "--profile", "laptop")
	if len(rows) != 3 {
		t.Fatalf("devices: %q", rows)
	}
	ids := map[string]bool{}
	for _, r := range rows {
		cur := r[0] == "*"
		if cur {
			r = r[1:]
		}
		if cur != (r[0] == strconv.FormatUint(laptop.Device, 10)) {
			t.Fatalf("row %q: current %v, want only device %d's", r, cur, laptop.Device)
		}
		if r[2] != "cli" || r[len(r)-1] != "no" && r[len(r)-1] != "yes" || !strings.HasPrefix(r[len(r)-2], "127.0.0.1") {
			t.Fatalf("row %q", r)
		}
		ids[r[0]] = true
	}
	if !ids[strconv.FormatUint(phoneDev.Device, 10)] || !ids[strconv.FormatUint(tablet.Device, 10)] {
		t.Fatalf("rows %q lack a device", rows)
	}

	// Ending another device: its login stops working.
	code, out, errOut := run("devices", "end", "--profile", "laptop", strconv.FormatUint(tablet.Device, 10))
	if code != 0 || !strings.Contains(errOut, "ended device "+strconv.FormatUint(tablet.Device, 10)) || strings.Count(out, "\n") != 3 {
		t.Fatalf("devices end: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, errOut := run("devices", "--profile", "tablet"); code != 1 || !strings.Contains(errOut, "log in again: gonets login --phone "+phone+" --profile tablet") {
		t.Fatalf("devices with an ended device's profile: exit %d: %s", code, errOut)
	}
	if code, _, errOut := run("devices", "end", "--profile", "laptop", "999"); code != 1 || !strings.Contains(errOut, "UNKNOWN_DEVICE") {
		t.Fatalf("devices end 999: exit %d: %s", code, errOut)
	}

	// Ending the others leaves this one.
	code, out, errOut = run("devices", "end", "--others", "--profile", "phone")
	if code != 0 || !strings.Contains(errOut, "ended every other device") {
		t.Fatalf("devices end --others: exit %d: %s", code, errOut)
	}
	if rows := deviceRows(t, "--profile", "phone"); len(rows) != 1 || rows[0][0] != "*" || rows[0][1] != strconv.FormatUint(phoneDev.Device, 10) {
		t.Fatalf("after end --others: %q", rows)
	}

	// Ending one's own device logs the profile out.
	code, _, errOut = run("devices", "end", "--profile", "phone", strconv.FormatUint(phoneDev.Device, 10))
	if pf, _ := openProfile("phone"); code != 0 || pf.exists() || !strings.Contains(errOut, "removed profile phone") {
		t.Fatalf("devices end (own): exit %d, profile left %v: %s", code, pf.exists(), errOut)
	}

	f := func(wantCode int, want string, args ...string) {
		t.Helper()
		code, _, errOut := run(append([]string{"devices"}, args...)...)
		if code != wantCode || !strings.Contains(errOut, want) {
			t.Fatalf("gonets devices %q: exit %d, stderr %q; want %d and %q", args, code, errOut, wantCode, want)
		}
	}
	f(2, "give one device id", "end")
	f(2, "--others and a device id are exclusive", "end", "--others", "3")
	f(2, `device id "x" is not a positive integer`, "end", "x")
	f(2, `unexpected argument "x"`, "x")
	f(2, "flag provided but not defined: -others", "--others")
	if code, out, _ := run("devices", "end", "--help"); code != 0 || !strings.Contains(out, endUsage) || !strings.Contains(out, "-profile") {
		t.Fatalf("devices end --help: exit %d: %s", code, out)
	}
}

func TestLogout(t *testing.T) {
	checkClientLeaks(t)
	testProfiles(t)
	n := accountsNode(t, brokertest.Options{})
	const phone = "+79000000051"
	first := loginAs(t, n, phone, defaultProfile)
	second := loginAs(t, n, phone, "other")
	code, _, errOut := run("logout")
	if pf, _ := openProfile(defaultProfile); code != 0 || pf.exists() || !strings.Contains(errOut, "logged out") {
		t.Fatalf("logout: exit %d, profile left %v: %s", code, pf.exists(), errOut)
	}
	// The device is gone from the account.
	rows := deviceRows(t, "--profile", "other")
	if len(rows) != 1 || rows[0][1] != strconv.FormatUint(second.Device, 10) {
		t.Fatalf("devices after logging %d out: %q", first.Device, rows)
	}
	if code, _, errOut := run("logout"); code != 1 || !strings.Contains(errOut, `no saved login "default"`) {
		t.Fatalf("logout twice: exit %d: %s", code, errOut)
	}
	// A login the node ended already is still removed.
	if code, _, _ := run("devices", "end", "--profile", "other", "--others"); code != 0 {
		t.Fatal("devices end --others")
	}
	third := loginAs(t, n, phone, "third")
	if code, _, _ := run("devices", "end", "--profile", "third", strconv.FormatUint(second.Device, 10)); code != 0 {
		t.Fatal("devices end")
	}
	code, _, errOut = run("logout", "--profile", "other")
	if pf, _ := openProfile("other"); code != 0 || pf.exists() || !strings.Contains(errOut, "had ended this login already") {
		t.Fatalf("logout of an ended device: exit %d: %s", code, errOut)
	}
	_ = third
	// An unreachable node keeps the profile.
	pf, _ := openProfile("third")
	p, _ := pf.load()
	p.Server, p.TCPServer = "127.0.0.1:1", "127.0.0.1:1"
	if err := pf.save(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run("logout", "--profile", "third", "--transport", "tcp"); code != 1 || !pf.exists() || !strings.Contains(errOut, "the profile is kept") {
		t.Fatalf("logout with no node: exit %d: %s", code, errOut)
	}
}

func TestPrintDevices(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)
	var b bytes.Buffer
	err := printDevices(&b, []client.Device{
		{ID: 1, Name: "old phone", Platform: "android", Created: now.AddDate(0, -1, 0), LastSeen: now.Add(-time.Hour), LastAddress: "203.0.113.7"},
		{ID: 2, Name: "laptop", Platform: "cli", Created: now, LastSeen: now, LastAddress: "127.0.0.1", Online: true, Current: true},
		{ID: 3},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := `   ID  NAME         PLATFORM  CREATED           LAST SEEN  LAST ADDRESS  ONLINE
   1   "old phone"  android   2026-02-01 12:00  11:00:00   203.0.113.7   no
*  2   "laptop"     cli       12:00:00          12:00:00   127.0.0.1     yes
   3   ""           -         -                 -          -             no
`
	if b.String() != want {
		t.Fatalf("printDevices:\n%s\nwant:\n%s", b.String(), want)
	}
}
