package media

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

const (
	crashSize  = 8 << 20
	crashChunk = 256 << 10
)

// TestMain runs the crash child when asked, and otherwise the tests,
// checking for leaked goroutines.
func TestMain(m *testing.M) {
	if dir := os.Getenv("GONETS_MEDIA_CRASH_CHILD"); dir != "" {
		crashChild(dir)
		return
	}
	goleak.VerifyTestMain(m)
}

// crashChild uploads chunks forever, printing the upload id and then each
// acknowledged chunk's start, until it is killed.
func crashChild(dir string) {
	s, err := Open(Options{Dir: dir, Log: quietLog()})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	data := randBytes(13, crashSize)
	up, err := s.CreateUpload(1, crashSize, Meta{Name: "crash"})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("id", up.ID)
	for i := 0; ; i++ {
		off := int64(i*7%(crashSize/crashChunk)) * crashChunk // a scattered order
		if _, err := s.WriteChunk(context.Background(), 1, up.ID, off, bytes.NewReader(data[off:off+crashChunk]), crashChunk); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("ack", off)
	}
}

// TestUploadSurvivesKill kills a child process in the middle of a
// chunked upload; every chunk it acknowledged is in the reopened upload,
// and the upload completes with the right hash.
func TestUploadSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GONETS_MEDIA_CRASH_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var id string
	var acked []int64
	for sc.Scan() && len(acked) < 10 {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "id":
			id = f[1]
		case len(f) == 2 && f[0] == "ack":
			off, _ := strconv.ParseInt(f[1], 10, 64)
			acked = append(acked, off)
		default:
			t.Fatalf("child: %s", sc.Text())
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if id == "" || len(acked) < 10 {
		t.Fatalf("child gave id %q and %d acks", id, len(acked))
	}

	s := openStore(t, dir, newClock(), Options{})
	up, err := s.Upload(1, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range acked {
		if !contains(up.Received, Range{off, off + crashChunk}) {
			t.Fatalf("acknowledged chunk at %d lost; received %v", off, up.Received)
		}
	}
	data := randBytes(13, crashSize)
	for off := int64(0); off < crashSize; off += crashChunk {
		if !contains(up.Received, Range{off, off + crashChunk}) {
			writeChunk(t, s, 1, id, data, off, off+crashChunk)
		}
	}
	info, err := s.Complete(t.Context(), 1, id)
	if err != nil || info.SHA256 != sha(data) {
		t.Fatalf("complete: %+v, %v", info, err)
	}
}
