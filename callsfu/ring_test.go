package callsfu

import (
	"bytes"
	"testing"
)

func TestExtendNear(t *testing.T) {
	const base = 1 << 32
	for _, c := range []struct {
		ref  uint64
		seq  uint16
		want uint64
	}{
		{base + 100, 101, base + 101},
		{base + 100, 90, base + 90},
		{base + 65535, 0, base + 65536},     // forward across the wrap
		{base + 65536, 65535, base + 65535}, // back across it
		{base + 65536 + 5, 65530, base + 65530},
		{base + 100, 100 + 32767, base + 100 + 32767},
		{base + 100, 100 + 32768, base + 100 - 32768}, // half a cycle: taken as behind
	} {
		if got := extendNear(c.ref, c.seq); got != c.want {
			t.Errorf("extendNear(%d, %d) = %d, want %d", c.ref-base, c.seq, int64(got-base), c.want-base)
		}
	}
}

func TestPacketRing(t *testing.T) {
	r := newPacketRing(10)
	if r.size() != 16 {
		t.Fatalf("size = %d, want 16 (10 rounded up)", r.size())
	}
	pkt := func(b byte) []byte { return bytes.Repeat([]byte{b}, 40) }
	first := r.extend(65530)
	if _, got := r.store(first, pkt(1)); got != stored {
		t.Fatalf("store first = %v", got)
	}
	for i := uint16(1); i < 20; i++ {
		ext := r.extend(65530 + i)
		if ext != first+uint64(i) {
			t.Fatalf("extend(%d) = %d, want %d", 65530+i, ext, first+uint64(i))
		}
		r.store(ext, pkt(byte(i+1)))
	}
	buf := make([]byte, rtpMaxPacket)
	for _, c := range []struct {
		name   string
		ext    uint64
		want   byte
		stored bool
	}{
		{"newest", first + 19, 20, true},
		{"oldest kept", first + 4, 5, true},
		{"overwritten", first + 3, 0, false},
		{"never stored", first + 20, 0, false},
	} {
		n, ok := r.copyOut(c.ext, buf)
		if ok != c.stored || (ok && !bytes.Equal(buf[:n], pkt(c.want))) {
			t.Errorf("%s: copyOut = %v, %v", c.name, buf[:n], ok)
		}
	}
	for _, c := range []struct {
		ext  uint64
		want storeResult
	}{
		{first + 19, duplicate},
		{first + 4, duplicate},
		{first + 3, tooLate},
		{first + 2, tooLate},
		{first + 25, stored},
	} {
		if _, got := r.store(c.ext, pkt(9)); got != c.want {
			t.Errorf("store(first+%d) = %v, want %v", c.ext-first, got, c.want)
		}
	}
}

func TestPacketRingResyncs(t *testing.T) {
	r := newPacketRing(16)
	pkt := []byte{1, 2, 3}
	var highest uint64
	for seq := uint16(40000); seq < 40100; seq++ {
		highest, _ = r.store(r.extend(seq), pkt)
	}
	// The publisher restarts at 30000: too late for the window, again and
	// again, until the ring takes it as a jump.
	seq := uint16(30000)
	for i := range ringResyncAfter {
		if _, got := r.store(r.extend(seq), pkt); got != tooLate {
			t.Fatalf("packet %d after the restart: %v, want tooLate", i, got)
		}
		seq++
	}
	ext, got := r.store(r.extend(seq), pkt)
	if got != stored || ext <= highest || uint16(ext) != seq {
		t.Fatalf("after %d late: store = %d, %v, want stored above %d with low bits %d", ringResyncAfter, ext, got, highest, seq)
	}
	if next, got := r.store(r.extend(seq+1), pkt); got != stored || next != ext+1 {
		t.Errorf("the packet after the resync: %d, %v, want %d, stored", next, got, ext+1)
	}
	// A late packet between live ones does not count toward a resync.
	for i := range 2 * ringResyncAfter {
		r.store(r.extend(seq-200), pkt)
		if _, got := r.store(r.extend(seq+2+uint16(i)), pkt); got != stored {
			t.Fatalf("live packet %d: %v", i, got)
		}
	}
}
