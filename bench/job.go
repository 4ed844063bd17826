package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// The worker protocol: `gonets bench --procs N` starts N processes of
// `gonets bench-worker` and speaks JSON lines with each over its stdin
// (requests) and stdout (one reply per request); a worker's stderr is
// kept for error messages. The first request carries the job; the
// coordinator's ticks then drive the timeline. A worker ends when its
// stdin closes, so it cannot outlive the coordinator.

// job is a worker's part of a load scenario and how to reach the node.
type job struct {
	Scenario string `json:"scenario"`
	Part     int    `json:"part"` // 0 .. Parts-1
	Parts    int    `json:"parts"`

	Addr        string `json:"addr"`
	TCPAddr     string `json:"tcp_addr"`
	Via         string `json:"via"` // quic or tcp
	Key         string `json:"key"` // the node's token key file
	Fingerprint string `json:"fingerprint,omitempty"`
	Insecure    bool   `json:"insecure,omitempty"`

	Users       int `json:"users"`
	Groups      int `json:"groups"`
	Members     int `json:"members"`
	Subscribers int `json:"subscribers"`
	Publishers  int `json:"publishers"`
	Size        int `json:"size"`

	// The media scenarios (call, stream):
	Calls   int    `json:"calls,omitempty"`
	Viewers int    `json:"viewers,omitempty"`
	Channel uint64 `json:"channel,omitempty"` // the stream's
	Public  string `json:"public,omitempty"`  // the node's public HTTPS listener, https://host:port
}

// newJob returns part k of parts of a scenario against t.
func newJob(scenario string, cfg Config, t *target, k, parts int) *job {
	return &job{Scenario: scenario, Part: k, Parts: parts, Addr: t.addr, TCPAddr: t.tcpAddr, Via: t.via.String(), Key: t.keyFile, Fingerprint: t.fingerprint, Insecure: t.insecure,
		Users: cfg.Users, Groups: cfg.Groups, Members: cfg.Members, Subscribers: cfg.Subscribers, Publishers: cfg.Publishers, Size: cfg.Size,
		Calls: cfg.Calls, Viewers: cfg.Viewers, Public: t.publicURL}
}

// config is the scenario's Config as far as a part needs it.
func (j *job) config() Config {
	return Config{Users: j.Users, Groups: j.Groups, Members: j.Members, Subscribers: j.Subscribers, Publishers: j.Publishers, Size: j.Size,
		Calls: j.Calls, Viewers: j.Viewers}
}

// request is one line from the coordinator. Op is one of the op
// constants; times are Unix nanoseconds.
type request struct {
	Op    string        `json:"op"`
	Job   *job          `json:"job,omitempty"`   // opSetup
	Rate  float64       `json:"rate,omitempty"`  // opLoad: the whole scenario's
	Start int64         `json:"start,omitempty"` // opLoad
	Begin int64         `json:"begin,omitempty"` // opLoad
	End   int64         `json:"end,omitempty"`   // opLoad
	At    int64         `json:"at,omitempty"`    // opStop
	Limit time.Duration `json:"limit,omitempty"` // opFinish
}

// The requests, each answering with one reply; they map onto part's
// methods, or for a media scenario (call, stream) onto mediaPart's.
const (
	opSetup     = "setup"     // dial the job's sessions and make its chats
	opJoin      = "join"      // mediaPart.join
	opLoad      = "load"      // part.load; mediaPart.begin
	opTick      = "tick"      // part.tick, mediaPart.tick: reply.Second
	opStop      = "stop"      // part.stop; mediaPart.end
	opFinish    = "finish"    // part.finish
	opCounts    = "counts"    // part.counts: reply.Delivered, reply.Expected
	opSnapshot  = "snapshot"  // part.snapshot: reply.Tally; mediaPart.snapshot: reply.Media
	opDatagrams = "datagrams" // part.datagrams: reply.Datagrams
	opQuit      = "quit"      // close the sessions and end
)

// reply is one line from the worker.
type reply struct {
	Error     string      `json:"error,omitempty"`
	Second    *second     `json:"second,omitempty"`
	Tally     *tally      `json:"tally,omitempty"`
	Media     *mediaTally `json:"media,omitempty"`
	Datagrams *datagrams  `json:"datagrams,omitempty"`
	Delivered int64       `json:"delivered,omitempty"`
	Expected  int64       `json:"expected,omitempty"`
}

// errNoJob answers a request that comes before the job.
var errNoJob = errors.New("bench: no job yet: the first request sets one up")

