package tools

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/signing/signsim"
)

// TestSignSendApprove: Bob sends Alice (linked) a document with gonets
// sign send, Alice approves it, and the signing service's signature of
// the document comes back in the chat.
func TestSignSendApprove(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	testProfiles(t)
	n := startStateNode(t)
	defer n.stop()
	alice := n.login(t, "+79000000001", "alice")
	n.login(t, "+79000000002", "bob")
	doc := filepath.Join(t.TempDir(), "lease.txt")
	body := []byte("Договор аренды № 7")
	if err := os.WriteFile(doc, body, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("chat", "create", "--profile", "bob", "--kind", "direct", "--member", strconv.FormatUint(alice.User, 10))
	if code != 0 {
		t.Fatalf("chat create: exit %d: %s", code, errOut)
	}
	chat := strings.TrimSpace(out)
	send := []string{"sign", "send", "--profile", "bob", "--chat", chat, "--to", strconv.FormatUint(alice.User, 10), "--title", "Договор", "--file", doc}

	// Alice has linked no state account yet.
	if code, _, errOut := run(send...); code != 1 || !strings.Contains(errOut, "NOT_LINKED") || !strings.Contains(errOut, "gonets link esia") {
		t.Fatalf("sign send to an unlinked signer: exit %d: %s", code, errOut)
	}
	n.link(t, "alice")
	code, out, errOut = run(send...)
	id := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(id, chat+".") {
		t.Fatalf("sign send: exit %d: %q %s", code, out, errOut)
	}

	// Only the signer decides.
	if code, _, errOut := run("sign", "approve", "--profile", "bob", id); code != 1 || !strings.Contains(errOut, "UNKNOWN_REQUEST") {
		t.Fatalf("sign approve by the sender: exit %d: %s", code, errOut)
	}
	if code, _, errOut := run("sign", "approve", "--profile", "alice", id); code != 0 || !strings.Contains(errOut, "approved") {
		t.Fatalf("sign approve: exit %d: %s", code, errOut)
	}
	if code, _, errOut := run("sign", "decline", "--profile", "alice", id); code != 1 || !strings.Contains(errOut, "REQUEST_ENDED") {
		t.Fatalf("sign decline after approve: exit %d: %s", code, errOut)
	}

	// The result, read through the SDK as Bob.
	pf, err := openProfile("bob")
	if err != nil {
		t.Fatal(err)
	}
	p, err := pf.load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, n.addr, p.Access, client.Options{Fingerprint: n.fingerprint, NoReconnect: true, SendOnly: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	chatID, _ := strconv.ParseUint(chat, 10, 64)
	var res *wire.SignResult
	waitUntil(t, "the signing result in the chat", func() bool {
		res = signResult(t, ctx, c, chatID)
		return res != nil
	})
	if res.State != "signed" || res.Id != id {
		t.Fatalf("signing result %v", res)
	}
	if err := signsim.VerifySignature(body, res.Signature, n.signSim.Certificate()); err != nil {
		t.Fatalf("the signature: %v", err)
	}
}

func TestSignUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sign"}, "send, approve or decline"},
		{[]string{"sign", "send", "--chat", "1", "--to", "2", "--title", "T"}, "--title and --file are required"},
		{[]string{"sign", "approve", "7"}, `"7" is not a signing request id`},
		{[]string{"sign", "decline", "1.2.3"}, "is not a signing request id"},
		{[]string{"sign", "approve"}, "give one signing request id"},
	} {
		if code, _, errOut := run(c.args...); code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("gonets %q: exit %d: %s; want 2 and %q", c.args, code, errOut, c.want)
		}
	}
	if code, _, errOut := run("sign", "send", "--chat", "1", "--to", "2", "--title", "T", "--file", filepath.Join(t.TempDir(), "none")); code != 1 || !strings.Contains(errOut, "--file") {
		t.Errorf("sign send with a missing file: exit %d: %s", code, errOut)
	}
}
