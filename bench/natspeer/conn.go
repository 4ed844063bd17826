package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxAckPending caps the asynchronous JetStream publishes awaiting their
// ack on one connection; a sender past it stalls (up to stallWait) until
// acks come back, so a slow store shows as latency, not as loss.
const (
	maxAckPending = 1 << 16
	stallWait     = 5 * time.Second
)

// dialer opens client connections to the node.
type dialer struct {
	url string
	tls *tls.Config // nil: plain TCP
	// disconnects counts connections the server or the network dropped.
	disconnects atomic.Int64
}

// connect opens one connection. It never reconnects: a dropped connection
// loses what it was owed, and that shows in the delivered ratio.
func (d *dialer) connect(name string) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.NoReconnect(),
		nats.Timeout(30 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				d.disconnects.Add(1)
			}
		}),
	}
	if d.tls != nil {
		opts = append(opts, nats.Secure(d.tls))
	}
	nc, err := nats.Connect(d.url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", d.url, err)
	}
	return nc, nil
}

// stream creates a file-backed stream capturing subjects. Durability comes
// from the server's sync_interval: always (SyncAlways), which fsyncs every
// write before the ack.
func createStream(ctx context.Context, js jetstream.JetStream, name string, subjects ...string) error {
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      name,
		Subjects:  subjects,
		Storage:   jetstream.FileStorage,
		Replicas:  1,
		Retention: jetstream.LimitsPolicy,
		Discard:   jetstream.DiscardOld,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", name, err)
	}
	return nil
}
