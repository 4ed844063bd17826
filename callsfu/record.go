package callsfu

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/webrtc/v4"
)

// The recording's errors. None reaches a client as is: the room maps them
// onto its own refusals.
var (
	errRecordingStopped = errors.New("callsfu: recording stopped")
	errRecordCodec      = errors.New("callsfu: recording supports Opus audio and VP8 video only")
	errRecordingTrack   = errors.New("callsfu: track already being recorded")
	errNotRecording     = errors.New("callsfu: track not being recorded")
)

// manifestName is the recording's manifest in its directory.
const manifestName = "manifest.json"

// Defaults of recordingOptions.
const (
	defaultRecordVideoQueue = 256 // packets: 2 s of a 1.5 Mbit/s layer
	defaultRecordAudioQueue = 128 // packets: 2.5 s of Opus at 20 ms
	defaultRecordHold       = 250 * time.Millisecond
	defaultRecordSync       = 250 * time.Millisecond
)

// recordingOptions configure a recording. The zero value of each field means
// its default.
type recordingOptions struct {
	// Call names the call in the manifest. Default: none.
	Call string
	// Chat and By are kept in the manifest for whoever announces the
	// recording (after recoverRecording too): the call's chat and the user
	// who started the recording. Default: none.
	Chat, By uint64
	// VideoQueue and AudioQueue are how many packets of a track may wait
	// between its publisher's reader and the recording's writer, held for
	// reordering included; a packet that finds the queue full is dropped
	// and counted. Each costs a preallocated buffer of 1,500 bytes: 384 KiB
	// a video track, 192 KiB an audio track by default. Default: 256 for
	// video, 128 for audio.
	VideoQueue, AudioQueue int
	// Hold is how long packets wait behind a hole in the sequence numbers
	// for the publisher's retransmission to fill it (the SFU NACKs the
	// publisher) before the hole is taken as lost: for video, frames are
	// then dropped up to the next keyframe, which is requested; for audio,
	// the gap is filled with empty Opus frames (concealment fading to
	// silence). Default: 250 ms.
	Hold time.Duration
	// SyncInterval is how often a track's file header is brought up to
	// date (the IVF length) and held packets are looked at for Hold.
	// Default: 250 ms.
	SyncInterval time.Duration
	// Logger receives the recording's lifecycle and write errors. Default:
	// slog.Default().
	Logger *slog.Logger
	// Metrics, if set, counts the packets recordings dropped in
	// gonets_calls_recording_dropped_packets_total (queue full) and
	// gonets_calls_recording_lost_packets_total (a hole that Hold did not
	// see filled). Default: nil, no metrics.
	Metrics *metrics.Set
}

