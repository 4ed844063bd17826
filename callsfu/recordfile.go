package callsfu

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"github.com/pion/rtp/codecs"
)

// The recording's own container writers. pion's (pkg/media/ivfwriter and
// oggwriter) were the first choice and do not fit a recording that must
// survive a SIGKILL and stay in sync:
//
//   - ivfwriter writes a frame count of 900 into the header until Close, so
//     a killed recording claims 900 frames whatever it holds; its default
//     timebase turns milliseconds into PTS the wrong way round (only
//     WithDirectPTS is right); it fixes the size at 640×480 before the first
//     keyframe says what it is; and it appends every packet to the frame
//     being built without looking at sequence numbers or timestamps, so a
//     lost packet corrupts a frame or merges two.
//   - oggwriter advances the granule position only by the packets it is
//     given, so lost packets and muted stretches shorten the audio and move
//     it against the video; it trims a pre-skip of 80 ms that a stream
//     joined mid-encoding has no need of (shifting it once more); and on a
//     file it seeks once per packet and allocates each page.
//
// The writers below write each IVF frame and each Ogg page with one write(2)
// straight to the file, with nothing kept in the process once a frame or
// packet is complete, so a process killed at any point leaves every complete
// frame in the kernel's page cache, and from there in the file. Both formats
// are read front to back by players (and by pion's ivfreader and
// oggreader): the IVF frame count is advisory and refreshed every sync
// tick, and an Ogg stream needs no count at all, only the end-of-stream flag
// a clean finish sets. A write cut short by the kill leaves at most one
// partial frame or page at the end, which readers stop at.

// ivfHeaderSize and ivfFrameHeaderSize are the sizes of the IVF file and
// frame headers.
const (
	ivfHeaderSize      = 32
	ivfFrameHeaderSize = 12
)

// ivfFile writes one VP8 track's frames to an IVF file, assembling them from
// RTP payloads given in sequence order. A frame goes out when its last packet
// (the marker) arrives, with a PTS in the RTP clock (the header's timebase is
// 1/90,000 s). It starts at a keyframe and, after a lost packet, drops frames
// until the next keyframe, which it asks for, so every frame it writes
// decodes.
type ivfFile struct {
	f *os.File
	// keyframe asks the publisher for a keyframe (after a loss). It must
	// not block.
	keyframe func()

	frame   []byte // frame header room, then the frame being assembled
	inFrame bool   // frame holds the start of the frame of frameTS
	needKey bool   // drop frames until a keyframe starts
	frameTS uint32 // RTP timestamp of the frame being assembled

	ts       rtpClock
	frames   uint32 // frames written
	synced   uint32 // frame count last written into the header
	width    uint16 // of the first keyframe, written into the header
	height   uint16
	sizeSet  bool
	bytes    int64 // file size
	firstPTS int64 // -1 before the first frame
	lastPTS  int64
}

// newIVFFile creates the file at path (which must not exist) and writes its
// header.
func newIVFFile(path string, keyframe func()) (*ivfFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("callsfu: record: %w", err)
	}
	w := &ivfFile{
		f: f, keyframe: keyframe, needKey: true, firstPTS: -1,
		frame: make([]byte, ivfFrameHeaderSize, ivfFrameHeaderSize+64<<10),
	}
	var h [ivfHeaderSize]byte
	copy(h[0:], "DKIF")
	binary.LittleEndian.PutUint16(h[6:], ivfHeaderSize)
	copy(h[8:], "VP80")
	binary.LittleEndian.PutUint32(h[16:], 90000) // timebase denominator (rate)
	binary.LittleEndian.PutUint32(h[20:], 1)     // timebase numerator (scale)
	if _, err := f.Write(h[:]); err != nil {
		return nil, w.fail("write header", err)
	}
	w.bytes = ivfHeaderSize
	return w, nil
}

// fail closes the file after err and returns err wrapped with what failed.
func (w *ivfFile) fail(what string, err error) error {
	w.f.Close()
	return fmt.Errorf("callsfu: record %s: %s: %w", w.f.Name(), what, err)
}

