package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/gonets/gonets/bench"
	"github.com/gonets/gonets/bench/result"
)

// natsPeerDir is the NATS peer's module, relative to the repository root.
const natsPeerDir = "bench/natspeer"

// peerFlags are the scenario flags the NATS peer understands; the bench's
// own (target, output) flags are not passed on.
var peerFlags = map[string]bool{
	"duration": true, "warmup": true, "size": true, "rate": true, "users": true, "groups": true, "members": true,
	"subscribers": true, "sessions": true, "messages": true, "chats": true, "p99": true, "min-delivered": true,
	"step-start": true, "step-factor": true, "publishers": true, "rounds": true, "writers": true,
	"server-cpus": true, "client-cpus": true, "idle": true,
}

// peerSetup is how the peer's users connect. The bench's default is
// like for like with Gonets, which holds one QUIC session (TLS 1.3) per
// user: one TCP connection per user, TLS 1.3.
type peerSetup struct {
	usersPerConn int
	tls          bool
}

// args are the peer's flags for the setup.
func (s peerSetup) args() []string {
	return []string{fmt.Sprintf("--users-per-conn=%d", s.usersPerConn), fmt.Sprintf("--tls=%v", s.tls)}
}

// peerTargets are the NATS setups each scenario is compared with: core
// NATS for the live paths, JetStream (file storage, synced on every
// write) as the durable counterpart.
var peerTargets = map[string][]string{
	"chat":    {"nats-core", "nats-jetstream"},
	"group":   {"nats-core", "nats-jetstream"},
	"channel": {"nats-core", "nats-jetstream"},
	"connect": {"nats-core"},
	"sync":    {"nats-jetstream"},
	"storage": {"nats-jetstream"},
}

// runNATSPeer builds the NATS peer from its own module (pinned
// nats-server, fetched through the Go module proxy at bench time), runs
// the scenario against each of its targets and returns their results.
func runNATSPeer(ctx context.Context, scenario string, args []string, setup peerSetup, stderr io.Writer) ([]result.Result, error) {
	dir, err := findUp(natsPeerDir)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "gonets-natspeer-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "natspeer")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Dir = dir
	build.Stderr = stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build %s (needs the go tool and the module proxy): %w", dir, err)
	}
	var runs []result.Result
	for _, target := range peerTargets[scenario] {
		// The bench's own defaults where the peer's differ; flags the user
		// gave come later and win.
		cmdArgs := []string{"run", "--scenario", scenario, "--target", target, "--json", fmt.Sprintf("--step-start=%g", bench.DefaultStepStart), "--publishers=4"}
		cmdArgs = append(cmdArgs, setup.args()...)
		cmdArgs = append(cmdArgs, passThrough(args)...)
		cmd := exec.CommandContext(ctx, bin, cmdArgs...)
		var out bytes.Buffer
		cmd.Stdout = &out
		cmd.Stderr = stderr
		if err := cmd.Run(); err != nil {
			return runs, fmt.Errorf("%s: %w", target, err)
		}
		var r result.Result
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			return runs, fmt.Errorf("%s: its result: %w", target, err)
		}
		runs = append(runs, r)
	}
	return runs, nil
}

// passThrough keeps the flags of args that the peer understands, in
// -name=value or -name value form.
func passThrough(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") || !peerFlags[name] {
			continue
		}
		if !hasValue && i+1 < len(args) {
			i++
			value = args[i]
		}
		out = append(out, "--"+name+"="+value)
	}
	return out
}

// findUp finds rel below the working directory or one of its parents.
func findUp(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("the NATS peer's source (" + rel + ") is not under the working directory or its parents: run from the gonets repository")
		}
		dir = parent
	}
}
