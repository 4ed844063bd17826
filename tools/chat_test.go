package tools

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// createChat runs gonets chat create and returns the printed chat id.
func createChat(t *testing.T, n *brokertest.Node, tok string, args ...string) uint64 {
	t.Helper()
	code, out, errOut := run(append(append([]string{"chat", "create"}, clientArgs(n, tok)...), args...)...)
	if code != 0 {
		t.Fatalf("chat create: exit %d: %s", code, errOut)
	}
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Fatalf("chat create printed %q, want one line", out)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if err != nil || id == 0 {
		t.Fatalf("chat create printed %q, want a chat id", out)
	}
	return id
}

func TestChatCreate(t *testing.T) {
	checkClientLeaks(t)
	n := brokertest.Start(t, brokertest.Options{})
	tok := n.Token(t, 1, 1)
	direct := createChat(t, n, tok, "--kind", "direct", "--member", "2")
	if again := createChat(t, n, tok, "--kind", "direct", "--member", "2"); again != direct {
		t.Fatalf("the same direct chat twice: %d, then %d", direct, again)
	}
	group := createChat(t, n, tok, "--kind", "group", "--title", "team", "--member", "2", "--member", "3")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, n.Addr, n.Token(t, 3, 1), client.Options{Fingerprint: n.Fingerprint, SendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := c.Sync(ctx, 0, nil, 0)
	if err != nil || len(p.Dialogs) != 1 || p.Dialogs[0].Chat != group || p.Dialogs[0].Kind != wire.ChatKind_CHAT_KIND_GROUP {
		t.Fatalf("user 3's dialogs: %+v, %v; want group %d", p.Dialogs, err, group)
	}
}