// packet takes the next RTP packet of the track in sequence order.
func (w *ivfFile) packet(p *recPacket) error {
	var vp8 codecs.VP8Packet
	data, err := vp8.Unmarshal(p.payload())
	if err != nil || len(data) == 0 {
		return nil // not VP8, or a descriptor alone: nothing to keep
	}
	if vp8.S == 1 && vp8.PID == 0 {
		w.startFrame(p.ts, data)
	} else if w.inFrame && p.ts == w.frameTS {
		w.frame = append(w.frame, data...)
	} else {
		w.inFrame = false // a frame whose start was not kept
	}
	if !p.marker || !w.inFrame {
		return nil
	}
	w.inFrame = false
	return w.writeFrame()
}

// startFrame begins the frame of RTP timestamp ts with its first partition's
// start, unless a keyframe is awaited and this is not one.
func (w *ivfFile) startFrame(ts uint32, data []byte) {
	key := data[0]&0x01 == 0
	w.inFrame = key || !w.needKey
	if !w.inFrame {
		return
	}
	if key && !w.sizeSet && len(data) >= 10 {
		// The keyframe header after the 3-byte frame tag and the start
		// code: 14-bit width and height, each with 2 bits of scaling.
		w.width = binary.LittleEndian.Uint16(data[6:]) & 0x3fff
		w.height = binary.LittleEndian.Uint16(data[8:]) & 0x3fff
	}
	w.needKey = w.needKey && !key
	w.frameTS = ts
	w.frame = append(w.frame[:ivfFrameHeaderSize], data...)
}

// writeFrame writes the assembled frame with its header in one write.
func (w *ivfFile) writeFrame() error {
	pts := w.ts.extend(w.frameTS)
	if w.firstPTS < 0 {
		w.firstPTS = pts
	}
	pts = max(pts-w.firstPTS, w.lastPTS)
	w.lastPTS = pts
	binary.LittleEndian.PutUint32(w.frame[0:], uint32(len(w.frame)-ivfFrameHeaderSize))
	binary.LittleEndian.PutUint64(w.frame[4:], uint64(pts))
	if _, err := w.f.Write(w.frame); err != nil {
		return fmt.Errorf("callsfu: record %s: write frame: %w", w.f.Name(), err)
	}
	w.bytes += int64(len(w.frame))
	w.frames++
	w.frame = w.frame[:ivfFrameHeaderSize]
	return nil
}

// lost is told that packets before the next one were skipped: the frame
// being assembled is dropped, and so is every frame up to the next keyframe,
// which it requests.
func (w *ivfFile) lost() {
	w.inFrame, w.needKey = false, true
	if w.keyframe != nil {
		w.keyframe()
	}
}

// sync writes the frame count, and the size once known, into the header,
// where they are only hints for a player: an IVF file is read up to its end
// whatever the count says.
func (w *ivfFile) sync() error {
	if !w.sizeSet && w.width != 0 {
		var b [4]byte
		binary.LittleEndian.PutUint16(b[0:], w.width)
		binary.LittleEndian.PutUint16(b[2:], w.height)
		if _, err := w.f.WriteAt(b[:], 12); err != nil {
			return fmt.Errorf("callsfu: record %s: write size: %w", w.f.Name(), err)
		}
		w.sizeSet = true
	}
	if w.synced == w.frames {
		return nil
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], w.frames)
	if _, err := w.f.WriteAt(b[:], 24); err != nil {
		return fmt.Errorf("callsfu: record %s: write frame count: %w", w.f.Name(), err)
	}
	w.synced = w.frames
	return nil
}

// finish drops a frame left incomplete, writes the final header, syncs the
// file to disk and closes it.
func (w *ivfFile) finish() error {
	err := w.sync()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("callsfu: record %s: finish: %w", w.f.Name(), err)
	}
	return nil
}

// stats returns what was written: frames, bytes and the media's duration
// from the first frame to the last.
func (w *ivfFile) stats() (frames uint64, bytes int64, d time.Duration) {
	return uint64(w.frames), w.bytes, time.Duration(w.lastPTS) * time.Second / 90000
}

