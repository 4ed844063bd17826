package callsfu

import "testing"

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
