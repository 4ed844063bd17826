package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/gonets/gonets/bench"
	"github.com/gonets/gonets/bench/result"
)

const benchUploadUsage = "usage: gonets bench upload [--size 1GiB] [--photos 1000] [--photo-size 200KiB] [--concurrency N] [--data DIR] [--json]"

const benchUploadNotes = `Starts a node on 127.0.0.1 with its data directory in --data, measures the
disk's sequential write speed there (--size written and fsynced), then
uploads one --size file through the SDK's UploadFile (resumable chunks) and
--photos distinct files of --photo-size (random bytes, not pictures), and
reports MB/s against the disk's speed and the node's memory growth in each.
Goal: the large file at 0.8 × the disk's speed or better, node memory
growth at most 64 MiB. Sizes take KiB, MiB, GiB.`

// runBenchUpload runs the upload scenario (gonets bench upload) and prints
// its result.
func runBenchUpload(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench upload", benchUploadUsage, stdout, stderr)
	fs.notes = benchUploadNotes
	var cfg bench.UploadConfig
	size := sizeFlag(1 << 30)
	photoSize := sizeFlag(200 << 10)
	fs.Var(&size, "size", "the large file's `size`")
	fs.IntVar(&cfg.Photos, "photos", 1000, "`n` distinct photo-sized files to upload")
	fs.Var(&photoSize, "photo-size", "each photo's `size`")
	fs.IntVar(&cfg.Concurrency, "concurrency", 0, "photo uploads in flight, 4 to a user, each user's sharing its connections (default: --photos, all at once)")
	chunk := sizeFlag(0)
	fs.Var(&chunk, "chunk-size", "the large file's chunk `size` (default: the SDK's, 8MiB)")
	fs.IntVar(&cfg.Parallel, "parallel", 0, "the large file's chunks sent at once (default: the SDK's, 4)")
	fs.StringVar(&cfg.Data, "data", "", "`dir` to make the node's data directory in, on the disk to measure (default: the temporary directory)")
	fs.StringVar(&cfg.NodeProfile, "node-cpuprofile", "", "write a CPU profile of the node over the large upload to `file` (the photos' to FILE-photos)")
	asJSON := fs.Bool("json", false, "print the run as a JSON document instead of text")
	out := fs.String("out", "", "append the run's JSON document, one line, to `file`")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if msg := fs.noArgs(); msg != "" {
		return fs.usage("%s", msg)
	}
	cfg.Size, cfg.PhotoSize, cfg.ChunkSize = int64(size), int64(photoSize), int64(chunk)
	if isTerminal(stderr) {
		cfg.Live = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.RunUpload(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "gonets bench: %v\n", err)
		return 1
	}
	if *out != "" {
		if err := appendJSON(*out, []result.Result{*res}); err != nil {
			fmt.Fprintf(stderr, "gonets bench: --out: %v\n", err)
			return 1
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
		return 0
	}
	bench.WriteUpload(stdout, res)
	return 0
}

// sizeFlag is a flag of bytes with an optional binary unit ("200KiB",
// "1GiB"), parsed by parseSize.
type sizeFlag int64

func (s *sizeFlag) String() string {
	n := int64(*s)
	for _, u := range []struct {
		name string
		mult int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return fmt.Sprintf("%d%s", n/u.mult, u.name)
		}
	}
	return fmt.Sprint(n)
}

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}
