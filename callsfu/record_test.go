package callsfu

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
	"go.uber.org/goleak"
)

// The synthetic media of the recording tests: VP8 at 30 frames a second, a
// keyframe every recKeyEvery frames, each frame in recFramePackets packets;
// Opus in 20 ms packets.
const (
	recWidth, recHeight = 320, 240
	recFramePackets     = 3
	recKeyEvery         = 30
	recFrameTicks       = 90000 / 30
	recOpusTicks        = 960
	recOpusTOC          = 15 << 3 // hybrid fullband, 20 ms, mono, one frame
)

// recSource makes one track's synthetic RTP packets and feeds them to an
// upTrack, keeping what a recording of it should hold.
type recSource struct {
	t      *testing.T
	up     *upTrack
	video  bool
	seq    uint16
	ts     uint32
	n      int      // frames (video) or packets (audio) made
	frames [][]byte // each VP8 frame or Opus packet made, in order
}

// newRecSource returns a source feeding a new upTrack of VP8 video or Opus
// audio.
func newRecSource(t *testing.T, video bool) *recSource {
	cfg := upTrackConfig{kind: kindAudio, mimeType: webrtc.MimeTypeOpus}
	if video {
		cfg = upTrackConfig{kind: kindVideo, mimeType: webrtc.MimeTypeVP8, onPLI: func(int) {}}
	}
	return &recSource{t: t, up: newUpTrack(cfg), video: video, seq: 65500, ts: 4294960000}
}

// next makes the next frame or packet and returns its RTP packets.
func (s *recSource) next() [][]byte {
	defer func() { s.n++ }()
	if !s.video {
		op := append([]byte{recOpusTOC}, bytes.Repeat([]byte{byte(s.n)}, 40+s.n%7)...)
		s.frames = append(s.frames, op)
		s.ts += recOpusTicks
		return [][]byte{s.marshal(op, true)}
	}
	frame := recVP8Frame(s.n%recKeyEvery == 0, s.n)
	s.frames = append(s.frames, frame)
	var pkts [][]byte
	chunk := (len(frame) + recFramePackets - 1) / recFramePackets
	for i := 0; i < len(frame); i += chunk {
		desc := byte(0x00)
		if i == 0 {
			desc = 0x10 // S=1, partition 0
		}
		end := min(i+chunk, len(frame))
		pkts = append(pkts, s.marshal(append([]byte{desc}, frame[i:end]...), end == len(frame)))
	}
	s.ts += recFrameTicks
	return pkts
}

// marshal returns an RTP packet of the source's stream.
func (s *recSource) marshal(payload []byte, marker bool) []byte {
	pt := uint8(111)
	if s.video {
		pt = 96
	}
	b, err := (&rtp.Packet{Header: rtp.Header{
		Version: 2, PayloadType: pt, SequenceNumber: s.seq, Timestamp: s.ts, SSRC: 1234, Marker: marker,
	}, Payload: payload}).Marshal()
	if err != nil {
		s.t.Fatal(err)
	}
	s.seq++
	return b
}

// feed makes n frames or packets and gives them to the upTrack.
func (s *recSource) feed(n int) {
	for range n {
		for _, p := range s.next() {
			s.receive(p)
		}
	}
}

// receive gives one packet to the upTrack.
func (s *recSource) receive(pkt []byte) {
	if err := s.up.receive(0, pkt, time.Now()); err != nil {
		s.t.Fatal(err)
	}
}

// recVP8Frame returns a VP8 frame: its frame tag (bit 0 clear for a
// keyframe), for a keyframe the start code and size, then bytes naming it.
func recVP8Frame(key bool, n int) []byte {
	f := []byte{0x11, 0x02, 0x00}
	if key {
		f = []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0, 0, 0, 0}
		binary.LittleEndian.PutUint16(f[6:], recWidth)
		binary.LittleEndian.PutUint16(f[8:], recHeight)
	}
	return append(f, bytes.Repeat([]byte{byte(n), byte(n >> 8)}, 500+n%50)...)
}

// quiet returns o with a logger that discards.
func quiet(o recordingOptions) recordingOptions {
	o.Logger = slog.New(slog.DiscardHandler)
	return o
}

