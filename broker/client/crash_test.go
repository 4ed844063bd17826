package client_test

import (
	"testing"
	"time"

	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// A client of a node that crashed and came back notices within 3 s, with
// the SDK's default timeouts (idle 60 s): over QUIC the restarted node
// answers the client's next packet with a stateless reset, keyed as before
// the crash; over TCP the kernel ended the connection. The client's next
// send reconnects and is acked.
func TestCrashNoticedAtOnce(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		n := brokertest.Start(t, brokertest.Options{})
		c := dial(t, n, "", 1, 1, client.Options{Via: via})
		chat, err := c.CreateChat(ctxT(t), wire.ChatKind_CHAT_KIND_DIRECT, []uint64{2}, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Send(ctxT(t), chat.Chat, []byte("before")); err != nil {
			t.Fatal(err)
		}
		n.Crash(t)
		start := time.Now()
		ack, err := c.Send(ctxT(t), chat.Chat, []byte("after the crash"))
		if took := time.Since(start); err != nil || took > 3*time.Second {
			t.Fatalf("send after the crash over %v: %v %v after %v", via, ack, err, took)
		}
		if ack.Seq != 2 {
			t.Fatalf("ack %+v, want seq 2", ack)
		}
	})
}
