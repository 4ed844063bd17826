package tools

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/brokertest"
)

// send runs gonets send and returns the decoded ack line.
func send(t *testing.T, n *brokertest.Node, tok string, chat uint64, text ...string) ackLine {
	t.Helper()
	args := append(append([]string{"send"}, clientArgs(n, tok)...), "--chat", jsonNumber(chat))
	code, out, errOut := run(append(args, text...)...)
	if code != 0 {
		t.Fatalf("send: exit %d: %s", code, errOut)
	}
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("send printed %q, want one line", out)
	}
	var a ackLine
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("send printed %q: %v", out, err)
	}
	return a
}

func jsonNumber(u uint64) string {
	b, _ := json.Marshal(u)
	return string(b)
}

func TestSend(t *testing.T) {
	checkClientLeaks(t)
	n := brokertest.Start(t, brokertest.Options{})
	tok := n.Token(t, 1, 1)
	chat := createChat(t, n, tok, "--kind", "direct", "--member", "2")
	before := time.Now()
	a := send(t, n, tok, chat, "hello", "world")
	if a.Chat != chat || a.Seq != 1 || a.Duplicate {
		t.Fatalf("ack %+v", a)
	}
	at, err := time.Parse(time.RFC3339Nano, a.Time)
	if err != nil || at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("ack time %q: %v", a.Time, err)
	}
	if b := send(t, n, tok, chat, "again"); b.Seq != 2 {
		t.Fatalf("second ack %+v", b)
	}
	// The exact shape of the line is a contract.
	code, out, _ := run(append(append([]string{"send"}, clientArgs(n, tok)...), "--chat", jsonNumber(chat), "x")...)
	if code != 0 || !strings.HasPrefix(out, `{"chat":`+jsonNumber(chat)+`,"seq":3,"time":"`) || !strings.HasSuffix(out, `","duplicate":false}`+"\n") {
		t.Fatalf("send printed %q", out)
	}
}