// rtpClock extends 32-bit RTP timestamps to 64 bits across their wrap,
// taking each one as the nearest to the one before.
type rtpClock struct {
	started bool
	last    uint32
	ext     int64
}

// extend returns ts extended.
func (c *rtpClock) extend(ts uint32) int64 {
	if !c.started {
		c.started, c.last, c.ext = true, ts, int64(ts)
		return c.ext
	}
	c.ext += int64(int32(ts - c.last))
	c.last = ts
	return c.ext
}

// The Ogg Opus constants (RFC 7845, RFC 3533).
const (
	oggHeaderSize  = 27
	oggMaxSegments = 255
	oggFlagBOS     = 0x02
	oggFlagEOS     = 0x04
	opusRate       = 48000 // Opus's RTP clock and granule rate
	// opusMaxFill is the longest stretch one filler packet covers: 120 ms,
	// the longest an Opus packet may last.
	opusMaxFill = opusRate * 120 / 1000
	// opusMaxGap is the longest gap in the timestamps that is filled with
	// silence; a longer jump is the publisher's clock restarting, not time
	// passing, and the stream simply goes on.
	opusMaxGap = opusRate * 600
	// oggSerial is each file's stream serial number: one stream a file.
	oggSerial = 0x676f6e65 // "gone"
)

// oggFile writes one Opus track as an Ogg Opus file (RFC 7845), one page per
// Opus packet, each written with one write(2). The granule position follows
// the RTP timestamps, not just the packets written: a gap (lost packets, a
// mute, a publisher's DTX) is filled with packets of zero-length frames,
// which a decoder plays as packet loss concealment fading to silence, so the
// audio keeps its place against the video.
type oggFile struct {
	f       *os.File
	page    []byte // the last page written, kept to set its EOS flag at finish
	pageOff int64  // its offset in the file
	pageNo  uint32 // the next page's sequence number

	ts      rtpClock
	started bool
	nextTS  int64  // extended RTP timestamp the next packet should have
	toc     byte   // the last packet's TOC byte, for fillers
	granule uint64 // samples (48 kHz) of every packet written
	packets uint64 // Opus packets written (fillers not counted)
	fillers uint64 // filler packets written
	bytes   int64
}

// newOggFile creates the file at path (which must not exist) and writes its
// two header pages: OpusHead (stereo output, the SFU negotiating Opus with
// two channels; no pre-skip, a stream joined mid-encoding having no encoder
// delay to trim) and OpusTags.
func newOggFile(path string) (*oggFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("callsfu: record: %w", err)
	}
	w := &oggFile{f: f, page: make([]byte, 0, oggHeaderSize+oggMaxSegments+rtpMaxPacket)}
	head := []byte("OpusHead\x01\x02\x00\x00\x80\xbb\x00\x00\x00\x00\x00") // v1, 2 ch, pre-skip 0, 48 kHz, gain 0, family 0
	if err := w.writePage(head, oggFlagBOS, 0); err != nil {
		f.Close()
		return nil, err
	}
	tags := []byte("OpusTags\x06\x00\x00\x00gonets\x00\x00\x00\x00")
	if err := w.writePage(tags, 0, 0); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// packet takes the next RTP packet of the track in sequence order: one Opus
// packet, after filler for any gap in the timestamps before it.
func (w *oggFile) packet(p *recPacket) error {
	op := p.payload()
	samples := opusSamples(op)
	if samples == 0 {
		return nil // not a valid Opus packet: a decoder could not place it
	}
	ts := w.ts.extend(p.ts)
	if w.started {
		if gap := ts - w.nextTS; gap > 0 && gap <= opusMaxGap {
			if err := w.fill(gap); err != nil {
				return err
			}
		}
	}
	w.started, w.toc = true, op[0]
	w.nextTS = ts + int64(samples)
	w.granule += uint64(samples)
	w.packets++
	return w.writePage(op, 0, w.granule)
}