// checkRecordLeaks fails t if a goroutine it started outlives it.
func checkRecordLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// readIVF returns an IVF file's header and frames with their PTS (in the
// header's timebase), read with pion's ivfreader up to its end, and the
// error it stopped at if that was not the end of the file.
func readIVF(t *testing.T, data []byte) (*ivfreader.IVFFileHeader, [][]byte, []uint64, error) {
	t.Helper()
	r, h, err := ivfreader.NewWith(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("ivf header: %v", err)
	}
	var frames [][]byte
	var pts []uint64
	for {
		f, fh, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return h, frames, pts, nil
		}
		if err != nil {
			return h, frames, pts, err
		}
		frames = append(frames, f)
		// pion's reader scales the PTS by denominator/numerator; undo it.
		pts = append(pts, fh.Timestamp*uint64(h.TimebaseNumerator)/uint64(h.TimebaseDenominator))
	}
}

// oggPage is a page as read back.
type oggPage struct {
	payload []byte
	granule uint64
	flags   byte
}

// readOgg returns an Ogg Opus file's ID header and its pages after the two
// header pages, read with pion's oggreader (checksums checked) up to its
// end, and the error it stopped at if that was not the end of the file. The
// pages' flags, which the reader does not expose, are read from the bytes.
func readOgg(t *testing.T, data []byte) (*oggreader.OggHeader, []oggPage, error) {
	t.Helper()
	r, h, err := oggreader.NewWith(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("ogg header: %v", err)
	}
	if payload, _, err := r.ParseNextPage(); err != nil || !bytes.HasPrefix(payload, []byte("OpusTags")) {
		t.Fatalf("ogg second page: %q, %v", payload, err)
	}
	var pages []oggPage
	off := 0
	for range 2 {
		off += oggPageLen(data[off:])
	}
	for {
		payload, ph, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			return h, pages, nil
		}
		if err != nil {
			return h, pages, err
		}
		pages = append(pages, oggPage{payload: payload, granule: ph.GranulePosition, flags: data[off+5]})
		off += oggPageLen(data[off:])
	}
}

// oggPageLen returns the length of the page at the start of b.
func oggPageLen(b []byte) int {
	n := oggHeaderSize + int(b[26])
	for _, s := range b[oggHeaderSize:n] {
		n += int(s)
	}
	return n
}

// readManifest returns the manifest in dir.
func readManifest(t *testing.T, dir string) recordingSummary {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		t.Fatal(err)
	}
	var m recordingSummary
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest: %v\n%s", err, b)
	}
	return m
}

// readFile returns the file's bytes.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkVideo checks that an IVF file holds the frames of src from want[0]
// on, in order, at their PTS, with the size of the first keyframe.
func checkVideo(t *testing.T, data []byte, want [][]byte, firstPTS uint64) (*ivfreader.IVFFileHeader, error) {
	t.Helper()
	h, frames, pts, err := readIVF(t, data)
	if h.FourCC != "VP80" || h.Width != recWidth || h.Height != recHeight {
		t.Errorf("ivf header %+v, want VP80 %dx%d", h, recWidth, recHeight)
	}
	if len(frames) != len(want) {
		t.Fatalf("ivf has %d frames, want %d (stopped at %v)", len(frames), len(want), err)
	}
	for i := range frames {
		if !bytes.Equal(frames[i], want[i]) {
			t.Fatalf("ivf frame %d differs from the frame sent", i)
		}
		if wantPTS := firstPTS + uint64(i)*recFrameTicks; pts[i] != wantPTS {
			t.Fatalf("ivf frame %d pts %d, want %d", i, pts[i], wantPTS)
		}
	}
	if len(frames) > 0 && frames[0][0]&1 != 0 {
		t.Error("ivf starts with an interframe")
	}
	return h, err
}

// checkAudio checks that an Ogg file holds the Opus packets want, one a
// page, each page's granule position the samples up to its end.
func checkAudio(t *testing.T, data []byte, want [][]byte) ([]oggPage, error) {
	t.Helper()
	h, pages, err := readOgg(t, data)
	if h.Channels != 2 || h.SampleRate != 48000 || h.PreSkip != 0 {
		t.Errorf("OpusHead %+v, want 2 channels, 48 kHz, no pre-skip", h)
	}
	if len(pages) != len(want) {
		t.Fatalf("ogg has %d packets, want %d (stopped at %v)", len(pages), len(want), err)
	}
	for i, p := range pages {
		if !bytes.Equal(p.payload, want[i]) {
			t.Fatalf("ogg packet %d differs from the packet sent", i)
		}
		if g := uint64(i+1) * recOpusTicks; p.granule != g {
			t.Fatalf("ogg packet %d granule %d, want %d", i, p.granule, g)
		}
	}
	return pages, err
}

