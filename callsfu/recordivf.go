package callsfu

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pion/rtp/codecs"
)

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
	needKey bool   // drop frames until a keyframe is written
	frameTS uint32 // RTP timestamp of the frame being assembled

	ts       rtpClock
	frames   uint32 // frames written
	synced   uint32 // length last written into the header (lengthField)
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
	switch {
	case vp8.S == 1 && vp8.PID == 0:
		w.startFrame(p.ts, data)
	case w.inFrame && p.ts == w.frameTS:
		w.frame = append(w.frame, data...)
	case w.inFrame:
		w.lost() // the frame's end never came: the stream broke
	}
	if !p.marker || !w.inFrame {
		return nil
	}
	w.inFrame = false
	return w.writeFrame()
}

// startFrame begins the frame of RTP timestamp ts with its first partition's
// start, unless a keyframe is awaited and this is not one. A frame still
// being assembled never got its end, and is dropped as a loss.
func (w *ivfFile) startFrame(ts uint32, data []byte) {
	if w.inFrame {
		w.lost()
	}
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
	w.needKey = false // only a keyframe was started while it was set
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

// sync writes the length, and the size once known, into the header, where
// they are only hints for a player: an IVF file is read up to its end
// whatever the length says.
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
	n := w.lengthField()
	if w.synced == n {
		return nil
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], n)
	if _, err := w.f.WriteAt(b[:], 24); err != nil {
		return fmt.Errorf("callsfu: record %s: write length: %w", w.f.Name(), err)
	}
	w.synced = n
	return nil
}

// lengthField returns the header's length field for the frames written: the
// duration in the timebase's ticks, the last frame's PTS plus the average
// frame interval, as ffmpeg's IVF muxer writes it and its demuxer reads it
// (as the stream's duration). libvpx calls the field a frame count, which it
// is when the timebase is one frame; with the RTP clock's 1/90,000 a frame
// count would tell ffmpeg a 90-frame recording lasts 1 ms. 0 before the
// second frame: unknown.
func (w *ivfFile) lengthField() uint32 {
	if w.frames < 2 {
		return 0
	}
	return uint32(uint64(w.lastPTS) * uint64(w.frames) / uint64(w.frames-1))
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

// recoverIVF finishes an IVF file an ivfFile left unfinished: it cuts the
// file after its last complete frame, writes the length into the header
// and, if the size was never written, the first keyframe's. It returns the
// frames, the file's size and the duration from the first frame to the last.
func recoverIVF(path string) (frames uint64, size int64, d time.Duration, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("callsfu: recover %s: %w", path, err)
	}
	defer f.Close()
	var h [ivfHeaderSize]byte
	if _, err := io.ReadFull(f, h[:]); err != nil || string(h[:4]) != "DKIF" {
		return 0, 0, 0, fmt.Errorf("callsfu: recover %s: no IVF header", path)
	}
	off, lastPTS := int64(ivfHeaderSize), uint64(0)
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		var fh [ivfFrameHeaderSize]byte
		if _, err := io.ReadFull(br, fh[:]); err != nil {
			break
		}
		n := int(binary.LittleEndian.Uint32(fh[:]))
		if got, err := br.Discard(n); err != nil || got < n {
			break
		}
		frames++
		lastPTS = binary.LittleEndian.Uint64(fh[4:])
		off += ivfFrameHeaderSize + int64(n)
	}
	w := &ivfFile{f: f, frames: uint32(frames), lastPTS: int64(lastPTS), synced: binary.LittleEndian.Uint32(h[24:])}
	w.sizeSet = binary.LittleEndian.Uint16(h[12:]) != 0
	if !w.sizeSet && frames > 0 {
		var key [10]byte // the first frame is a keyframe: its size follows the start code
		if _, err := f.ReadAt(key[:], ivfHeaderSize+ivfFrameHeaderSize); err == nil {
			w.width = binary.LittleEndian.Uint16(key[6:]) & 0x3fff
			w.height = binary.LittleEndian.Uint16(key[8:]) & 0x3fff
		}
	}
	if err := f.Truncate(off); err != nil {
		return frames, off, 0, fmt.Errorf("callsfu: recover %s: %w", path, err)
	}
	if err := w.sync(); err != nil {
		return frames, off, 0, err
	}
	if err := f.Sync(); err != nil {
		return frames, off, 0, fmt.Errorf("callsfu: recover %s: %w", path, err)
	}
	return frames, off, time.Duration(lastPTS) * time.Second / 90000, nil
}
