package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// syncAlwaysInterval is what nats-server's config parser sets alongside
// SyncAlways for `sync_interval: always` (its defaultSyncInterval): with
// SyncAlways every write is fsynced before the ack, and the interval only
// paces the background flush of anything else.
const syncAlwaysInterval = 2 * time.Minute

// serverCommand runs nats-server in this process until SIGTERM or SIGINT:
// `natspeer server [--js --store DIR] [--port P] [--cpus LIST]
// [--tls-cert F --tls-key F]`. It prints "ready ADDR" once clients can
// connect.
func serverCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	js := fs.Bool("js", false, "enable JetStream: file storage in --store, sync_interval: always")
	store := fs.String("store", "", "JetStream store directory (required with --js)")
	port := fs.Int("port", 0, "port on 127.0.0.1; 0 picks a free one")
	cpus := fs.String("cpus", "", "pin the server to these CPUs (e.g. 0 or 0-1)")
	cert := fs.String("tls-cert", "", "PEM certificate: require TLS")
	key := fs.String("tls-key", "", "PEM key for --tls-cert")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *js && *store == "" {
		return errors.New("server: --js needs --store DIR")
	}
	if *cpus != "" {
		if err := pinProcess(*cpus); err != nil {
			return err
		}
	}
	opts := &server.Options{
		Host:   "127.0.0.1",
		Port:   *port,
		NoSigs: true,
		NoLog:  true,
	}
	if *port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	if *js {
		opts.JetStream = true
		opts.StoreDir = *store
		opts.SyncAlways = true
		opts.SyncInterval = syncAlwaysInterval
	}
	if *cert != "" {
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			return fmt.Errorf("server: tls: %w", err)
		}
		opts.TLS = true
		opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13}
		opts.TLSTimeout = 10
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return errors.New("server: not ready after 30s")
	}
	fmt.Fprintf(stdout, "ready %s\n", s.Addr())
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}
