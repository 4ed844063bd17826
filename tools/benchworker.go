package tools

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/gonets/gonets/bench"
)

// runBenchWorker is one load generator process of `gonets bench --procs
// N`, which starts it: it takes requests on stdin and answers on stdout
// (bench.Worker) until stdin ends. Not for people to run.
func runBenchWorker(args []string, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: gonets bench-worker   (started by gonets bench --procs N; it speaks JSON lines on stdin and stdout)")
		return 2
	}
	if err := bench.Worker(context.Background(), os.Stdin, stdout); err != nil {
		fmt.Fprintf(stderr, "gonets bench-worker: %v\n", err)
		return 1
	}
	return 0
}