// fill writes filler packets covering up to gap samples: packets of
// zero-length frames of the last packet's frame size, each at most 120 ms
// long (code 3, a frame count and no frame data).
func (w *oggFile) fill(gap int64) error {
	frame := int64(opusSamples([]byte{w.toc &^ 0x03}))
	if frame == 0 {
		return nil
	}
	var pkt [2]byte
	for gap >= frame {
		n := min(gap/frame, opusMaxFill/frame)
		pkt[0], pkt[1] = w.toc|0x03, byte(n)
		w.granule += uint64(n * frame)
		w.fillers++
		if err := w.writePage(pkt[:], 0, w.granule); err != nil {
			return err
		}
		gap -= n * frame
	}
	return nil
}

// writePage writes one page holding the single packet data.
func (w *oggFile) writePage(data []byte, flags byte, granule uint64) error {
	pg := w.page[:oggHeaderSize]
	copy(pg, "OggS")
	pg[4], pg[5] = 0, flags
	binary.LittleEndian.PutUint64(pg[6:], granule)
	binary.LittleEndian.PutUint32(pg[14:], oggSerial)
	binary.LittleEndian.PutUint32(pg[18:], w.pageNo)
	binary.LittleEndian.PutUint32(pg[22:], 0)
	segs := len(data)/255 + 1
	pg[26] = byte(segs)
	for range segs - 1 {
		pg = append(pg, 255)
	}
	pg = append(pg, byte(len(data)%255))
	pg = append(pg, data...)
	binary.LittleEndian.PutUint32(pg[22:], oggCRC(pg))
	if _, err := w.f.Write(pg); err != nil {
		return fmt.Errorf("callsfu: record %s: write page: %w", w.f.Name(), err)
	}
	w.page, w.pageOff = pg, w.bytes
	w.bytes += int64(len(pg))
	w.pageNo++
	return nil
}

// lost needs nothing: the gap in the timestamps is filled at the next packet.
func (w *oggFile) lost() {}

// sync has nothing to do: an Ogg stream carries no count.
func (w *oggFile) sync() error { return nil }

// finish marks the last page written as the end of the stream, syncs the
// file to disk and closes it.
func (w *oggFile) finish() error {
	pg := w.page
	pg[5] |= oggFlagEOS
	binary.LittleEndian.PutUint32(pg[22:], 0)
	binary.LittleEndian.PutUint32(pg[22:], oggCRC(pg))
	_, err := w.f.WriteAt(pg, w.pageOff)
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("callsfu: record %s: finish: %w", w.f.Name(), err)
	}
	return nil
}

// stats returns what was written: Opus packets (fillers not counted), bytes
// and the duration, gaps filled included.
func (w *oggFile) stats() (packets uint64, bytes int64, d time.Duration) {
	return w.packets, w.bytes, time.Duration(w.granule) * time.Second / opusRate
}

// opusSamples returns the number of 48 kHz samples an Opus packet decodes
// to, from its TOC byte and, for code 3, its frame count (RFC 6716 3.1), or 0
// for a packet that is not valid.
func opusSamples(pkt []byte) int {
	if len(pkt) == 0 {
		return 0
	}
	toc := pkt[0]
	var frame int // samples per frame
	switch config := toc >> 3; {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = [4]int{480, 960, 1920, 2880}[config&3]
	case config < 16: // hybrid: 10, 20 ms
		frame = [2]int{480, 960}[config&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = [4]int{120, 240, 480, 960}[config&3]
	}
	n := 1
	switch toc & 3 {
	case 1, 2:
		n = 2
	case 3:
		if len(pkt) < 2 {
			return 0
		}
		n = int(pkt[1] & 0x3f)
	}
	if total := frame * n; total > 0 && total <= opusMaxFill {
		return total
	}
	return 0
}

// oggCRCTable is the table of the Ogg page checksum: CRC-32 with polynomial
// 0x04c11db7, not reflected, starting at 0.
var oggCRCTable = func() (t [256]uint32) {
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return t
}()

// oggCRC returns the checksum of a page whose checksum field is zero.
func oggCRC(page []byte) uint32 {
	var c uint32
	for _, b := range page {
		c = c<<8 ^ oggCRCTable[byte(c>>24)^b]
	}
	return c
}
