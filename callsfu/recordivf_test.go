package callsfu

import (
	"os"
	"path/filepath"
	"slices"
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

// recFuzzPackets turns fuzz input into packets: each is a flags byte (bit 0
// the marker, bits 1 to 7 how far its timestamp moves on, in units of
// step), a length byte and that many payload bytes.
func recFuzzPackets(data []byte, step uint32) []recPacket {
	var pkts []recPacket
	ts := uint32(0)
	for seq := uint16(0); len(data) >= 2; seq++ {
		flags, n := data[0], min(int(data[1]), len(data)-2)
		ts += uint32(flags>>1) * step
		pkts = append(pkts, recPacket{seq: seq, ts: ts, marker: flags&1 != 0, buf: data[2 : 2+n]})
		data = data[2+n:]
	}
	return pkts
}

// FuzzRecordIVF feeds a publisher's arbitrary VP8 payloads to an ivfFile,
// finishes it, and cuts it at an arbitrary point and recovers it: it never
// fails on input, and the file always reads back whole with pion's reader,
// its frames those it counted.
func FuzzRecordIVF(f *testing.F) {
	key := append([]byte{0x10}, recVP8Frame(true, 0)[:20]...)
	inter := append([]byte{0x10}, recVP8Frame(false, 1)[:20]...)
	f.Add(slices.Concat([]byte{1, byte(len(key))}, key, []byte{7, byte(len(inter))}, inter), uint16(40))
	f.Add(slices.Concat([]byte{0, byte(len(key))}, key, []byte{1, 3, 0, 1, 2}, []byte{5, 0}), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		path := filepath.Join(t.TempDir(), "v.ivf")
		w, err := newIVFFile(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range recFuzzPackets(data, recFrameTicks) {
			if err := w.packet(&p); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.finish(); err != nil {
			t.Fatal(err)
		}
		b := readFile(t, path)
		if _, frames, _, err := readIVF(t, b); err != nil || len(frames) != int(w.frames) {
			t.Fatalf("%d frames read of %d written: %v", len(frames), w.frames, err)
		}
		if int(cut) >= len(b)-ivfHeaderSize {
			return
		}
		if err := os.Truncate(path, int64(len(b)-int(cut))); err != nil {
			t.Fatal(err)
		}
		n, _, _, err := recoverIVF(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, frames, _, err := readIVF(t, readFile(t, path)); err != nil || len(frames) != int(n) {
			t.Fatalf("after a cut: %d frames read of %d recovered: %v", len(frames), n, err)
		}
	})
}
