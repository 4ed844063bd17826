package callsfu

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/rtp"
)

// TestRecordQueueFull: a track whose queue is full drops and counts packets
// and returns at once; handing over a packet allocates nothing, full or not.
func TestRecordQueueFull(t *testing.T) {
	set := metrics.NewSet()
	r, err := newRecording(t.TempDir(), quiet(recordingOptions{VideoQueue: 8, Metrics: set}))
	if err != nil {
		t.Fatal(err)
	}
	src := newRecSource(t, true)
	tr, err := r.newTrackLocked(src.up, recordedTrack{Participant: "a", Track: "cam", Kind: "video"}, ".ivf")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.sink.finish()
	h := &rtp.Header{SequenceNumber: 1, Timestamp: 2, Marker: true}
	payload := bytes.Repeat([]byte{0x10}, 1200)
	done := make(chan struct{})
	go func() { // nobody drains the queue
		defer close(done)
		for range 20 {
			tr.WriteRTP(h, payload)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("WriteRTP blocked on a full queue")
	}
	if got := tr.dropped.Load(); got != 12 || len(tr.queue) != 8 {
		t.Errorf("dropped %d with %d queued, want 12 with 8", got, len(tr.queue))
	}
	if got := set.GetOrCreateCounter("gonets_calls_recording_dropped_packets_total").Get(); got != 12 {
		t.Errorf("dropped counter %d, want 12", got)
	}
	if p := <-tr.queue; p.seq != 1 || p.ts != 2 || !p.marker || !bytes.Equal(p.payload(), payload) {
		t.Errorf("queued packet %d %d %v, %d bytes", p.seq, p.ts, p.marker, len(p.buf))
	} else {
		tr.free <- p
	}
	if n := testing.AllocsPerRun(100, func() { tr.WriteRTP(h, payload) }); n != 0 {
		t.Errorf("WriteRTP on a full queue allocates %.1f", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		tr.free <- <-tr.queue // make room
		tr.WriteRTP(h, payload)
	}); n != 0 {
		t.Errorf("WriteRTP allocates %.1f", n)
	}
}

// TestRecordWriteAllocatesNothing: once warm, writing a packet to either
// file (reordering, frame assembly, the write) allocates nothing.
func TestRecordWriteAllocatesNothing(t *testing.T) {
	r, err := newRecording(t.TempDir(), quiet(recordingOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		video     bool
		kind, ext string
	}{{false, "audio", ".ogg"}, {true, "video", ".ivf"}} {
		src := newRecSource(t, c.video)
		tr, err := r.newTrackLocked(src.up, recordedTrack{Participant: "a", Track: c.kind, Kind: c.kind}, c.ext)
		if err != nil {
			t.Fatal(err)
		}
		tr.started = true // no manifest entry to update
		firstTS := src.ts
		var pkts [][]byte
		for range 2 * recKeyEvery {
			pkts = append(pkts, src.next()...)
		}
		span := src.ts - firstTS // the packets repeat, a span later each time
		var hdr rtp.Header
		i := 0
		put := func() {
			payload, err := parseRTP(&hdr, pkts[i%len(pkts)])
			if err != nil {
				t.Fatal(err)
			}
			hdr.SequenceNumber = uint16(i)
			hdr.Timestamp += uint32(i/len(pkts)) * span
			i++
			tr.WriteRTP(&hdr, payload)
			tr.push(<-tr.queue, 0)
		}
		for range len(pkts) {
			put()
		}
		if n := testing.AllocsPerRun(200, put); n != 0 {
			t.Errorf("%s: writing a packet allocates %.1f", c.kind, n)
		}
		frames, _, _ := tr.sink.stats()
		if err := tr.sink.finish(); err != nil || tr.err != nil || frames < 200/3 {
			t.Errorf("%s: %d written; %v, %v", c.kind, frames, err, tr.err)
		}
	}
}

// recSinkLog is a recSink that logs what it is given: the sequence numbers
// written, and -1 for each lost.
type recSinkLog struct{ got []int }

func (s *recSinkLog) packet(p *recPacket) error { s.got = append(s.got, int(p.seq)); return nil }
func (s *recSinkLog) lost()                     { s.got = append(s.got, -1) }
func (s *recSinkLog) sync() error               { return nil }
func (s *recSinkLog) finish() error             { return nil }
func (s *recSinkLog) stats() (uint64, int64, time.Duration) {
	return uint64(len(s.got)), 0, 0
}

// TestRecordReorder: packets are written in sequence order; a hole is
// waited for up to Hold, then skipped as lost; a packet too late or twice is
// dropped; a jump beyond the window skips at once.
func TestRecordReorder(t *testing.T) {
	const hold = 250 * time.Millisecond
	type step struct {
		seq  int           // -1: a tick
		at   time.Duration // when it is taken off the queue
		want []int         // what the sink has been given after it
	}
	f := func(name string, steps []step, lost, late uint64) {
		t.Helper()
		sink := &recSinkLog{}
		tr := &recTrack{
			r:    &recording{opts: recordingOptions{Hold: hold}.withDefaults()},
			sink: sink, free: make(chan *recPacket, 16), started: true,
		}
		for i, s := range steps {
			if s.seq < 0 {
				tr.tick(s.at)
			} else {
				tr.push(&recPacket{seq: uint16(s.seq)}, s.at)
			}
			if !slices.Equal(sink.got, s.want) {
				t.Errorf("%s: after step %d the sink has %v, want %v", name, i, sink.got, s.want)
				return
			}
		}
		if tr.rb.lost != lost || tr.rb.late != late {
			t.Errorf("%s: lost %d late %d, want %d and %d", name, tr.rb.lost, tr.rb.late, lost, late)
		}
	}
	f("in order across the wrap", []step{
		{65534, 0, []int{65534}}, {65535, 0, []int{65534, 65535}}, {0, 0, []int{65534, 65535, 0}},
	}, 0, 0)
	f("swapped", []step{
		{1, 0, []int{1}}, {3, 0, []int{1}}, {2, 10, []int{1, 2, 3}}, {4, 20, []int{1, 2, 3, 4}},
	}, 0, 0)
	f("hole skipped at a tick after hold", []step{
		{1, 0, []int{1}}, {3, 0, []int{1}}, {-1, hold - 1, []int{1}}, {-1, hold, []int{1, -1, 3}},
		{2, hold + 1, []int{1, -1, 3}}, {4, hold + 2, []int{1, -1, 3, 4}},
	}, 1, 1)
	f("hole skipped by a packet after hold", []step{
		{1, 0, []int{1}}, {4, 0, []int{1}}, {5, hold, []int{1, -1, 4, 5}},
	}, 2, 0)
	f("jump beyond the window", []step{
		{1, 0, []int{1}}, {3, 0, []int{1}}, {100, 1, []int{1, -1, 3, -1, 100}}, {101, 1, []int{1, -1, 3, -1, 100, 101}},
	}, 97, 0)
	f("duplicate", []step{
		{1, 0, []int{1}}, {3, 0, []int{1}}, {3, 0, []int{1}}, {1, 0, []int{1}}, {2, 0, []int{1, 2, 3}},
	}, 0, 2)
}

// BenchmarkRecordWriteRTP measures what recording costs the publisher's
// reader per packet: taking a buffer, copying a 1,200-byte payload, queueing
// it (and, outside what the reader pays, the buffer's return).
func BenchmarkRecordWriteRTP(b *testing.B) {
	r, err := newRecording(b.TempDir(), quiet(recordingOptions{}))
	if err != nil {
		b.Fatal(err)
	}
	tr, err := r.newTrackLocked(newUpTrack(upTrackConfig{kind: kindVideo}), recordedTrack{Participant: "a", Track: "cam", Kind: "video"}, ".ivf")
	if err != nil {
		b.Fatal(err)
	}
	defer tr.sink.finish()
	h := &rtp.Header{SequenceNumber: 1, Timestamp: 2}
	payload := make([]byte, 1200)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		tr.WriteRTP(h, payload)
		tr.free <- <-tr.queue
	}
}