// withDefaults returns a copy of o with its defaults filled in.
func (o recordingOptions) withDefaults() recordingOptions {
	if o.VideoQueue <= 0 {
		o.VideoQueue = defaultRecordVideoQueue
	}
	if o.AudioQueue <= 0 {
		o.AudioQueue = defaultRecordAudioQueue
	}
	if o.Hold <= 0 {
		o.Hold = defaultRecordHold
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = defaultRecordSync
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// recordingSummary describes a recording: it is the manifest, written into
// the recording's directory as manifest.json when it starts, when a track is
// added, starts or ends, and when it stops; and what stop returns for the
// chat's message.
type recordingSummary struct {
	// Call is recordingOptions.Call.
	Call string `json:"call,omitempty"`
	// Chat and By are recordingOptions.Chat and By.
	Chat uint64 `json:"chat,omitempty"`
	By   uint64 `json:"by,omitempty"`
	// Started is when the recording started; Stopped when it stopped,
	// zero while it runs (or if the node died first).
	Started time.Time `json:"started"`
	Stopped time.Time `json:"stopped,omitzero"`
	// Recovered says the node died while recording and recoverRecording
	// finished the files; Stopped is then when the last was written.
	Recovered bool `json:"recovered,omitempty"`
	// Tracks are the tracks recorded, in the order they were added.
	Tracks []recordedTrack `json:"tracks"`
}

// Duration returns how long the recording ran, zero while it runs.
func (s *recordingSummary) Duration() time.Duration {
	if s.Stopped.IsZero() {
		return 0
	}
	return s.Stopped.Sub(s.Started)
}

// recordedTrack is one track's file in a recording.
type recordedTrack struct {
	// Participant and Track are the names addTrack was given.
	Participant string `json:"participant"`
	Track       string `json:"track"`
	// Kind is "audio" or "video"; Codec "opus" or "vp8".
	Kind  string `json:"kind"`
	Codec string `json:"codec"`
	// File is the file's name in the recording's directory: Ogg Opus for
	// audio, IVF for video.
	File string `json:"file"`
	// Added is when the track was added; FirstFrame when its first frame
	// (video) or packet (audio) was written, the time its file's zero
	// stands for, to line the files up; Ended when it was removed or the
	// recording stopped (zero until then).
	Added      time.Time `json:"added"`
	FirstFrame time.Time `json:"first_frame,omitzero"`
	Ended      time.Time `json:"ended,omitzero"`
	// Frames is the video frames or Opus packets written, Bytes the file's
	// size, DurationMS the media's length in the file (filled gaps
	// included). They are set when the track ends.
	Frames     uint64 `json:"frames"`
	Bytes      int64  `json:"bytes"`
	DurationMS int64  `json:"duration_ms"`
	// Dropped counts packets dropped on a full queue, Lost those never
	// received (a hole not filled within Hold) and Late those that came
	// after their place was passed.
	Dropped uint64 `json:"dropped"`
	Lost    uint64 `json:"lost"`
	Late    uint64 `json:"late"`
	// Error is the write error that ended the file early, if any.
	Error string `json:"error,omitempty"`
}

// recording records one call: each track given to addTrack is written to its
// own file in the recording's directory, until removeTrack or stop.
//
// It subscribes to each track as one more subscriber, a downTrack on the top
// layer for video (falling back with it if the publisher stops sending that
// layer, and back up at a keyframe). The downTrack's writes, on the
// publisher's reader goroutine, copy the packet into a preallocated buffer
// taken from the track's free list and hand it over a channel, never
// blocking: with no free buffer the packet is dropped and counted. One
// goroutine per track puts the packets back in sequence order (waiting up to
// Hold behind a hole, looked at on each packet and every SyncInterval),
// assembles them and writes each frame or Opus packet to the file with one
// write, so nothing stays in the process longer than Hold plus SyncInterval
// (500 ms by default) plus the queue's wait: after a SIGKILL the files hold
// everything but the last half second or so, and play (see recSink);
// recoverRecording finishes them and the manifest.
//
// Cost per packet on the publisher's reader: two non-blocking channel
// operations and a copy of the payload, no allocation. Memory: the queue's
// buffers (recordingOptions.VideoQueue, AudioQueue) and a 64 KiB frame buffer
// per video track.
//
// Goroutines and locks: one goroutine per track, started by addTrack and
// waited for by removeTrack or stop (every one has ended when stop returns).
// All methods are safe to call from any goroutine. mu guards the manifest and
// the track list; it is never held while waiting for a track's goroutine,
// which takes it to record its first frame and its end, nor while
// subscribing or unsubscribing (the forwarding core's locks are taken with
// no lock of the recording held); a track's goroutine asks for keyframes
// with no lock held.
type recording struct {
	dir     string
	opts    recordingOptions
	log     *slog.Logger
	dropped *metrics.Counter // nil without metrics
	lost    *metrics.Counter

	mu      sync.Mutex // guards the following
	stopped bool
	sum     recordingSummary
	tracks  []*recTrack // every track added, index i is sum.Tracks[i]
	live    map[*upTrack]*recTrack
}

// newRecording starts a recording in dir, which it creates if needed and in
// which it writes the manifest. dir must not hold a recording already (a
// manifest): the caller gives each recording its own directory, e.g.
// <data>/recordings/<call>/<n>. The recording has no tracks until addTrack.
func newRecording(dir string, opts recordingOptions) (*recording, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("callsfu: record: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, manifestName)); err == nil {
		return nil, fmt.Errorf("callsfu: record in %q: %w", dir, os.ErrExist)
	}
	r := &recording{
		dir:  dir,
		opts: opts,
		log:  opts.Logger.With("dir", dir),
		live: make(map[*upTrack]*recTrack),
		sum:  recordingSummary{Call: opts.Call, Chat: opts.Chat, By: opts.By, Started: time.Now().UTC(), Tracks: []recordedTrack{}},
	}
	if set := opts.Metrics; set != nil {
		r.dropped = set.GetOrCreateCounter("gonets_calls_recording_dropped_packets_total")
		r.lost = set.GetOrCreateCounter("gonets_calls_recording_lost_packets_total")
	}
	if err := r.writeManifestLocked(); err != nil {
		return nil, err
	}
	r.log.Info("recording started", "call", opts.Call)
	return r, nil
}

// addTrack starts recording u, published by participant as trackID (both
// only name the file and the manifest's entry), into a new file named after
// them: <participant>_<trackID>.ogg for Opus audio, .ivf for VP8 video, with
// -2, -3, … if a track of that name was recorded before (it left and came
// back). The file starts at the track's next keyframe, which is requested.
// It fails for a codec other than those, for a track already being
// recorded, and after stop.
func (r *recording) addTrack(u *upTrack, participant, trackID string) error {
	kind, codec, ext, err := recordFormat(u.cfg)
	if err != nil {
		return err
	}
	t, err := r.startTrack(u, recordedTrack{
		Participant: participant, Track: trackID, Kind: kind, Codec: codec,
		Added: time.Now().UTC(),
	}, ext)
	if err != nil {
		return err
	}
	// Subscribing asks the publisher for a keyframe (onPLI), which is done
	// with no lock held.
	t.attach(u.subscribe(t, 0, 0))
	return nil
}

// startTrack creates the file and goroutine of a track of u described by
// info and adds it to the manifest.
func (r *recording) startTrack(u *upTrack, info recordedTrack, ext string) (*recTrack, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return nil, errRecordingStopped
	}
	if r.live[u] != nil {
		return nil, errRecordingTrack
	}
	t, err := r.newTrackLocked(u, info, ext)
	if err != nil {
		return nil, err
	}
	r.live[u] = t
	r.tracks = append(r.tracks, t)
	r.sum.Tracks = append(r.sum.Tracks, t.info)
	go t.run()
	if err := r.writeManifestLocked(); err != nil {
		r.log.Error("recording manifest", "err", err)
	}
	return t, nil
}

// recordFormat returns the manifest's kind and codec and the file extension
// for a track of cfg, or errRecordCodec.
func recordFormat(cfg upTrackConfig) (kind, codec, ext string, err error) {
	switch {
	case cfg.kind == kindAudio && strings.EqualFold(cfg.mimeType, webrtc.MimeTypeOpus):
		return "audio", "opus", ".ogg", nil
	case cfg.kind == kindVideo && strings.EqualFold(cfg.mimeType, webrtc.MimeTypeVP8):
		return "video", "vp8", ".ivf", nil
	}
	return "", "", "", fmt.Errorf("%w: %q", errRecordCodec, cfg.mimeType)
}

// newTrackLocked creates the file of a track described by info and its
// queue; the caller starts it.
func (r *recording) newTrackLocked(u *upTrack, info recordedTrack, ext string) (*recTrack, error) {
	t := &recTrack{r: r, up: u, index: len(r.tracks), stop: make(chan struct{}), done: make(chan struct{})}
	base := fileSafe(info.Participant) + "_" + fileSafe(info.Track)
	if len(base) > maxFileBase {
		base = base[:maxFileBase] // a client's mid may be long; -n tells apart
	}
	for n := 1; ; n++ {
		info.File = base + ext
		if n > 1 {
			info.File = fmt.Sprintf("%s-%d%s", base, n, ext)
		}
		path := filepath.Join(r.dir, info.File)
		var err error
		if info.Kind == "video" {
			t.sink, err = newIVFFile(path, t.keyframe)
		} else {
			t.sink, err = newOggFile(path)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, err
		}
	}
	t.info = info
	size := r.opts.AudioQueue
	if info.Kind == "video" {
		size = r.opts.VideoQueue
	}
	t.free = make(chan *recPacket, size)
	t.queue = make(chan *recPacket, size)
	bufs := make([]byte, size*rtpMaxPacket)
	pkts := make([]recPacket, size)
	for i := range pkts {
		pkts[i].buf = bufs[i*rtpMaxPacket : i*rtpMaxPacket : (i+1)*rtpMaxPacket]
		t.free <- &pkts[i]
	}
	return t, nil
}

// fileSafe returns s with every byte but ASCII letters, digits, '-' and '.'
// replaced by '_', and a leading '.' too, so that it names a file in the
// recording's directory and nothing else. An empty s is "_".
func fileSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' && i > 0
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// maxFileBase caps a track's file name before its -n and extension: the
// mid in it is the client's, and a file system takes 255 bytes at most.
const maxFileBase = 128

// removeTrack stops recording u (its publisher left, or unpublished it) and
// finishes its file. It waits for what was queued to be written. It fails
// for a track not being recorded (never added, removed, or after stop).
func (r *recording) removeTrack(u *upTrack) error {
	r.mu.Lock()
	t := r.live[u]
	delete(r.live, u)
	r.mu.Unlock()
	if t == nil {
		return errNotRecording
	}
	err := t.end()
	r.mu.Lock()
	defer r.mu.Unlock()
	if merr := r.writeManifestLocked(); merr != nil && err == nil {
		err = merr
	}
	return err
}

// stop ends the recording: every track still recorded is finished as by
// removeTrack (all at once), and the manifest written a last time. It
// returns the summary for the chat's message, and the errors of the files
// and the manifest joined (the summary is complete even then: each track
// says its own error). A second stop returns the summary as it stands with
// errRecordingStopped.
func (r *recording) stop() (recordingSummary, error) {
	r.mu.Lock()
	if r.stopped {
		sum := r.summaryLocked()
		r.mu.Unlock()
		return sum, errRecordingStopped
	}
	r.stopped = true
	live := r.live
	r.live = nil
	all := r.tracks
	r.mu.Unlock()

	for _, t := range live {
		t.halt()
	}
	var errs []error
	for _, t := range all {
		<-t.done // a track removed concurrently finishes its own file too
		errs = append(errs, t.err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sum.Stopped = time.Now().UTC()
	errs = append(errs, r.writeManifestLocked())
	r.log.Info("recording stopped", "call", r.opts.Call, "tracks", len(r.sum.Tracks), "duration", r.sum.Duration())
	return r.summaryLocked(), errors.Join(errs...)
}

// summaryLocked returns a copy of the summary.
func (r *recording) summaryLocked() recordingSummary {
	sum := r.sum
	sum.Tracks = append([]recordedTrack(nil), r.sum.Tracks...)
	return sum
}

// writeManifestLocked writes the summary to the manifest, replacing it
// whole: a temporary file, synced, renamed over it.
func (r *recording) writeManifestLocked() error {
	b, err := json.MarshalIndent(&r.sum, "", "  ")
	if err != nil {
		return fmt.Errorf("callsfu: record manifest: %w", err)
	}
	path := filepath.Join(r.dir, manifestName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("callsfu: record manifest: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("callsfu: record manifest: %w", err)
	}
	return nil
}

// trackEvent records in the manifest that t wrote its first frame, or
// ended, as info says. Called by t's goroutine.
func (r *recording) trackEvent(t *recTrack, info recordedTrack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sum.Tracks[t.index] = info
	if err := r.writeManifestLocked(); err != nil {
		r.log.Error("recording manifest", "err", err)
	}
}

// recoverRecording finishes the recording in dir if its node died before
// stop (its manifest has no stop time): each file is cut after its last
// complete frame or page (a write the death cut short), its header brought
// up to date (the IVF length and size, the Ogg end-of-stream flag), and
// its frames, size and duration counted into the manifest, which is marked
// Recovered and stopped when the last file was written. The node calls it
// at start for each recording directory left unstopped, then announces the
// summary as it would stop's. A recording already stopped is returned as it
// is; a track whose file cannot be finished says why in its Error.
func recoverRecording(dir string) (recordingSummary, error) {
	r := &recording{dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return recordingSummary{}, fmt.Errorf("callsfu: recover recording: %w", err)
	}
	if err := json.Unmarshal(b, &r.sum); err != nil {
		return recordingSummary{}, fmt.Errorf("callsfu: recover recording %q: manifest: %w", dir, err)
	}
	if !r.sum.Stopped.IsZero() {
		return r.summaryLocked(), nil
	}
	r.sum.Stopped = r.sum.Started
	for i := range r.sum.Tracks {
		tr := &r.sum.Tracks[i]
		if !tr.Ended.IsZero() {
			r.sum.Stopped = maxTime(r.sum.Stopped, tr.Ended)
			continue // removed and finished before the node died
		}
		recoverTrack(filepath.Join(dir, tr.File), tr)
		r.sum.Stopped = maxTime(r.sum.Stopped, tr.Ended)
	}
	r.sum.Recovered = true
	if err := r.writeManifestLocked(); err != nil {
		return r.summaryLocked(), err
	}
	return r.summaryLocked(), nil
}

// recoverTrack finishes the file of tr at path and counts it into tr. The
// track ended when its file was last written.
func recoverTrack(path string, tr *recordedTrack) {
	tr.Ended = tr.Added
	if fi, err := os.Stat(path); err == nil {
		tr.Ended = fi.ModTime().UTC()
	}
	finish := recoverOgg
	if tr.Kind == "video" {
		finish = recoverIVF
	}
	frames, bytes, d, err := finish(path)
	tr.Frames, tr.Bytes, tr.DurationMS = frames, bytes, d.Milliseconds()
	if err != nil {
		tr.Error = err.Error()
	}
}

// maxTime returns the later of a and b.
func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
