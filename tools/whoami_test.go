package tools

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/gonets/gonets/broker/brokertest"
)

// gonets whoami prints the saved login's user id, for scripts, and with
// --json its user, device, phone and server; a missing profile says to
// log in.
func TestWhoami(t *testing.T) {
	checkClientLeaks(t)
	testProfiles(t)
	n := accountsNode(t, brokertest.Options{})
	l := loginAs(t, n, "+79000000031", "bob")
	code, out, errOut := run("whoami", "--profile", "bob")
	if code != 0 || strings.TrimSpace(out) != strconv.FormatUint(l.User, 10) {
		t.Fatalf("whoami: exit %d, %q (%s), want %d", code, out, errOut, l.User)
	}
	code, out, _ = run("whoami", "--profile", "bob", "--json")
	var got struct {
		User   uint64
		Device uint64
		Phone  string
		Server string
	}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.User != l.User || got.Device != l.Device ||
		got.Phone != "+79000000031" || got.Server != n.Addr {
		t.Fatalf("whoami --json: exit %d, %q: %v", code, out, err)
	}
	if code, _, errOut := run("whoami", "--profile", "nobody"); code != 1 || !strings.Contains(errOut, "gonets login") {
		t.Fatalf("whoami without a login: exit %d: %s", code, errOut)
	}
}
