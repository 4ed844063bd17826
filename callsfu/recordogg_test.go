package callsfu

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRecordOpusSamples checks the packet durations the granule positions come
// from (RFC 6716 3.1).
func TestRecordOpusSamples(t *testing.T) {
	for _, c := range []struct {
		pkt  []byte
		want int
	}{
		{[]byte{1 << 3}, 960},               // SILK NB 20 ms
		{[]byte{3 << 3}, 2880},              // SILK NB 60 ms
		{[]byte{3<<3 | 1, 0}, 5760},         // two 60 ms frames
		{[]byte{12 << 3}, 480},              // hybrid SWB 10 ms
		{[]byte{16 << 3}, 120},              // CELT 2.5 ms
		{[]byte{31<<3 | 3, 6}, 5760},        // code 3: six 20 ms frames
		{[]byte{31<<3 | 3, 7}, 0},           // 140 ms: too long
		{[]byte{31<<3 | 3, 0}, 0},           // no frames
		{[]byte{31<<3 | 3}, 0},              // code 3 without its count
		{nil, 0},                            // nothing
		{[]byte{15<<3 | 4 | 2, 1, 2}, 1920}, // stereo, two frames of different sizes
	} {
		if got := opusSamples(c.pkt); got != c.want {
			t.Errorf("opusSamples(%x) = %d, want %d", c.pkt, got, c.want)
		}
	}
}

// FuzzRecordOgg feeds a publisher's arbitrary Opus payloads to an oggFile,
// finishes it, and cuts it at an arbitrary point and recovers it: it never
// fails on input, and the file always reads back whole with pion's reader
// (checksums checked), its granule positions never going back.
func FuzzRecordOgg(f *testing.F) {
	f.Add([]byte{2, 3, recOpusTOC, 1, 2, 2, 1, recOpusTOC, 8, 2, recOpusTOC | 3, 6}, uint16(10))
	f.Add([]byte{0, 0, 2, 1, 0xff}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		path := filepath.Join(t.TempDir(), "a.ogg")
		w, err := newOggFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range recFuzzPackets(data, 480) {
			if err := w.packet(&p); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.finish(); err != nil {
			t.Fatal(err)
		}
		// check reads the file back and returns its packets, fillers and
		// packets like them (code 3, no data) not counted.
		check := func(what string, b []byte, pagesWant uint64) uint64 {
			t.Helper()
			_, pages, err := readOgg(t, b)
			var packets uint64
			for i, p := range pages {
				if i > 0 && p.granule < pages[i-1].granule {
					t.Fatalf("%s: granule goes back at page %d", what, i)
				}
				if !opusFiller(p.payload) {
					packets++
				}
			}
			if err != nil || uint64(len(pages)) != pagesWant || pages != nil && pages[len(pages)-1].flags&oggFlagEOS == 0 {
				t.Fatalf("%s: %d pages read of %d, %v", what, len(pages), pagesWant, err)
			}
			return packets
		}
		b := readFile(t, path)
		check("finished", b, w.packets+w.fillers)
		if int(cut) >= len(b) {
			return
		}
		if err := os.Truncate(path, int64(len(b)-int(cut))); err != nil {
			t.Fatal(err)
		}
		const headers = 47 + 50 // OpusHead and OpusTags pages
		n, size, _, err := recoverOgg(path)
		if err != nil {
			if len(b)-int(cut) < headers {
				return // nothing to recover
			}
			t.Fatal(err)
		}
		after := readFile(t, path)
		pages := uint64(0)
		for off := headers; off < len(after); off += oggPageLen(after[off:]) {
			pages++
		}
		if got := check("after a cut", after, pages); got != n || size != int64(len(after)) {
			t.Fatalf("after a cut: %d packets of %d recovered, %d bytes of %d", got, n, len(after), size)
		}
	})
}
