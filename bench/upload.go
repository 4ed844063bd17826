package bench

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"github.com/gonets/gonets/bench/result"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// UploadScenario is the upload scenario's name: gonets bench upload.
const UploadScenario = "upload"

// The upload scenario's goals (issue 14): the large file at 0.8 of the
// data disk's own sequential write speed or better, and the node's
// memory growing by at most 64 MiB, whatever the file's size.
const (
	uploadGoalDiskRatio = 0.8
	uploadGoalGrowth    = 64 << 20
)

// photosPerSession is how many of the photo phase's uploads in flight
// share one session (one user's token and public URL): a few photos of
// an album, below the node's cap on one user's uploads in flight. They
// share the session's HTTPS connections too, as the SDK's UploadFile
// reuses a Client's. A photo the node refuses with 429 too_many_uploads
// (its cap on uploads in flight) is sent again by the SDK after the
// node's Retry-After.
const photosPerSession = 4

// copyBlock is the write size of the generated files and of the disk
// baseline.
const copyBlock = 1 << 20

// uploadTimeout bounds one phase's uploads, however slow the disk.
const uploadTimeout = 30 * time.Minute

// UploadConfig is one upload scenario run's parameters. The zero value
// of a field means its default, given in the comment.
type UploadConfig struct {
	// Binary is the gonets executable the node is started from. Default:
	// this process's.
	Binary string
	// Size is the large file's size in bytes. Default: 1 GiB.
	Size int64
	// Photos is how many distinct photo-sized files are uploaded in the
	// photo phase. Default: 1,000.
	Photos int
	// PhotoSize is each photo's size in bytes. Default: 200 KiB.
	PhotoSize int64
	// Concurrency is the photo uploads in flight at once. Default:
	// Photos, all at once.
	Concurrency int
	// ChunkSize and Parallel shape the large file's resumable upload: its
	// chunks' size and how many are sent at once. Default: the SDK's
	// (client.UploadOptions: 8 MiB, 4).
	ChunkSize int64
	Parallel  int
	// Data is the directory the node's data directory is made in, on the
	// disk measured. Default: the system's temporary directory.
	Data string
	// NodeProfile, when set, is where a CPU profile of the node over the
	// large file's upload is written (the photos' beside it, with
	// "-photos" before the extension).
	NodeProfile string
	// Live, when set, gets a progress line every second.
	Live io.Writer
}

func (c UploadConfig) withDefaults() UploadConfig {
	if c.Size == 0 {
		c.Size = 1 << 30
	}
	if c.Photos == 0 {
		c.Photos = 1000
	}
	if c.PhotoSize == 0 {
		c.PhotoSize = 200 << 10
	}
	if c.Concurrency == 0 {
		c.Concurrency = c.Photos
	}
	return c
}

func (c UploadConfig) validate() error {
	var errs []error
	if c.Size < copyBlock {
		errs = append(errs, fmt.Errorf("bench: upload: --size %d below 1 MiB", c.Size))
	}
	if c.Photos < 1 || c.PhotoSize < 1 {
		errs = append(errs, fmt.Errorf("bench: upload: --photos %d and --photo-size %d must be positive", c.Photos, c.PhotoSize))
	}
	if c.ChunkSize < 0 || c.Parallel < 0 {
		errs = append(errs, fmt.Errorf("bench: upload: --chunk-size %d and --parallel %d must not be negative", c.ChunkSize, c.Parallel))
	}
	if c.Concurrency < 1 || c.Concurrency > c.Photos {
		errs = append(errs, fmt.Errorf("bench: upload: --concurrency %d: from 1 to --photos (%d)", c.Concurrency, c.Photos))
	}
	if c.Data != "" {
		if st, err := os.Stat(c.Data); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("bench: upload: --data %q is not a directory", c.Data))
		}
	}
	return errors.Join(errs...)
}

// uploadBench is one run of the upload scenario.
type uploadBench struct {
	cfg UploadConfig
	t   *target
	res *result.Result
	src string // the generated files' directory

	big    string // the large file's path, and its SHA-256
	bigSHA string
	photos []string // the photos' paths, and their SHA-256s
	sums   []string
}

