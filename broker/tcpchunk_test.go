package broker

import (
	"encoding/binary"
	"testing"
)

func TestChunkEnd(t *testing.T) {
	frame := func(n int) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(n))
		return append(b, make([]byte, n)...)
	}
	var buf []byte
	for range 10 {
		buf = append(buf, frame(996)...) // 1,000 bytes each
	}
	for _, tc := range []struct{ max, want int }{
		{4000, 4000}, {4500, 4000}, {999, 1000}, {100000, 10000},
	} {
		if got := chunkEnd(buf, tc.max); got != tc.want {
			t.Errorf("chunkEnd(10 frames of 1000, %d) = %d, want %d", tc.max, got, tc.want)
		}
	}
	big := append(frame(50000), frame(10)...)
	if got := chunkEnd(big, pushChunk); got != 50004 {
		t.Errorf("a frame over the chunk: %d, want it whole (50004)", got)
	}
	if got := chunkEnd([]byte{1, 2}, pushChunk); got != 2 {
		t.Errorf("not frames: %d, want all 2 bytes", got)
	}
}
