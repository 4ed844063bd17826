package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Limits on a worker's answers: setting up dials its sessions, finishing
// waits up to the limit the request gives; the rest answer at once.
const (
	setupTimeout = 10 * time.Minute
	callTimeout  = 30 * time.Second
	exitTimeout  = 5 * time.Second
)

// worker is a part in a worker process (`gonets bench-worker`), driven
// over its stdin and stdout (see job.go).
type worker struct {
	n      int // 1-based, for messages
	cmd    *exec.Cmd
	in     io.WriteCloser
	enc    *json.Encoder
	stderr *tailBuffer

	replies chan reply    // closed when its stdout ends
	closing chan struct{} // closed by close: replies no one waits for are dropped
	exited  chan struct{} // closed when it has exited; then exitErr is set
	exitErr error

	closeOnce sync.Once

	mu     sync.Mutex // guards the following; held for a call
	broken bool       // a call failed midway: the protocol is out of step
}

// openParts opens a load scenario's parts: one in this process, or one
// in each of cfg.Procs workers started from cfg's binary, each pinned to
// cfg.ClientCPUs, and set up at once.
func openParts(ctx context.Context, scenario string, cfg Config, t *target) ([]part, error) {
	if cfg.Procs <= 1 {
		p, err := newLocalPart(ctx, scenario, cfg, t, 0, 1)
		if err != nil {
			return nil, err
		}
		return []part{p}, nil
	}
	bin, err := cfg.binary()
	if err != nil {
		return nil, err
	}
	parts := make([]part, 0, cfg.Procs)
	for k := range cfg.Procs {
		w, err := startWorker(bin, k+1, cfg.ClientCPUs)
		if err != nil {
			closeParts(parts)
			return nil, err
		}
		parts = append(parts, w)
	}
	err = eachIndex(parts, func(k int, p part) error {
		_, err := p.(*worker).call(ctx, request{Op: opSetup, Job: newJob(scenario, cfg, t, k, cfg.Procs)}, setupTimeout)
		return err
	})
	if err != nil {
		closeParts(parts)
		return nil, err
	}
	return parts, nil
}

// closeParts closes every part at once.
func closeParts(parts []part) { each(parts, func(p part) error { return p.close() }) }

// startWorker starts worker n from bin, pinned to cpus when set. It runs
// in its own process group, so that a Ctrl-C reaches the coordinator,
// which stops it, rather than it.
func startWorker(bin string, n int, cpus string) (*worker, error) {
	w := &worker{n: n, stderr: &tailBuffer{max: 8 << 10}, replies: make(chan reply), closing: make(chan struct{}), exited: make(chan struct{})}
	w.cmd = exec.Command(bin, "bench-worker")
	w.cmd.Stderr = w.stderr
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var err error
	if w.in, err = w.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := w.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start worker %d: %w", n, err)
	}
	w.enc = json.NewEncoder(w.in)
	go w.read(out)
	if cpus != "" {
		// Children inherit the coordinator's affinity; pinning makes sure.
		if err := pin(w.pid(), cpus); err != nil {
			w.close()
			return nil, err
		}
	}
	return w, nil
}

// read hands the worker's replies to calls until its stdout ends, then
// reaps it.
func (w *worker) read(out io.Reader) {
	dec := json.NewDecoder(out)
	for {
		var rep reply
		if err := dec.Decode(&rep); err != nil {
			break
		}
		select {
		case w.replies <- rep:
		case <-w.closing:
		}
	}
	close(w.replies)
	io.Copy(io.Discard, out)
	w.exitErr = w.cmd.Wait()
	close(w.exited)
}