// recEnvKill names the directory the child of TestRecordSurvivesKill
// records into.
const recEnvKill = "GONETS_TEST_RECORD_KILL_DIR"

// TestRecordSurvivesKill records in a child process that is SIGKILLed a
// second after the last packet was handed over, never stopping the
// recording, and reads the files back with pion's readers: every frame and
// packet is there, the IVF header's length is up to date, the manifest
// says who and which track and when each started. A copy cut mid-frame (a
// write the kill cut short) still reads up to the frame before, and
// recoverRecording finishes such files and the manifest. The second
// of wall time between the hand-over and the kill is the bound the issue
// sets ("usable up to the last second"), so it is real time, not a fake
// clock.
func TestRecordSurvivesKill(t *testing.T) {
	if dir := os.Getenv(recEnvKill); dir != "" {
		recordUntilKilled(t, dir)
		return
	}
	dir := filepath.Join(t.TempDir(), "call")
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecordSurvivesKill$", "-test.count=1")
	cmd.Env = append(os.Environ(), recEnvKill+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var audio, video [][]byte
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		if line := sc.Bytes(); bytes.HasPrefix(line, []byte("fed ")) {
			var fed struct{ Audio, Video [][]byte }
			if err := json.Unmarshal(line[4:], &fed); err != nil {
				t.Fatal(err)
			}
			audio, video = fed.Audio, fed.Video
			break
		}
	}
	if video == nil {
		t.Fatalf("the child never fed its packets: %v", sc.Err())
	}
	time.Sleep(time.Second)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	m := readManifest(t, dir)
	if !m.Stopped.IsZero() || len(m.Tracks) != 2 {
		t.Fatalf("manifest after the kill: %+v", m)
	}
	for _, tr := range m.Tracks {
		if tr.Participant != "alice" || tr.FirstFrame.IsZero() || !tr.Ended.IsZero() {
			t.Errorf("manifest track after the kill: %+v", tr)
		}
	}
	ivf := readFile(t, filepath.Join(dir, "alice_cam.ivf"))
	h, err := checkVideo(t, ivf, video, 0)
	if err != nil || h.NumFrames != uint32(len(video)*recFrameTicks) {
		t.Errorf("ivf: length %d, want %d (3 s); read error %v", h.NumFrames, len(video)*recFrameTicks, err)
	}
	ogg := readFile(t, filepath.Join(dir, "alice_mic.ogg"))
	pages, err := checkAudio(t, ogg, audio)
	if err != nil || pages[len(pages)-1].flags&oggFlagEOS != 0 {
		t.Errorf("ogg: read error %v, last page's flags %#x (no EOS before a clean stop)", err, pages[len(pages)-1].flags)
	}

	// A write cut short leaves part of a frame or page at the end.
	if _, err := checkVideo(t, ivf[:len(ivf)-7], video[:len(video)-1], 0); err == nil {
		t.Error("ivf cut mid-frame: no error at the partial frame")
	}
	if _, err := checkAudio(t, ogg[:len(ogg)-3], audio[:len(audio)-1]); err == nil {
		t.Error("ogg cut mid-page: no error at the partial page")
	}

	// The node restarts and finishes the recording, here with both files
	// cut mid-frame: they end at the frame before, with headers to match.
	for name, cut := range map[string]int{"alice_cam.ivf": 7, "alice_mic.ogg": 3} {
		path := filepath.Join(dir, name)
		if err := os.Truncate(path, int64(len(readFile(t, path))-cut)); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := recoverRecording(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Recovered || sum.Stopped.Before(sum.Started) || len(sum.Tracks) != 2 {
		t.Fatalf("recovered summary %+v", sum)
	}
	v, a := sum.Tracks[0], sum.Tracks[1]
	if v.Frames != uint64(len(video)-1) || v.DurationMS != int64(len(video)-2)*1000/30 || v.Ended.IsZero() || v.Error != "" {
		t.Errorf("recovered video %+v", v)
	}
	if a.Frames != uint64(len(audio)-1) || a.DurationMS != int64(len(audio)-1)*20 || a.Ended.IsZero() || a.Error != "" {
		t.Errorf("recovered audio %+v", a)
	}
	ivf = readFile(t, filepath.Join(dir, v.File))
	if h, err := checkVideo(t, ivf, video[:len(video)-1], 0); err != nil || h.NumFrames != uint32((len(video)-1)*recFrameTicks) || int64(len(ivf)) != v.Bytes {
		t.Errorf("recovered ivf: %d bytes, length %d; read error %v", len(ivf), h.NumFrames, err)
	}
	ogg = readFile(t, filepath.Join(dir, a.File))
	pages, err = checkAudio(t, ogg, audio[:len(audio)-1])
	if err != nil || pages[len(pages)-1].flags&oggFlagEOS == 0 || int64(len(ogg)) != a.Bytes {
		t.Errorf("recovered ogg: %d bytes, read error %v, last page's flags %#x, want EOS", len(ogg), err, pages[len(pages)-1].flags)
	}
	if m := readManifest(t, dir); !m.Recovered || !m.Stopped.Equal(sum.Stopped) || !slices.EqualFunc(m.Tracks, sum.Tracks, sameTrack) {
		t.Errorf("manifest after recovery %+v\nsummary %+v", m, sum)
	}
	if again, err := recoverRecording(dir); err != nil || !again.Stopped.Equal(sum.Stopped) || !slices.EqualFunc(again.Tracks, sum.Tracks, sameTrack) {
		t.Errorf("second recovery: %v, %+v", err, again)
	}
}

// recordUntilKilled is the child of TestRecordSurvivesKill: it records 3 s
// of alice's camera and microphone into dir, prints what it fed and waits to
// be killed.
func recordUntilKilled(t *testing.T, dir string) {
	r, err := newRecording(dir, quiet(recordingOptions{Call: "c1", VideoQueue: 1024, AudioQueue: 1024}))
	if err != nil {
		t.Fatal(err)
	}
	cam, mic := newRecSource(t, true), newRecSource(t, false)
	if err := r.addTrack(cam.up, "alice", "cam"); err != nil {
		t.Fatal(err)
	}
	if err := r.addTrack(mic.up, "alice", "mic"); err != nil {
		t.Fatal(err)
	}
	cam.feed(90)
	mic.feed(150)
	b, err := json.Marshal(struct{ Audio, Video [][]byte }{mic.frames, cam.frames})
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.Write(append(append([]byte("fed "), b...), '\n'))
	time.Sleep(time.Minute)
	t.Fatal("not killed")
}

// TestRecordStop records two tracks, stops cleanly and checks the files'
// frames, the final IVF length, the Ogg end-of-stream flag, the summary
// and the manifest.
func TestRecordStop(t *testing.T) {
	checkRecordLeaks(t)
	dir := filepath.Join(t.TempDir(), "call")
	set := metrics.NewSet()
	r, err := newRecording(dir, quiet(recordingOptions{Call: "c1", Metrics: set}))
	if err != nil {
		t.Fatal(err)
	}
	if m := readManifest(t, dir); m.Call != "c1" || m.Started.IsZero() || !m.Stopped.IsZero() || len(m.Tracks) != 0 {
		t.Errorf("manifest at the start: %+v", m)
	}
	cam, mic := newRecSource(t, true), newRecSource(t, false)
	if err := r.addTrack(cam.up, "alice@dev/1", "cam"); err != nil {
		t.Fatal(err)
	}
	if err := r.addTrack(mic.up, "alice@dev/1", "mic"); err != nil {
		t.Fatal(err)
	}
	if m := readManifest(t, dir); len(m.Tracks) != 2 || m.Tracks[0].File != "alice_dev_1_cam.ivf" || m.Tracks[1].File != "alice_dev_1_mic.ogg" {
		t.Errorf("manifest with two tracks: %+v", m)
	}
	cam.feed(60)
	mic.feed(100)
	sum, err := r.stop()
	if err != nil {
		t.Fatal(err)
	}

	if sum.Call != "c1" || sum.Stopped.Before(sum.Started) || sum.Duration() <= 0 || len(sum.Tracks) != 2 {
		t.Fatalf("summary %+v", sum)
	}
	v, a := sum.Tracks[0], sum.Tracks[1]
	if v.Participant != "alice@dev/1" || v.Track != "cam" || v.Kind != "video" || v.Codec != "vp8" ||
		v.Frames != 60 || v.DurationMS != 59*1000/30 || v.Dropped+v.Lost+v.Late != 0 || v.FirstFrame.IsZero() || v.Ended.IsZero() {
		t.Errorf("video summary %+v", v)
	}
	if a.Kind != "audio" || a.Codec != "opus" || a.Frames != 100 || a.DurationMS != 2000 || a.Dropped+a.Lost+a.Late != 0 {
		t.Errorf("audio summary %+v", a)
	}
	if m := readManifest(t, dir); !m.Stopped.Equal(sum.Stopped) || !slices.EqualFunc(m.Tracks, sum.Tracks, sameTrack) {
		t.Errorf("manifest %+v\nsummary %+v", m, sum)
	}
	if rec, err := recoverRecording(dir); err != nil || rec.Recovered || !slices.EqualFunc(rec.Tracks, sum.Tracks, sameTrack) {
		t.Errorf("recovering a stopped recording: %v, %+v", err, rec)
	}

	ivf := readFile(t, filepath.Join(dir, v.File))
	if h, err := checkVideo(t, ivf, cam.frames, 0); err != nil || h.NumFrames != 60*recFrameTicks {
		t.Errorf("ivf: length %d, want 2 s; read error %v", h.NumFrames, err)
	}
	if int64(len(ivf)) != v.Bytes {
		t.Errorf("ivf is %d bytes, summary says %d", len(ivf), v.Bytes)
	}
	pages, err := checkAudio(t, readFile(t, filepath.Join(dir, a.File)), mic.frames)
	if err != nil || pages[len(pages)-1].flags&oggFlagEOS == 0 {
		t.Errorf("ogg: read error %v, last page's flags %#x, want EOS", err, pages[len(pages)-1].flags)
	}
	if got := set.GetOrCreateCounter("gonets_calls_recording_dropped_packets_total").Get(); got != 0 {
		t.Errorf("dropped counter %d", got)
	}
}

// sameTrack compares manifest entries, times to the nanosecond JSON keeps.
func sameTrack(a, b recordedTrack) bool {
	ta, tb := a, b
	ta.Added, ta.FirstFrame, ta.Ended = time.Time{}, time.Time{}, time.Time{}
	tb.Added, tb.FirstFrame, tb.Ended = time.Time{}, time.Time{}, time.Time{}
	return ta == tb && a.Added.Equal(b.Added) && a.FirstFrame.Equal(b.FirstFrame) && a.Ended.Equal(b.Ended)
}

// TestRecordLifecycle: stop twice, add after stop, a track added twice, a
// track leaving mid-recording and coming back (a new file), a track whose
// publisher closes it without removeTrack, an unsupported codec, and a
// directory that already holds a recording.
func TestRecordLifecycle(t *testing.T) {
	checkRecordLeaks(t)
	dir := filepath.Join(t.TempDir(), "call")
	r, err := newRecording(dir, quiet(recordingOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newRecording(dir, quiet(recordingOptions{})); !errors.Is(err, os.ErrExist) {
		t.Errorf("second recording in one directory: %v, want ErrExist", err)
	}
	h264 := newUpTrack(upTrackConfig{kind: kindVideo, mimeType: webrtc.MimeTypeH264})
	if err := r.addTrack(h264, "bob", "cam"); !errors.Is(err, errRecordCodec) {
		t.Errorf("H.264 track: %v, want errRecordCodec", err)
	}

	alice, bob := newRecSource(t, false), newRecSource(t, false)
	if err := r.addTrack(alice.up, "alice", "mic"); err != nil {
		t.Fatal(err)
	}
	if err := r.addTrack(bob.up, "bob", "mic"); err != nil {
		t.Fatal(err)
	}
	if err := r.addTrack(bob.up, "bob", "mic"); !errors.Is(err, errRecordingTrack) {
		t.Errorf("track added twice: %v, want errRecordingTrack", err)
	}
	alice.feed(10)
	bob.feed(10)
	if err := r.removeTrack(bob.up); err != nil {
		t.Fatal(err)
	}
	if err := r.removeTrack(bob.up); !errors.Is(err, errNotRecording) {
		t.Errorf("track removed twice: %v, want errNotRecording", err)
	}
	m := readManifest(t, dir)
	if len(m.Tracks) != 2 || m.Tracks[1].Ended.IsZero() || m.Tracks[1].Frames != 10 || !m.Tracks[0].Ended.IsZero() {
		t.Errorf("manifest after bob left: %+v", m.Tracks)
	}
	pages, err := checkAudio(t, readFile(t, filepath.Join(dir, "bob_mic.ogg")), bob.frames)
	if err != nil || pages[len(pages)-1].flags&oggFlagEOS == 0 {
		t.Errorf("bob's file after he left: %v, flags %#x", err, pages[len(pages)-1].flags)
	}
	bob.feed(5) // no longer recorded

	bobAgain := newRecSource(t, false)
	if err := r.addTrack(bobAgain.up, "bob", "mic"); err != nil {
		t.Fatal(err)
	}
	bobAgain.feed(5)
	alice.feed(10)
	alice.up.close() // alice's publisher is gone; the room did not say
	sum, err := r.stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Tracks) != 3 || sum.Tracks[0].Frames != 20 || sum.Tracks[1].Frames != 10 ||
		sum.Tracks[2].File != "bob_mic-2.ogg" || sum.Tracks[2].Frames != 5 {
		t.Errorf("summary %+v", sum.Tracks)
	}
	if !sum.Tracks[1].Ended.Before(sum.Tracks[2].Ended) {
		t.Error("bob's first track ended with the recording, not when he left")
	}
	again, err := r.stop()
	if !errors.Is(err, errRecordingStopped) || !again.Stopped.Equal(sum.Stopped) || len(again.Tracks) != 3 {
		t.Errorf("second stop: %v, %+v", err, again)
	}
	if err := r.addTrack(newRecSource(t, false).up, "carol", "mic"); !errors.Is(err, errRecordingStopped) {
		t.Errorf("add after stop: %v, want errRecordingStopped", err)
	}
	if err := r.removeTrack(bobAgain.up); !errors.Is(err, errNotRecording) {
		t.Errorf("remove after stop: %v, want errNotRecording", err)
	}
}

// TestRecordVideoLoss: a packet lost mid-frame drops that frame and the
// frames after it up to the next keyframe, which is requested; the file
// holds only frames that decode.
func TestRecordVideoLoss(t *testing.T) {
	checkRecordLeaks(t)
	dir := t.TempDir()
	r, err := newRecording(dir, quiet(recordingOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	cam := newRecSource(t, true)
	if err := r.addTrack(cam.up, "alice", "cam"); err != nil {
		t.Fatal(err)
	}
	cam.feed(5)
	c := cam.up.counters()
	requests := c.pliSent + c.pliThrottled
	broken := cam.next() // frame 5 loses its middle packet
	cam.receive(broken[0])
	cam.receive(broken[2])
	cam.feed(2*recKeyEvery - 6) // up to frame 59; frame 30 is a keyframe
	want := append(slices.Clone(cam.frames[:5]), cam.frames[recKeyEvery:]...)
	path := filepath.Join(dir, "alice_cam.ivf")
	waitFor(t, "the frames after the loss", func() bool { // the request is made before stop
		_, frames, _, _ := readIVF(t, readFile(t, path))
		return len(frames) == len(want)
	})
	sum, err := r.stop()
	if err != nil {
		t.Fatal(err)
	}
	h, frames, pts, err := readIVF(t, readFile(t, path))
	// The length: the last frame's PTS and the average frame interval.
	if wantLen := uint32(59 * recFrameTicks * len(want) / (len(want) - 1)); err != nil || h.NumFrames != wantLen || len(frames) != len(want) {
		t.Fatalf("%d frames (length %d), want %d (length %d); %v", len(frames), h.NumFrames, len(want), wantLen, err)
	}
	for i := range frames {
		src := i
		if i >= 5 {
			src = i - 5 + recKeyEvery
		}
		if !bytes.Equal(frames[i], want[i]) || pts[i] != uint64(src*recFrameTicks) {
			t.Fatalf("frame %d: pts %d, want the frame sent as %d", i, pts[i], src)
		}
	}
	if c := cam.up.counters(); c.pliSent+c.pliThrottled == requests {
		t.Error("no keyframe requested after the loss (sent or throttled)")
	}
	if tr := sum.Tracks[0]; tr.Lost != 1 || tr.Frames != uint64(len(want)) {
		t.Errorf("summary %+v, want 1 lost", tr)
	}
}

// TestRecordAudioGap: a stretch with no packets (a mute; packets lost) is
// filled with zero-length Opus frames, so the audio keeps its length; a jump
// of the timestamps beyond opusMaxGap is not filled.
func TestRecordAudioGap(t *testing.T) {
	checkRecordLeaks(t)
	dir := t.TempDir()
	r, err := newRecording(dir, quiet(recordingOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	mic := newRecSource(t, false)
	if err := r.addTrack(mic.up, "alice", "mic"); err != nil {
		t.Fatal(err)
	}
	mic.feed(10)
	mic.ts += 10 * recOpusTicks // 200 ms with no packet
	mic.feed(10)
	mic.ts += opusMaxGap + recOpusTicks // the publisher's clock jumped
	mic.feed(1)
	sum, err := r.stop()
	if err != nil {
		t.Fatal(err)
	}
	_, pages, err := readOgg(t, readFile(t, filepath.Join(dir, sum.Tracks[0].File)))
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	var granules []uint64
	for _, p := range pages {
		got = append(got, p.payload)
		granules = append(granules, p.granule)
	}
	fill := func(n byte) []byte { return []byte{recOpusTOC | 3, n} }
	want := slices.Concat(mic.frames[:10], [][]byte{fill(6), fill(4)}, mic.frames[10:])
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("packets %x\nwant %x", got, want)
	}
	wantGranules := []uint64{}
	for i := range 10 {
		wantGranules = append(wantGranules, uint64(i+1)*recOpusTicks)
	}
	wantGranules = append(wantGranules, 16*recOpusTicks, 20*recOpusTicks)
	for i := range 11 {
		wantGranules = append(wantGranules, uint64(21+i)*recOpusTicks)
	}
	if !slices.Equal(granules, wantGranules) {
		t.Errorf("granules %v\nwant %v", granules, wantGranules)
	}
	if tr := sum.Tracks[0]; tr.Frames != 21 || tr.DurationMS != 31*20 {
		t.Errorf("summary %+v, want 21 packets over 620 ms", tr)
	}
}

// TestRecordFileSafe checks that participant and track names cannot leave the
// recording's directory.
func TestRecordFileSafe(t *testing.T) {
	for in, want := range map[string]string{
		"alice":        "alice",
		"../../etc":    "_._.._etc",
		"a/b\\c":       "a_b_c",
		".hidden":      "_hidden",
		"":             "_",
		"Боб":          "______",
		"u1.dev-2.mid": "u1.dev-2.mid",
	} {
		if got := fileSafe(in); got != want {
			t.Errorf("fileSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRecordLongNames: a track whose name a client made long (its SDP's
// mid is anything up to a line's length) is recorded all the same, under
// a file name the file system takes; two whose names share the kept
// prefix get files of their own.
func TestRecordLongNames(t *testing.T) {
	checkRecordLeaks(t)
	r, err := newRecording(filepath.Join(t.TempDir(), "call"), quiet(recordingOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	a, b := newRecSource(t, false), newRecSource(t, false)
	long := strings.Repeat("m", 400)
	if err := r.addTrack(a.up, "7.1", "audio-"+long+"a"); err != nil {
		t.Fatalf("a track with a 400-byte mid: %v", err)
	}
	if err := r.addTrack(b.up, "7.1", "audio-"+long+"b"); err != nil {
		t.Fatalf("a second one: %v", err)
	}
	sum, err := r.stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Tracks) != 2 || sum.Tracks[0].File == sum.Tracks[1].File || len(sum.Tracks[0].File) > 255 {
		t.Fatalf("tracks %+v", sum.Tracks)
	}
}

// TestRecordStopWhileAdding: tracks added while the recording stops are
// either refused or recorded and finished, and none stays subscribed.
func TestRecordStopWhileAdding(t *testing.T) {
	checkRecordLeaks(t)
	r, err := newRecording(t.TempDir(), quiet(recordingOptions{AudioQueue: 4}))
	if err != nil {
		t.Fatal(err)
	}
	srcs := make([]*recSource, 16)
	for i := range srcs {
		srcs[i] = newRecSource(t, false)
	}
	var wg sync.WaitGroup
	var added atomic.Int64
	for i, s := range srcs {
		wg.Go(func() {
			err := r.addTrack(s.up, "p", strconv.Itoa(i))
			if err == nil {
				added.Add(1)
			} else if !errors.Is(err, errRecordingStopped) {
				t.Error(err)
			}
		})
	}
	sum, err := r.stop()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Tracks) != int(added.Load()) {
		t.Errorf("summary has %d tracks, %d were added", len(sum.Tracks), added.Load())
	}
	for i, s := range srcs {
		if n := len(*s.up.subs.Load()); n != 0 {
			t.Errorf("track %d still has %d subscribers", i, n)
		}
	}
}
