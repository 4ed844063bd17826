package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker/client"
)

// sessionsPerSocket is how many client sessions share one UDP socket.
const sessionsPerSocket = 1000

// dialers is how many sessions are dialled at once.
const dialers = 64

// fleet is the load generator's sessions: one SDK client per user,
// sharing UDP sockets (which count their datagrams), each reporting its
// events to onEvent.
type fleet struct {
	t *target
	// Over QUIC the sessions share counting UDP sockets; over TCP each
	// has its connection, dialled and counted by tcp.
	sockets    []*socket
	transports []*quic.Transport // transports[i] is on sockets[i]
	tcp        *tcpCounter
	clients    []*client.Client // clients[i] is user users[i]
	users      []uint64
	online     atomic.Int64
}

// dialFleet connects one client per user (device 1), at most dialers at a
// time. onEvent gets the index of the user's client and the event; nil
// makes the clients send-only. Clients start from now: they deliver only
// what is appended after they connect.
func dialFleet(ctx context.Context, t *target, users []uint64, onEvent func(i int, ev client.Event)) (*fleet, error) {
	f := &fleet{t: t, users: users, clients: make([]*client.Client, len(users))}
	if t.via == client.TransportTCP {
		f.tcp = newTCPCounter()
	} else if err := f.addSockets((len(users) + sessionsPerSocket - 1) / sessionsPerSocket); err != nil {
		f.close()
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := atomic.Int64{}
	for range min(dialers, len(users)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(users) {
					return
				}
				opts := f.options(i)
				opts.FromNow = true
				opts.Logger = quiet
				opts.Name = "gonets-bench"
				if onEvent != nil {
					opts.OnEvent = func(ev client.Event) { onEvent(i, ev) }
				} else {
					opts.SendOnly = true
				}
				var c *client.Client
				err := retry(ctx, func() (err error) {
					c, err = client.Dial(ctx, t.addr, t.token(users[i], 1), opts)
					return err
				})
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("bench: dial user %d: %w", users[i], err))
					mu.Unlock()
					return
				}
				f.clients[i] = c
				f.online.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		f.close()
		return nil, firstErr
	}
	return f, nil
}

// dialAttempts is how often a session is dialled before the bench gives
// up: a node that accepts handshakes slower than they come refuses some
// (quic-go queues 32), and real clients retry too.
const dialAttempts = 8

// retry calls dial until it succeeds, backing off, at most dialAttempts
// times.
func retry(ctx context.Context, dial func() error) error {
	var err error
	for n := range dialAttempts {
		if err = dial(); err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(time.Duration(n+1) * 50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// addSockets adds n counting UDP sockets, each with a QUIC transport.
func (f *fleet) addSockets(n int) error {
	for range n {
		s, err := listenSocket()
		if err != nil {
			return err
		}
		f.sockets = append(f.sockets, s)
		f.transports = append(f.transports, s.transport())
	}
	return nil
}

// options returns the options of the fleet's session i: the bench's
// transport only (no fallback race, whose second handshakes would add to
// the node's cost), through a counting socket or dialler.
func (f *fleet) options(i int) client.Options {
	o := client.Options{TLS: f.t.tls, Via: f.t.via}
	if f.tcp != nil {
		o.TCPAddr = f.t.tcpAddr
		o.DialTCP = f.tcp.dial
	} else {
		o.Transport = f.transports[min(i/sessionsPerSocket, len(f.transports)-1)]
	}
	return o
}

// datagrams returns the packets the fleet's sockets or connections
// counted so far (UDP datagrams, or TCP segments), and the sessions
// online.
func (f *fleet) datagrams() datagrams {
	var d datagrams
	if f.tcp != nil {
		d.Sent, d.Received = f.tcp.counts()
	} else {
		d = countSockets(f.sockets)
	}
	d.Sessions = int(f.online.Load())
	return d
}

// close closes every client, then the transports and their sockets.
func (f *fleet) close() {
	var wg sync.WaitGroup
	for _, c := range f.clients {
		if c != nil {
			wg.Go(func() { c.Close() })
		}
	}
	wg.Wait()
	for _, tr := range f.transports {
		tr.Close()
	}
	for _, s := range f.sockets {
		s.Close()
	}
}

// sendLoop sends one message every period from c into chat, from
// start+phase until end, open loop: each message's time is fixed by the
// schedule, not by when the last ack came, and a late message is sent at
// once (catching up) with its scheduled time in its body, so a stall of
// the node shows in full in the latencies. Each ack is recorded, on
// shard, as owing owed deliveries.
func sendLoop(ctx context.Context, c *client.Client, rec *recorder, shard int, chat uint64, period, phase time.Duration, start, end time.Time, size, owed int) {
	for next := start.Add(phase); next.Before(end); next = next.Add(period) {
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		}
		rec.scheduled(next)
		body := make([]byte, max(size, stampBytes)) // the client keeps its own sends
		stamp(body, next)
		if _, err := c.Send(ctx, chat, body); err != nil {
			if ctx.Err() != nil {
				return
			}
			continue // counted as offered, not sent
		}
		rec.acked(shard, next, time.Now(), owed)
	}
}

// createChats runs create for each of n chats, dialers at a time, and
// returns their ids.
func createChats(ctx context.Context, n int, create func(ctx context.Context, k int) (uint64, error)) ([]uint64, error) {
	ids := make([]uint64, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := atomic.Int64{}
	for range min(dialers, n) {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= n {
					return
				}
				id, err := create(ctx, k)
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					return
				}
				ids[k] = id
			}
		})
	}
	wg.Wait()
	return ids, firstErr
}
