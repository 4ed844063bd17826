package callsfu

import (
	"path/filepath"
	"testing"
)

// TestRecordIVFBrokenFrame: a frame whose last packet never comes, with no
// hole in the sequence numbers to say so (a new frame starts, or a packet of
// another timestamp comes), is dropped like a loss: the frames after it wait
// for a keyframe, which is requested, and a keyframe cut short does not end
// the wait.
func TestRecordIVFBrokenFrame(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.ivf")
	requests := 0
	w, err := newIVFFile(path, func() { requests++ })
	if err != nil {
		t.Fatal(err)
	}
	ts := uint32(0)
	frame := func(key bool, n int, packets ...bool) []byte { // packets: which are sent
		t.Helper()
		f := recVP8Frame(key, n)
		half := len(f) / 2
		parts := [][]byte{append([]byte{0x10}, f[:half]...), append([]byte{0x00}, f[half:]...)}
		for i, send := range packets {
			if send {
				p := &recPacket{ts: ts, marker: i == len(parts)-1, buf: parts[i]}
				if err := w.packet(p); err != nil {
					t.Fatal(err)
				}
			}
		}
		ts += recFrameTicks
		return f
	}
	var want [][]byte
	want = append(want, frame(true, 0, true, true), frame(false, 1, true, true))
	frame(false, 2, true, false)                                            // its end never comes
	frame(false, 3, true, true)                                             // starts while 2 is open: 2 is dropped, 3 waits for a keyframe
	frame(true, 4, true, false)                                             // a keyframe cut short
	w.packet(&recPacket{ts: ts + 1, marker: true, buf: []byte{0x00, 0xff}}) // a packet of no frame
	frame(false, 5, true, true)                                             // still waiting
	want = append(want, frame(true, 6, true, true), frame(false, 7, true, true))
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	if requests == 0 {
		t.Error("no keyframe requested")
	}
	h, frames, pts, err := readIVF(t, readFile(t, path))
	if err != nil || h.NumFrames != 7*recFrameTicks*4/3 || len(frames) != len(want) {
		t.Fatalf("%d frames (length %d), want %d; %v", len(frames), h.NumFrames, len(want), err)
	}
	for i, src := range []int{0, 1, 6, 7} {
		if string(frames[i]) != string(want[i]) || pts[i] != uint64(src*recFrameTicks) {
			t.Errorf("frame %d: pts %d, want the frame sent as %d", i, pts[i], src)
		}
	}
}