// RunUpload runs the upload scenario against a node it starts from
// cfg.Binary on 127.0.0.1, with its data directory in cfg.Data:
//
//   - disk: the large file's size written sequentially into the node's
//     data directory and fsynced, then removed: the disk's own speed;
//   - large: one file of cfg.Size uploaded by one user through the SDK's
//     Client.UploadFile (resumable, 8 MiB chunks, 4 in parallel), read
//     from a generated file;
//   - photos: cfg.Photos distinct files of cfg.PhotoSize (random bytes,
//     not pictures: no thumbnails), cfg.Concurrency at a time, each
//     through UploadFile, photosPerSession sharing a session (and its
//     HTTPS connections).
//
// The node's resident set is sampled every 100 ms over each upload
// phase: its growth is the peak less the resident set at the phase's
// start. Each upload is checked against what the node stored.
func RunUpload(ctx context.Context, cfg UploadConfig) (*result.Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	bin := cfg.Binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	res := &result.Result{Scenario: UploadScenario, Target: "gonets", Started: time.Now(), Machine: machine(),
		Metrics: map[string]float64{}, SharedCores: true}
	res.Params = map[string]any{"size": cfg.Size, "photos": cfg.Photos, "photo-size": cfg.PhotoSize, "concurrency": cfg.Concurrency,
		"chunk-size": cfg.ChunkSize, "parallel": cfg.Parallel}
	res.Goal = fmt.Sprintf("the large file at ≥ %.1f × the data disk's sequential write speed, node memory growth ≤ %d MiB in each phase",
		uploadGoalDiskRatio, uploadGoalGrowth>>20)
	src, err := os.MkdirTemp("", "gonets-bench-upload-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(src)
	ub := &uploadBench{cfg: cfg, res: res, src: src}
	ub.live("generating %d MiB and %d photos of %d KiB", cfg.Size>>20, cfg.Photos, cfg.PhotoSize>>10)
	if err := ub.generate(); err != nil {
		return nil, err
	}
	t, err := startNodeIn(ctx, cfg.Data, bin, "", true)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	ub.t = t
	res.Params["data"] = t.dir
	res.Notes = append(res.Notes, fmt.Sprintf("node and load generator share this machine's %d cores, unpinned", res.Machine.CPUs))
	if err := ub.disk("before"); err != nil {
		return res, err
	}
	if err := ub.large(ctx); err != nil {
		return res, err
	}
	if err := ub.disk("after"); err != nil {
		return res, err
	}
	if err := ub.photoPhase(ctx); err != nil {
		return res, err
	}
	if serr := t.stop(); serr != nil {
		res.Notes = append(res.Notes, serr.Error())
	}
	ub.finish()
	return res, nil
}

// live prints a progress line, when the run has a live writer.
func (ub *uploadBench) live(format string, args ...any) {
	if ub.cfg.Live != nil {
		fmt.Fprintf(ub.cfg.Live, "\rupload   "+format+"   ", args...)
	}
}

// generate writes the large file and the photos into the source
// directory, each of distinct random bytes, and syncs them, so that the
// measured phases neither generate data nor flush the generator's dirty
// pages.
func (ub *uploadBench) generate() error {
	var err error
	ub.big = filepath.Join(ub.src, "large.bin")
	if ub.bigSHA, err = writeRandom(ub.big, ub.cfg.Size, 0); err != nil {
		return err
	}
	ub.photos = make([]string, ub.cfg.Photos)
	ub.sums = make([]string, ub.cfg.Photos)
	for i := range ub.photos {
		ub.photos[i] = filepath.Join(ub.src, fmt.Sprintf("photo-%05d.bin", i))
		if ub.sums[i], err = writeRandom(ub.photos[i], ub.cfg.PhotoSize, uint64(i)+1); err != nil {
			return err
		}
	}
	unix.Sync()
	return nil
}

// writeRandom writes size random bytes from seed to path and returns
// their SHA-256.
func writeRandom(path string, size int64, seed uint64) (string, error) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	copy(key[8:], "gonets bench upload")
	rng := rand.NewChaCha8(key)
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	buf := make([]byte, min(size, copyBlock))
	for left := size; left > 0; {
		b := buf[:min(left, int64(len(buf)))]
		rng.Read(b)
		h.Write(b)
		if _, err := f.Write(b); err != nil {
			f.Close()
			return "", err
		}
		left -= int64(len(b))
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// disk copies the large file into the node's data directory, 1 MiB at a
// time, and fsyncs it: the disk's sequential write speed, as the node's
// store writes (it too fsyncs before it answers). The copy is removed.
// It runs before the large file's upload and after it (when is "before"
// or "after"): on a virtual machine the speed of buffered writes drifts
// (the guest's page cache pages cost what the host makes them cost), so
// the upload is held to the two's mean, and both are reported.
func (ub *uploadBench) disk(when string) error {
	ub.live("disk: writing %d MiB into %s", ub.cfg.Size>>20, ub.t.dir)
	in, err := os.Open(ub.big)
	if err != nil {
		return err
	}
	defer in.Close()
	path := filepath.Join(ub.t.dir, "bench-disk-baseline.bin")
	defer os.Remove(path)
	start := time.Now()
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	// Plain writes, as the node's store makes: the wrapper hides
	// ReadFrom, whose copy_file_range could copy inside the kernel.
	n, err := io.CopyBuffer(struct{ io.Writer }{out}, in, make([]byte, copyBlock))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	secs := time.Since(start).Seconds()
	if err != nil {
		return fmt.Errorf("bench: upload: disk baseline: %w", err)
	}
	m := ub.res.Metrics
	m["disk_bytes"] = float64(n)
	m["disk_"+when+"_seconds"] = secs
	m["disk_"+when+"_mb_per_s"] = float64(n) / secs / 1e6
	if when == "after" {
		m["disk_seconds"] = (m["disk_before_seconds"] + m["disk_after_seconds"]) / 2
		m["disk_mb_per_s"] = float64(n) / m["disk_seconds"] / 1e6
		m["large_disk_ratio"] = m["large_mb_per_s"] / m["disk_mb_per_s"]
	}
	return nil
}

// dial connects one session of user, only for its token and the node's
// public URL: it neither syncs nor receives.
func (ub *uploadBench) dial(ctx context.Context, user uint64) (*client.Client, error) {
	o := client.Options{TLS: ub.t.tls, Via: ub.t.via, SendOnly: true, Logger: slog.New(slog.DiscardHandler)}
	c, err := client.Dial(ctx, ub.t.addr, ub.t.token(user, 1), o)
	if err != nil {
		return nil, fmt.Errorf("bench: upload: dial user %d: %w", user, err)
	}
	if c.PublicURL() == "" {
		c.Close()
		return nil, errors.New("bench: upload: the node announced no public URL")
	}
	return c, nil
}

// phaseUse is what one upload phase cost: the node's resident set and
// CPU, the generator's CPU, the time its media store spent, and an
// optional profile.
type phaseUse struct {
	rss      *rssSampler
	node     *procMeter
	gen      *procMeter
	store    mediaTimes
	busy     time.Duration // the machine's busy CPU at the start
	profiled chan error
	profile  string
}

// startUse starts measuring a phase; with profile set, a CPU profile of
// the node over about expect is written there.
func (ub *uploadBench) startUse(ctx context.Context, profile string, expect time.Duration) *phaseUse {
	pid := ub.t.pid()
	u := &phaseUse{rss: startRSS(pid), node: startMeter(pid, ""), gen: startMeter("self", ""), profiled: make(chan error, 1), profile: profile,
		store: ub.t.mediaTimes(ctx)}
	u.busy, _, _ = machineCPU()
	if profile != "" {
		go func() { u.profiled <- ub.t.profile(ctx, expect, profile) }()
	} else {
		u.profiled <- nil
	}
	return u
}

// end stops measuring and records the phase's figures under prefix.
func (ub *uploadBench) end(ctx context.Context, u *phaseUse, prefix string, secs float64) {
	rs := u.rss.finish()
	node, gen := u.node.read(), u.gen.read()
	m := ub.res.Metrics
	if st := ub.t.mediaTimes(ctx); st != nil && u.store != nil {
		for _, k := range []string{"put", "chunk", "complete"} {
			if n := st[k+"_count"] - u.store[k+"_count"]; n > 0 {
				m[prefix+"_node_"+k+"s"] = n
				m[prefix+"_node_"+k+"_ms_mean"] = 1000 * (st[k+"_sum"] - u.store[k+"_sum"]) / n
			}
		}
	}
	m[prefix+"_node_rss_base_bytes"] = float64(rs.base)
	m[prefix+"_node_rss_peak_bytes"] = float64(rs.peak)
	m[prefix+"_node_rss_growth_bytes"] = float64(rs.peak - rs.base)
	m[prefix+"_node_rss_samples"] = float64(rs.samples)
	if node != nil && secs > 0 {
		m[prefix+"_node_cpu_pct"] = 100 * node.CPUSeconds / secs
	}
	if gen != nil && secs > 0 {
		m[prefix+"_generator_cpu_pct"] = 100 * gen.CPUSeconds / secs
	}
	if busy, _, err := machineCPU(); err == nil && node != nil && gen != nil && secs > 0 {
		// Clock ticks of 10 ms: only a rough share, but enough to tell
		// a quiet machine from a busy one.
		other := max(0, 100*((busy-u.busy).Seconds()-node.CPUSeconds-gen.CPUSeconds)/secs)
		m[prefix+"_other_cpu_pct"] = other
		if other >= 10 {
			ub.res.Notes = append(ub.res.Notes, fmt.Sprintf("in the %s phase other processes and kernel threads used %.0f%% CPU (100 = one core): the kernel's writeback and journal threads work for the node's writes, but more than that disturbs the figures", prefix, other))
		}
	}
	if prefix == "large" {
		ub.res.Node, ub.res.Generator = node, gen
	}
	if u.profile == "" {
		return
	}
	if err := <-u.profiled; err != nil {
		ub.res.Notes = append(ub.res.Notes, fmt.Sprintf("node profile of the %s phase: %v", prefix, err))
	} else {
		ub.res.Notes = append(ub.res.Notes, fmt.Sprintf("node CPU profile of the %s phase: %s", prefix, u.profile))
	}
}

// large uploads the large file as one user and checks what was stored.
func (ub *uploadBench) large(ctx context.Context) error {
	c, err := ub.dial(ctx, 1)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, uploadTimeout)
	defer cancel()
	m := ub.res.Metrics
	// The profile spans three times the disk baseline's time, so that it
	// covers an upload at a third of the disk's speed; a longer one only
	// adds idle time, which takes no samples.
	u := ub.startUse(ctx, ub.cfg.NodeProfile, time.Duration(3*m["disk_before_seconds"]*float64(time.Second)))
	stopLive := ub.ticker("large", u.rss, nil)
	start := time.Now()
	att, err := c.UploadFile(ctx, ub.big, client.UploadOptions{Name: "large.bin", MIME: "application/octet-stream",
		ChunkSize: ub.cfg.ChunkSize, Parallel: ub.cfg.Parallel})
	secs := time.Since(start).Seconds()
	stopLive()
	ub.end(ctx, u, "large", secs)
	if err != nil {
		return fmt.Errorf("bench: upload: large file: %w", err)
	}
	if att.Size != ub.cfg.Size || att.Sha256 != ub.bigSHA {
		return fmt.Errorf("bench: upload: large file: the node answered %d bytes, SHA-256 %s; sent %d, %s", att.Size, att.Sha256, ub.cfg.Size, ub.bigSHA)
	}
	stored, err := ub.stored(att.Sha256)
	if err != nil {
		return err
	}
	m["large_bytes"] = float64(ub.cfg.Size)
	m["large_stored_bytes"] = float64(stored)
	m["large_seconds"] = secs
	m["large_mb_per_s"] = float64(ub.cfg.Size) / secs / 1e6
	return nil
}

// stored returns the size of blob sha in the node's media store.
func (ub *uploadBench) stored(sha string) (int64, error) {
	st, err := os.Stat(filepath.Join(ub.t.dir, "media", "blobs", sha[:2], sha))
	if err != nil {
		return 0, fmt.Errorf("bench: upload: the stored file: %w", err)
	}
	return st.Size(), nil
}

// photoTally is what the photo phase counted.
type photoTally struct {
	mu       sync.Mutex // guards the following
	lat      *hdrhistogram.Histogram
	failed   int
	firstErr error
	stored   int64 // bytes of the stored blobs, checked against the sources
}

// photoPhase uploads the photos, Concurrency at a time, each through
// UploadFile of one of the sessions (photosPerSession uploads in flight
// share one).
func (ub *uploadBench) photoPhase(ctx context.Context) error {
	cfg := ub.cfg
	sessions := make([]*client.Client, (cfg.Concurrency+photosPerSession-1)/photosPerSession)
	defer func() {
		for _, c := range sessions {
			if c != nil {
				c.Close()
			}
		}
	}()
	ub.live("photos: connecting %d sessions", len(sessions))
	dials := make(chan struct{}, 16)
	var dialErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for i := range sessions {
		dials <- struct{}{}
		wg.Go(func() {
			defer func() { <-dials }()
			c, err := ub.dial(ctx, uint64(1000+i))
			if err != nil {
				dialErr.CompareAndSwap(nil, &err)
				return
			}
			sessions[i] = c
		})
	}
	wg.Wait()
	if p := dialErr.Load(); p != nil {
		return *p
	}
	ctx, cancel := context.WithTimeout(ctx, uploadTimeout)
	defer cancel()
	tl := &photoTally{lat: result.NewHistogram()}
	var done atomic.Int64
	next := make(chan int)
	u := ub.startUse(ctx, profilePath(cfg.NodeProfile, "-photos"), ub.photoGuess())
	stopLive := ub.ticker("photos", u.rss, &done)
	start := time.Now()
	for w := range cfg.Concurrency {
		c := sessions[w/photosPerSession]
		wg.Go(func() {
			for i := range next {
				t0 := time.Now()
				att, err := c.UploadFile(ctx, ub.photos[i], client.UploadOptions{Name: filepath.Base(ub.photos[i]), MIME: "application/octet-stream"})
				d := time.Since(t0)
				done.Add(1)
				ub.tallyPhoto(tl, i, att, err, d)
			}
		})
	}
	for i := range ub.photos {
		next <- i
	}
	close(next)
	wg.Wait()
	secs := time.Since(start).Seconds()
	stopLive()
	ub.end(ctx, u, "photos", secs)
	ok := cfg.Photos - tl.failed
	m := ub.res.Metrics
	m["photos"] = float64(cfg.Photos)
	m["photos_failed"] = float64(tl.failed)
	m["photos_seconds"] = secs
	m["photos_per_s"] = float64(ok) / secs
	m["photos_mb_per_s"] = float64(int64(ok)*cfg.PhotoSize) / secs / 1e6
	m["photos_bytes"] = float64(int64(ok) * cfg.PhotoSize)
	m["photos_stored_bytes"] = float64(tl.stored)
	m["photo_p50_ms"] = float64(tl.lat.ValueAtQuantile(50)) / 1000
	m["photo_p99_ms"] = float64(tl.lat.ValueAtQuantile(99)) / 1000
	m["photo_sessions"] = float64(len(sessions))
	ub.res.Latency = result.Summarize(tl.lat)
	ub.res.Histogram = result.Buckets(tl.lat)
	ub.res.Sent, ub.res.Expected, ub.res.Delivered = int64(cfg.Photos)+1, int64(cfg.Photos)+1, int64(ok)+1
	if tl.failed > 0 {
		ub.res.Notes = append(ub.res.Notes, fmt.Sprintf("photos: %d of %d failed; the first: %v", tl.failed, cfg.Photos, tl.firstErr))
	}
	return nil
}

// photoGuess is how long the photo phase's profile lasts: three times
// the photos' bytes at the large file's speed (each photo also costs a
// request and its answer), at least two seconds. A profile longer than the phase
// only adds idle time, which takes no samples.
func (ub *uploadBench) photoGuess() time.Duration {
	rate := ub.res.Metrics["large_mb_per_s"] * 1e6
	if rate <= 0 {
		return 2 * time.Second
	}
	return max(2*time.Second, time.Duration(3*float64(int64(ub.cfg.Photos)*ub.cfg.PhotoSize)/rate*float64(time.Second)))
}

// tallyPhoto counts photo i's upload: its latency, or its failure when it
// failed or the node's answer or stored file differ from what was sent.
func (ub *uploadBench) tallyPhoto(tl *photoTally, i int, att *wire.Attachment, err error, d time.Duration) {
	var stored int64
	if err == nil && (att.GetSize() != ub.cfg.PhotoSize || att.GetSha256() != ub.sums[i]) {
		err = fmt.Errorf("photo %d: the node answered %d bytes, SHA-256 %s; sent %d, %s", i, att.GetSize(), att.GetSha256(), ub.cfg.PhotoSize, ub.sums[i])
	}
	if err == nil {
		stored, err = ub.stored(att.GetSha256())
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if err != nil {
		tl.failed++
		tl.firstErr = cmpErr(tl.firstErr, err)
		return
	}
	tl.lat.RecordValue(d.Microseconds())
	tl.stored += stored
}

// ticker prints the phase's progress each second, when the run has a
// live writer, until the returned function is called.
func (ub *uploadBench) ticker(phase string, rss *rssSampler, done *atomic.Int64) func() {
	if ub.cfg.Live == nil {
		return func() {}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				fmt.Fprintln(ub.cfg.Live)
				return
			case now := <-tick.C:
				last, growth := rss.now()
				s := fmt.Sprintf("%-7s %4.0fs  node RSS %4d MiB, peak growth %4d MiB", phase, now.Sub(start).Seconds(), last>>20, growth>>20)
				if done != nil {
					s += fmt.Sprintf(", %d/%d done", done.Load(), ub.cfg.Photos)
				}
				ub.live("%s", s)
			}
		}
	})
	return func() { close(stop); wg.Wait() }
}