// Worker serves the coordinator of a `gonets bench --procs N` run as one
// of its load generator processes: it reads requests from in and writes
// a reply to each to out, until a quit request or the end of in, then
// drops its sessions. The end of in also cancels a request in progress,
// so that a worker whose coordinator died does not linger.
func Worker(ctx context.Context, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reqs := make(chan request)
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(reqs)
		defer cancel()
		dec := json.NewDecoder(in)
		for {
			var req request
			if err := dec.Decode(&req); err != nil {
				if !errors.Is(err, io.EOF) {
					readErr <- fmt.Errorf("bench: worker request: %w", err)
				}
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	})
	var p workerParts
	defer func() {
		p.close()
		cancel()
		wg.Wait() // returns when in ends, which the coordinator sees to
	}()
	enc := json.NewEncoder(out)
	for req := range reqs {
		rep, quit := serve(ctx, &p, req)
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("bench: worker reply: %w", err)
		}
		if quit {
			return nil
		}
	}
	select {
	case err := <-readErr:
		return err
	default:
		return nil
	}
}

// workerParts is a worker's part: of a load scenario, or of a media
// one; nil before the job.
type workerParts struct {
	load  *localPart
	media *mediaLocal
}

// close closes the part, if there is one, and forgets it.
func (w *workerParts) close() {
	if w.load != nil {
		w.load.close()
	}
	if w.media != nil {
		w.media.close()
	}
	*w = workerParts{}
}

// serve answers one request, setting w up on opSetup; quit says the
// worker is done.
func serve(ctx context.Context, w *workerParts, req request) (rep reply, quit bool) {
	fail := func(err error) (reply, bool) { return reply{Error: err.Error()}, false }
	if req.Op == opSetup {
		if w.load != nil || w.media != nil || req.Job == nil {
			return fail(errors.New("bench: setup: one job per worker"))
		}
		j := req.Job
		t, err := connectNode(j.Addr, j.Key, j.Fingerprint, j.Insecure)
		if err != nil {
			return fail(err)
		}
		t.tcpAddr = j.TCPAddr
		if err := t.via.UnmarshalText([]byte(j.Via)); err != nil {
			return fail(err)
		}
		t.publicURL = j.Public
		if j.Scenario == "call" || j.Scenario == "stream" {
			w.media, err = newMediaLocal(ctx, j.Scenario, j.config(), t, j.Part, j.Parts, j.Channel)
		} else {
			w.load, err = newLocalPart(ctx, j.Scenario, j.config(), t, j.Part, j.Parts)
		}
		if err != nil {
			return fail(err)
		}
		return reply{}, false
	}
	if req.Op == opQuit {
		w.close()
		return reply{}, true
	}
	if w.media != nil {
		return serveMedia(ctx, w.media, req)
	}
	if w.load == nil {
		return fail(errNoJob)
	}
	part := w.load
	var err error
	switch req.Op {
	case opLoad:
		err = part.load(ctx, req.Rate, time.Unix(0, req.Start), time.Unix(0, req.Begin), time.Unix(0, req.End))
	case opTick:
		var s second
		s, err = part.tick(ctx)
		rep.Second = &s
	case opStop:
		err = part.stop(ctx, time.Unix(0, req.At))
	case opFinish:
		err = part.finish(ctx, req.Limit)
	case opCounts:
		rep.Delivered, rep.Expected, err = part.counts(ctx)
	case opSnapshot:
		var t tally
		t, err = part.snapshot(ctx)
		rep.Tally = &t
	case opDatagrams:
		var d datagrams
		d, err = part.datagrams(ctx)
		rep.Datagrams = &d
	default:
		err = fmt.Errorf("bench: unknown request %q", req.Op)
	}
	if err != nil {
		return fail(err)
	}
	return rep, false
}

// serveMedia answers one request to a media part.
func serveMedia(ctx context.Context, p *mediaLocal, req request) (rep reply, quit bool) {
	var err error
	switch req.Op {
	case opJoin:
		err = p.join(ctx)
	case opLoad:
		err = p.begin(ctx)
	case opTick:
		var s second
		s, err = p.tick(ctx)
		rep.Second = &s
	case opStop:
		err = p.end(ctx)
	case opSnapshot:
		var t mediaTally
		t, err = p.snapshot(ctx)
		rep.Media = &t
	default:
		err = fmt.Errorf("bench: unknown request %q to a %s part", req.Op, p.scenario)
	}
	if err != nil {
		return reply{Error: err.Error()}, false
	}
	return rep, false
}
