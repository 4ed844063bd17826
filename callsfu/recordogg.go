package callsfu

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"
)

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

// recoverOgg finishes an Ogg file an oggFile left unfinished: it cuts the
// file after its last complete page whose checksum holds and sets the
// end-of-stream flag on that page. It returns the Opus packets (fillers not
// counted), the file's size and the duration.
func recoverOgg(path string) (packets uint64, size int64, d time.Duration, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("callsfu: recover %s: %w", path, err)
	}
	defer f.Close()
	w := &oggFile{f: f}
	buf := make([]byte, oggHeaderSize+oggMaxSegments+oggMaxSegments*255)
	br := bufio.NewReaderSize(f, 64<<10)
	pages := 0
	for {
		pg, ok := readOggPage(br, buf)
		if !ok {
			break
		}
		if pages++; pages > 2 && !opusFiller(pg[oggHeaderSize+int(pg[26]):]) {
			packets++
		}
		w.page, w.pageOff = append(w.page[:0], pg...), w.bytes
		w.granule = binary.LittleEndian.Uint64(pg[6:])
		w.bytes += int64(len(pg))
	}
	if pages < 2 {
		return 0, 0, 0, fmt.Errorf("callsfu: recover %s: no Opus headers", path)
	}
	if err := f.Truncate(w.bytes); err != nil {
		return packets, w.bytes, 0, fmt.Errorf("callsfu: recover %s: %w", path, err)
	}
	// finish sets the flag, syncs and closes; Close again is harmless.
	if err := w.finish(); err != nil {
		return packets, w.bytes, 0, err
	}
	return packets, w.bytes, time.Duration(w.granule) * time.Second / opusRate, nil
}

// readOggPage reads the next page into buf and returns it, or false at the
// end of the file or at a page cut short or whose checksum fails.
func readOggPage(r io.Reader, buf []byte) ([]byte, bool) {
	h := buf[:oggHeaderSize]
	if _, err := io.ReadFull(r, h); err != nil || string(h[:4]) != "OggS" {
		return nil, false
	}
	segs := buf[oggHeaderSize : oggHeaderSize+int(h[26])]
	if _, err := io.ReadFull(r, segs); err != nil {
		return nil, false
	}
	n := 0
	for _, s := range segs {
		n += int(s)
	}
	end := oggHeaderSize + len(segs) + n
	if _, err := io.ReadFull(r, buf[oggHeaderSize+len(segs):end]); err != nil {
		return nil, false
	}
	pg := buf[:end]
	want := binary.LittleEndian.Uint32(pg[22:])
	binary.LittleEndian.PutUint32(pg[22:], 0)
	got := oggCRC(pg)
	binary.LittleEndian.PutUint32(pg[22:], want)
	return pg, got == want
}

// opusFiller reports whether an Opus packet is one of oggFile.fill's: code
// 3, a frame count and no frame data.
func opusFiller(pkt []byte) bool {
	return len(pkt) == 2 && pkt[0]&0x03 == 3
}