// finish fills the result's summary figures, goal and notes.
func (ub *uploadBench) finish() {
	res, m, cfg := ub.res, ub.res.Metrics, ub.cfg
	res.Seconds = m["large_seconds"] + m["photos_seconds"]
	res.Rate = m["photos_per_s"]
	res.DeliveredRatio = float64(res.Delivered) / float64(res.Expected)
	res.Notes = append(res.Notes,
		"MB/s are 10^6 bytes a second; the disk figure is the large file's size copied from the page cache into the node's data directory (1 MiB writes) and fsynced, timed to the end of the fsync, once before the large upload and once after it: the disk's speed is their mean time's",
		fmt.Sprintf("the large file goes through the SDK's Client.UploadFile: a resumable upload in %s chunks, %s in parallel, over HTTPS on the node's public listener (127.0.0.1)",
			orDefault(cfg.ChunkSize>>20, "MiB", "8 MiB"), orDefault(int64(cfg.Parallel), "", "4")),
		fmt.Sprintf("photos: %d files of %d bytes of random data, not pictures (no thumbnails are made), %d in flight, each through UploadFile, %d uploads sharing a session's token and HTTPS connections; a photo the node refuses 429 too_many_uploads (its cap on uploads in flight) is sent again by the SDK after the node's Retry-After (1 s ± 50%%); latency (p50/p99) is one UploadFile, the first connection's handshake and any such waits included",
			cfg.Photos, cfg.PhotoSize, cfg.Concurrency, photosPerSession),
		"node RSS is sampled every 100 ms over each phase and its kernel high-water mark (VmHWM, reset at the phase's start) read at the end; growth is the peak less the resident set at the phase's start")
	res.Met = res.Delivered == res.Expected &&
		m["large_disk_ratio"] >= uploadGoalDiskRatio &&
		m["large_node_rss_growth_bytes"] <= uploadGoalGrowth &&
		m["photos_node_rss_growth_bytes"] <= uploadGoalGrowth
}

