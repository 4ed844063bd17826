package callsfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// reorderWindow is how many sequence numbers ahead of the next one expected a
// recorded track holds packets for while a hole before them may still be
// filled by a retransmission. A packet further ahead skips the hole at once.
const reorderWindow = 64

// recPacket is one packet on its way from a publisher's reader to the file:
// the fields of the header the writers need, and the payload copied into buf,
// a preallocated buffer of rtpMaxPacket bytes.
type recPacket struct {
	seq    uint16
	ts     uint32
	marker bool
	at     time.Duration // when the track's goroutine took it (since the track's start)
	buf    []byte
}

// payload returns the packet's RTP payload.
func (p *recPacket) payload() []byte { return p.buf }

// recSink is a track's file: ivfFile (recordivf.go) or oggFile
// (recordogg.go), the recording's own container writers. pion's
// (pkg/media/ivfwriter and oggwriter) were the first choice and do not fit a
// recording that must survive a SIGKILL and stay in sync:
//
//   - ivfwriter writes a length of 900 into the header until Close, so a
//     killed recording claims 900 frames whatever it holds; its default
//     PTS (milliseconds times the timebase's numerator over its denominator)
//     does not match the timebase it writes unless WithDirectPTS is given;
//     it fixes the size at 640×480 before the first keyframe says what it
//     is; and it appends every packet to the frame being built without
//     looking at sequence numbers or timestamps, so a lost packet corrupts a
//     frame or merges two.
//   - oggwriter advances the granule position only by the packets it is
//     given, so lost packets and muted stretches shorten the audio and move
//     it against the video; it trims a pre-skip of 80 ms that a stream
//     joined mid-encoding has no need of (shifting it once more); and on a
//     file it seeks once per packet and allocates each page.
//
// ivfFile and oggFile write each IVF frame and each Ogg page with one
// write(2) straight to the file, keeping nothing in the process once a frame
// or packet is complete, so a process killed at any point leaves every
// complete frame in the kernel's page cache, and from there in the file. Both
// formats are read front to back by players (and by pion's ivfreader and
// oggreader): the IVF length is advisory and refreshed every sync tick,
// and an Ogg stream needs no count at all, only the end-of-stream flag a
// clean finish sets. A write cut short by the kill leaves at most one partial
// frame or page at the end, which readers stop at.
type recSink interface {
	// packet takes the next packet in sequence order.
	packet(p *recPacket) error
	// lost says packets before the next one given were skipped.
	lost()
	// sync brings the file's header up to date.
	sync() error
	// finish finalises, syncs and closes the file.
	finish() error
	// stats returns the frames (or packets) and bytes written, and the
	// media's duration.
	stats() (frames uint64, bytes int64, d time.Duration)
}

// recTrack is one recorded track: the rtpWriter its downTrack writes to, the
// queue behind it and the goroutine that drains it into the file.
type recTrack struct {
	r     *recording
	up    *upTrack
	index int // in r.tracks and r.sum.Tracks

	// down is the track's subscription, set by attach; ended is set by
	// end. Each is stored before the other is loaded, so whichever of
	// attach and end comes second unsubscribes.
	down  atomic.Pointer[downTrack]
	ended atomic.Bool

	// free holds the buffers not in use, queue those written by the
	// publisher's reader and not yet taken by the goroutine. Both have
	// room for every buffer, so neither send ever blocks.
	free, queue chan *recPacket
	dropped     atomic.Uint64

	stop     chan struct{} // closed by end
	stopOnce sync.Once
	done     chan struct{} // closed by the goroutine when the file is finished

	// Owned by the goroutine (info's copy in r.sum is under r.mu).
	info    recordedTrack
	sink    recSink
	err     error // the first write error; nothing is written after it
	started bool  // a frame was written
	epoch   time.Time
	rb      reorderBuffer
}

// reorderBuffer puts a track's packets back in sequence order, holding those
// behind a hole for up to Hold.
type reorderBuffer struct {
	slots  [reorderWindow]*recPacket // by sequence number modulo the window
	next   uint16                    // the sequence number expected next
	began  bool                      // next is set
	held   int                       // packets in slots
	oldest time.Duration             // the earliest at of the packets held
	lost   uint64                    // packets skipped
	late   uint64                    // packets that came after their place was passed
}

// WriteRTP hands a packet of the track to its goroutine: it
// copies the payload and the header fields needed into a free buffer and
// queues it, or drops it if there is no free buffer. It never blocks and
// never allocates. It is the downTrack's rtpWriter, called on the
// publisher's reader goroutine.
func (t *recTrack) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	var p *recPacket
	select {
	case p = <-t.free:
	default:
		t.dropped.Add(1)
		if t.r.dropped != nil {
			t.r.dropped.Inc()
		}
		return 0, nil
	}
	p.seq, p.ts, p.marker = h.SequenceNumber, h.Timestamp, h.Marker
	p.buf = append(p.buf[:0], payload...)
	t.queue <- p
	return len(payload), nil
}

// keyframe asks the publisher for a keyframe of the layer recorded, through
// the track's throttle.
func (t *recTrack) keyframe() {
	if d := t.down.Load(); d != nil {
		d.keyframeRequest()
	}
}

// attach sets the track's subscription, unsubscribing it at once if the
// track has ended meanwhile (a stop while addTrack subscribed).
func (t *recTrack) attach(d *downTrack) {
	t.down.Store(d)
	if t.ended.Load() {
		t.up.unsubscribe(d)
	}
}

