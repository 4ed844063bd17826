package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// roleEnv tells a re-executed binary which role to play. The natspeer
// binary reads its subcommand from the arguments; a test binary has its
// own flags, so TestMain dispatches on this variable instead.
const roleEnv = "NATSPEER_ROLE"

// nodeOptions configure the nats-server child.
type nodeOptions struct {
	// JetStream enables JetStream with file storage under StoreDir.
	JetStream bool
	StoreDir  string
	// CPUs pins the child (a CPU list); empty leaves it unpinned.
	CPUs string
	// TLSCert and TLSKey, when set, make the server require TLS.
	TLSCert, TLSKey string
}

// node is a nats-server running as a child process of this one, so its CPU
// and memory are measured apart from the load generator's.
type node struct {
	cmd  *exec.Cmd
	addr string // host:port it accepts clients on
}

// startNode re-executes this binary as `server` and waits for its "ready"
// line.
func startNode(ctx context.Context, opts nodeOptions) (*node, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	args := []string{"server", "--port", "0"}
	if opts.JetStream {
		args = append(args, "--js", "--store", opts.StoreDir)
	}
	if opts.CPUs != "" {
		args = append(args, "--cpus", opts.CPUs)
	}
	if opts.TLSCert != "" {
		args = append(args, "--tls-cert", opts.TLSCert, "--tls-key", opts.TLSKey)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), roleEnv+"=server")
	cmd.Stderr = os.Stderr
	// The child dies with us, even when we are killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("node: start: %w", err)
	}
	n := &node{cmd: cmd}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			ready <- fmt.Errorf("node: no ready line: %w", err)
			return
		}
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
		if !ok {
			ready <- fmt.Errorf("node: unexpected line %q", line)
			return
		}
		n.addr = addr
		ready <- nil
	}()
	select {
	case err = <-ready:
	case <-time.After(60 * time.Second):
		err = errors.New("node: not ready after 60s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		n.stop()
		return nil, err
	}
	return n, nil
}

// pid is the child's process id.
func (n *node) pid() int { return n.cmd.Process.Pid }

// sample reads the child's CPU and memory.
func (n *node) sample() (procSample, error) { return readProc(n.pid()) }

// stop asks the child to shut down, kills it after 10 s, and reaps it.
func (n *node) stop() error {
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("node: %w", err)
		}
		return err
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-done
		return errors.New("node: killed after 10s without exiting")
	}
}