// call sends req and waits up to limit for its reply.
func (w *worker) call(ctx context.Context, req request, limit time.Duration) (reply, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken {
		return reply{}, fmt.Errorf("bench: worker %d: out of step after an earlier error", w.n)
	}
	if err := w.enc.Encode(req); err != nil {
		w.broken = true
		return reply{}, w.failed(err)
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case rep, ok := <-w.replies:
		if !ok {
			w.broken = true
			return reply{}, w.failed(io.ErrUnexpectedEOF)
		}
		if rep.Error != "" {
			return rep, fmt.Errorf("bench: worker %d: %s", w.n, strings.TrimPrefix(rep.Error, "bench: "))
		}
		return rep, nil
	case <-ctx.Done():
		w.broken = true
		return reply{}, ctx.Err()
	case <-timer.C:
		w.broken = true
		return reply{}, fmt.Errorf("bench: worker %d: no answer to %s in %v", w.n, req.Op, limit)
	}
}

// failed describes a worker that stopped answering: how it exited, and
// the end of its stderr.
func (w *worker) failed(err error) error {
	select {
	case <-w.exited:
		err = w.exitErr
		if err == nil {
			err = errors.New("exited")
		}
	case <-time.After(exitTimeout):
	}
	if tail := strings.TrimSpace(w.stderr.String()); tail != "" {
		return fmt.Errorf("bench: worker %d: %v: %s", w.n, err, tail)
	}
	return fmt.Errorf("bench: worker %d: %v", w.n, err)
}

func (w *worker) load(ctx context.Context, rate float64, start, begin, end time.Time) error {
	_, err := w.call(ctx, request{Op: opLoad, Rate: rate, Start: start.UnixNano(), Begin: begin.UnixNano(), End: end.UnixNano()}, callTimeout)
	return err
}

func (w *worker) tick(ctx context.Context) (second, error) {
	rep, err := w.call(ctx, request{Op: opTick}, callTimeout)
	if err == nil && rep.Second == nil {
		err = fmt.Errorf("bench: worker %d: a tick without its second", w.n)
	}
	if err != nil {
		return second{}, err
	}
	return *rep.Second, nil
}

func (w *worker) stop(ctx context.Context, at time.Time) error {
	_, err := w.call(ctx, request{Op: opStop, At: at.UnixNano()}, callTimeout)
	return err
}

func (w *worker) finish(ctx context.Context, limit time.Duration) error {
	_, err := w.call(ctx, request{Op: opFinish, Limit: limit}, limit+callTimeout)
	return err
}

func (w *worker) counts(ctx context.Context) (delivered, expected int64, err error) {
	rep, err := w.call(ctx, request{Op: opCounts}, callTimeout)
	return rep.Delivered, rep.Expected, err
}

func (w *worker) snapshot(ctx context.Context) (tally, error) {
	rep, err := w.call(ctx, request{Op: opSnapshot}, callTimeout)
	if err == nil && rep.Tally == nil {
		err = fmt.Errorf("bench: worker %d: a snapshot without its tally", w.n)
	}
	if err != nil {
		return tally{}, err
	}
	return *rep.Tally, nil
}

func (w *worker) datagrams(ctx context.Context) (datagrams, error) {
	rep, err := w.call(ctx, request{Op: opDatagrams}, callTimeout)
	if err == nil && rep.Datagrams == nil {
		err = fmt.Errorf("bench: worker %d: no datagram counts in the reply", w.n)
	}
	if err != nil {
		return datagrams{}, err
	}
	return *rep.Datagrams, nil
}

func (w *worker) pid() string { return strconv.Itoa(w.cmd.Process.Pid) }

// close asks the worker to quit (unless it is out of step), closes its
// stdin, which ends it in any case, and kills it if it has not exited
// after exitTimeout. Later calls do nothing.
func (w *worker) close() error {
	w.closeOnce.Do(w.stopWorker)
	return nil
}

func (w *worker) stopWorker() {
	w.mu.Lock()
	broken := w.broken
	w.mu.Unlock()
	if !broken {
		w.call(context.Background(), request{Op: opQuit}, exitTimeout)
	}
	close(w.closing)
	w.in.Close()
	select {
	case <-w.exited:
	case <-time.After(exitTimeout):
		w.cmd.Process.Kill()
		<-w.exited
	}
}