// WriteUpload prints an upload scenario's result for a person.
func WriteUpload(w io.Writer, r *result.Result) {
	m := r.Metrics
	mib := func(k string) float64 { return m[k] / (1 << 20) }
	verdict := func(ok bool) string {
		if ok {
			return "pass"
		}
		return "miss"
	}
	fmt.Fprintf(w, "disk:   %.0f MiB written sequentially and fsynced in the node's data directory: %.0f MB/s (%.2f s), the mean of %.0f MB/s before the large upload and %.0f MB/s after it\n",
		mib("disk_bytes"), m["disk_mb_per_s"], m["disk_seconds"], m["disk_before_mb_per_s"], m["disk_after_mb_per_s"])
	fmt.Fprintf(w, "large:  %.0f MiB through UploadFile: %.0f MB/s (%.2f s) = %.2f × the disk's speed (goal ≥ %.1f: %s); stored %.0f bytes\n",
		mib("large_bytes"), m["large_mb_per_s"], m["large_seconds"], m["large_disk_ratio"], uploadGoalDiskRatio,
		verdict(m["large_disk_ratio"] >= uploadGoalDiskRatio), m["large_stored_bytes"])
	writeUse(w, m, "large", verdict)
	fmt.Fprintf(w, "photos: %.0f × %.0f KiB, %v at once: %.0f uploads/s, %.1f MB/s (%.2f s); p50 %.1f ms, p99 %.1f ms; %.0f failed; stored %.0f bytes\n",
		m["photos"], float64(toInt(r.Params["photo-size"]))/(1<<10), r.Params["concurrency"], m["photos_per_s"], m["photos_mb_per_s"],
		m["photos_seconds"], m["photo_p50_ms"], m["photo_p99_ms"], m["photos_failed"], m["photos_stored_bytes"])
	writeUse(w, m, "photos", verdict)
	mc := r.Machine
	fmt.Fprintf(w, "machine: %s, %d cores, %s, %s\n", mc.CPUModel, mc.CPUs, mc.GoVersion, mc.OS)
	fmt.Fprintf(w, "goal: %s: met=%v\n", r.Goal, r.Met)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// writeUse prints a phase's node memory and CPU.
func writeUse(w io.Writer, m map[string]float64, prefix string, verdict func(bool) string) {
	mib := func(k string) float64 { return m[prefix+k] / (1 << 20) }
	growth := m[prefix+"_node_rss_growth_bytes"]
	fmt.Fprintf(w, "        node RSS %.0f MiB at the start, peak %.0f MiB: growth %.1f MiB (goal ≤ %d: %s); CPU: node %.0f%%, generator %.0f%%, other processes and kernel threads %.0f%% (100 = one core)\n",
		mib("_node_rss_base_bytes"), mib("_node_rss_peak_bytes"), growth/(1<<20), uploadGoalGrowth>>20,
		verdict(growth <= uploadGoalGrowth), m[prefix+"_node_cpu_pct"], m[prefix+"_generator_cpu_pct"], m[prefix+"_other_cpu_pct"])
	var store []string
	for _, k := range []struct{ key, what string }{
		{"put", "single-request stores (receive, fsync, rename)"},
		{"chunk", "chunks (receive, pwrite, fsync, state file)"},
		{"complete", "completions (hash what the chunks left unhashed, rename)"},
	} {
		if n := m[prefix+"_node_"+k.key+"s"]; n > 0 {
			store = append(store, fmt.Sprintf("%.0f %s, %.1f ms each on average", n, k.what, m[prefix+"_node_"+k.key+"_ms_mean"]))
		}
	}
	if len(store) > 0 {
		fmt.Fprintf(w, "        node media store: %s\n", strings.Join(store, "; "))
	}
}

// toInt reads a parameter that is an integer in memory and a float64
// once through JSON.
func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int:
		return int64(x)
	case float64:
		return int64(x)
	}
	return 0
}

// orDefault formats n with unit, or def (the SDK's default) for 0.
func orDefault(n int64, unit, def string) string {
	if n == 0 {
		return def
	}
	if unit == "" {
		return strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10) + " " + unit
}