// end stops the track and waits for its file to be finished (halt). It
// returns the track's write error.
func (t *recTrack) end() error {
	t.halt()
	<-t.done
	return t.err
}

// halt stops the track without waiting: no packet is taken after it, and
// the goroutine writes those queued, finishes the file and closes done.
func (t *recTrack) halt() {
	t.stopOnce.Do(func() {
		t.ended.Store(true)
		if d := t.down.Load(); d != nil {
			t.up.unsubscribe(d)
		}
		close(t.stop)
	})
}

// run is the track's goroutine: it writes the packets queued, in sequence
// order, and brings the file's header up to date every SyncInterval, until
// end; then it writes what is queued and held and finishes the file.
func (t *recTrack) run() {
	defer close(t.done)
	t.epoch = time.Now()
	tick := time.NewTicker(t.r.opts.SyncInterval)
	defer tick.Stop()
	for {
		select {
		case p := <-t.queue:
			t.push(p, time.Since(t.epoch))
		case <-tick.C:
			t.tick(time.Since(t.epoch))
		case <-t.stop:
			t.finish()
			return
		}
	}
}

// finish writes what is queued and held, finishes the file and reports the
// track's end to the recording.
func (t *recTrack) finish() {
	for drained := false; !drained; {
		select {
		case p := <-t.queue:
			t.push(p, time.Since(t.epoch))
		default:
			drained = true
		}
	}
	t.skipHeld()
	if err := t.sink.finish(); err != nil && t.err == nil {
		t.err = err
	}
	if t.err != nil {
		t.info.Error = t.err.Error()
		t.r.log.Error("recording track", "participant", t.info.Participant, "track", t.info.Track, "err", t.err)
	}
	frames, bytes, d := t.sink.stats()
	t.info.Frames, t.info.Bytes, t.info.DurationMS = frames, bytes, d.Milliseconds()
	t.info.Dropped, t.info.Lost, t.info.Late = t.dropped.Load(), t.rb.lost, t.rb.late
	t.info.Ended = time.Now().UTC()
	t.r.trackEvent(t, t.info)
}

// push takes packet p, taken off the queue at now: it is written if it is
// the next in sequence, held if it is ahead of a hole, and dropped if its
// place was passed. A packet a whole window ahead skips the holes before it.
// Packets held for Hold skip theirs too.
func (t *recTrack) push(p *recPacket, now time.Duration) {
	p.at = now
	rb := &t.rb
	if !rb.began {
		rb.began, rb.next = true, p.seq
	}
	d := int16(p.seq - rb.next)
	if d < 0 {
		rb.late++
		t.free <- p
		return
	}
	if d >= reorderWindow {
		t.skipHeld()
		if int16(p.seq-rb.next) >= reorderWindow {
			t.skipTo(p.seq)
		}
	}
	if rb.slots[p.seq%reorderWindow] != nil {
		rb.late++ // a duplicate: its place is taken
		t.free <- p
		return
	}
	rb.slots[p.seq%reorderWindow] = p
	rb.held++
	t.drain()
	if rb.held > 0 && now-rb.oldest >= t.r.opts.Hold {
		t.skipHeld()
	}
}

// tick skips the holes packets have waited behind for Hold and brings the
// file's header up to date.
func (t *recTrack) tick(now time.Duration) {
	if t.rb.held > 0 && now-t.rb.oldest >= t.r.opts.Hold {
		t.skipHeld()
	}
	if t.err == nil {
		if err := t.sink.sync(); err != nil {
			t.err = err
		}
	}
}

// drain writes the packets held from next on, in order, and notes when the
// oldest still held (behind a hole) came.
func (t *recTrack) drain() {
	rb := &t.rb
	for {
		i := rb.next % reorderWindow
		p := rb.slots[i]
		if p == nil {
			break
		}
		rb.slots[i] = nil
		rb.held--
		rb.next++
		t.write(p)
	}
	if rb.held == 0 {
		return
	}
	rb.oldest = 1<<63 - 1
	for _, p := range rb.slots {
		if p != nil {
			rb.oldest = min(rb.oldest, p.at)
		}
	}
}

// skipHeld writes every packet held, skipping the holes between them.
func (t *recTrack) skipHeld() {
	rb := &t.rb
	for rb.held > 0 {
		seq := rb.next
		for rb.slots[seq%reorderWindow] == nil {
			seq++
		}
		t.skipTo(seq)
		t.drain()
	}
}

// skipTo takes the packets from next up to seq as lost.
func (t *recTrack) skipTo(seq uint16) {
	n := uint64(seq - t.rb.next)
	if n == 0 {
		return
	}
	t.rb.lost += n
	if t.r.lost != nil {
		t.r.lost.Add(int(n))
	}
	t.rb.next = seq
	t.sink.lost()
}

// write gives p to the file, and its buffer back to the free list. The
// first frame written is recorded in the manifest.
func (t *recTrack) write(p *recPacket) {
	if t.err == nil {
		if err := t.sink.packet(p); err != nil {
			t.err = err
		}
	}
	t.free <- p
	if t.started || t.err != nil {
		return
	}
	if frames, _, _ := t.sink.stats(); frames > 0 {
		t.started = true
		t.info.FirstFrame = time.Now().UTC()
		t.r.trackEvent(t, t.info)
	}
}
