package callsfu

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/storage"
)

// The refusals of StartRecording and StopRecording. Each wraps a sentinel
// of errors.go, which gives it its code.
var (
	// ErrRecordingOff: the SFU has no Options.RecordDir.
	ErrRecordingOff = fmt.Errorf("%w: calls are not recorded on this node", ErrForbidden)
	// ErrRecording: StartRecording of a call being recorded already.
	ErrRecording = fmt.Errorf("%w: the call is being recorded already", ErrBadRequest)
	// ErrNotRecording: StopRecording of a call not being recorded.
	ErrNotRecording = fmt.Errorf("%w: the call is not being recorded", ErrBadRequest)
)

// maxRecordingsPerCall caps the recordings of one call (a directory
// each), so that a start never searches for a free name for long.
const maxRecordingsPerCall = 10_000

// RecordOptions describe a recording StartRecording starts.
type RecordOptions struct {
	// Chat and By go into the recording's manifest and summary: the
	// call's chat and the user who started the recording, for whoever
	// announces it, after a crash too (RecoverRecordings). Default: none.
	Chat, By uint64
	// Done, if set, is called once with the recording's summary when it
	// stops: by StopRecording, when the call ends (End, its last
	// participant leaving, the sweeper) or by Close; on the goroutine that
	// stopped it, once every file is finished, never under the SFU's
	// locks. err joins the files' write errors (each file says its own).
	Done func(sum RecordingSummary, err error)
}

// RecordingSummary describes a recording that stopped.
type RecordingSummary struct {
	Call     uint64
	Chat, By uint64 // RecordOptions.Chat and By
	// Dir is the recording's directory, relative to Options.RecordDir and
	// slash-separated: "<call>/<n>".
	Dir string
	// Started and Stopped bound the recording.
	Started, Stopped time.Time
	// Recovered says the node died while recording; RecoverRecordings
	// finished the files, and Stopped is when the last was written.
	Recovered bool
	// Files are the tracks recorded, in the order they were added.
	Files []RecordedFile
}

// Bytes returns the size of the recording's files together.
func (s *RecordingSummary) Bytes() int64 {
	var n int64
	for _, f := range s.Files {
		n += f.Bytes
	}
	return n
}

// RecordedFile is one recorded track: Opus audio in an Ogg file, VP8 video
// in an IVF file.
type RecordedFile struct {
	// Name is the file's path relative to Options.RecordDir,
	// slash-separated: "<call>/<n>/<user>.<device>_<kind>-<mid>.ogg" (or
	// .ivf), with -2, -3, … before the extension for a track that came
	// back.
	Name  string
	Peer  Peer
	Kind  Kind
	Codec string // "opus" or "vp8"
	// FirstFrame is when the file's first frame came (its zero), zero if
	// none did; Ended when the track's recording ended.
	FirstFrame, Ended time.Time
	// Frames are the video frames or Opus packets written, Bytes the
	// file's size and Duration the media's length.
	Frames   uint64
	Bytes    int64
	Duration time.Duration
	// Dropped, Lost and Late count the packets not recorded: dropped on a
	// full queue, never received, come too late.
	Dropped, Lost, Late uint64
	// Error is the write error that ended the file early, if any.
	Error string
}

// roomRecording is a room's recording, held in room.rec while it runs.
// The room adds each track published to it (recordLocked) and halts each
// unpublished (unrecordLocked) under the room's lock; the recording's own
// lock is taken under it, never the other way round.
type roomRecording struct {
	rec  *recording
	call uint64
	rel  string // the directory, relative to Options.RecordDir
	done func(RecordingSummary, error)
}

// StartRecording starts recording the call: each track published in it,
// now or later, is written to its own file in a new directory
// <Options.RecordDir>/<call>/<n> (n counting the call's recordings from
// 1), until StopRecording or the call's end (see recording for the
// files). It is refused with ErrRecordingOff without a RecordDir,
// ErrUnknownCall for a call not running, and ErrRecording for a call
// being recorded already. A track in a codec other than Opus or VP8 is
// not recorded (and logged).
func (s *SFU) StartRecording(call uint64, o RecordOptions) error {
	if s.opts.RecordDir == "" {
		return fmt.Errorf("callsfu: record call %d: %w", call, ErrRecordingOff)
	}
	r, err := s.room(call)
	if err != nil {
		return fmt.Errorf("callsfu: record call %d: %w", call, err)
	}
	return r.startRecording(o)
}

// StopRecording stops the call's recording and returns once its files are
// finished and RecordOptions.Done has returned. It is refused with
// ErrUnknownCall for a call not running (whose end stopped its
// recording), and ErrNotRecording for one not being recorded.
func (s *SFU) StopRecording(call uint64) error {
	r, err := s.room(call)
	if err != nil {
		return fmt.Errorf("callsfu: stop recording call %d: %w", call, err)
	}
	if !r.stopRecording() {
		return fmt.Errorf("callsfu: stop recording call %d: %w", call, ErrNotRecording)
	}
	return nil
}

// startRecording starts the room's recording with the tracks published
// now. The directory and the manifest are made under the room's lock, so
// that no track published meanwhile is missed.
func (r *room) startRecording(o RecordOptions) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.ended:
		return fmt.Errorf("callsfu: record call %d: %w", r.call, ErrUnknownCall)
	case r.rec != nil:
		return fmt.Errorf("callsfu: record call %d: %w", r.call, ErrRecording)
	}
	rel, err := newRecordingDir(r.sfu.opts.RecordDir, r.call)
	if err != nil {
		return err
	}
	rec, err := newRecording(filepath.Join(r.sfu.opts.RecordDir, filepath.FromSlash(rel)), recordingOptions{
		Call: strconv.FormatUint(r.call, 10), Chat: o.Chat, By: o.By,
		Logger: r.sfu.log, Metrics: r.sfu.opts.Metrics,
	})
	if err != nil {
		return err
	}
	r.rec = &roomRecording{rec: rec, call: r.call, rel: rel, done: o.Done}
	tracks := make([]*publishedTrack, 0, len(r.tracks))
	for _, t := range r.tracks {
		tracks = append(tracks, t)
	}
	slices.SortFunc(tracks, func(a, b *publishedTrack) int { return strings.Compare(a.info.ID, b.info.ID) })
	for _, t := range tracks {
		r.recordLocked(t)
	}
	return nil
}

// newRecordingDir creates the next recording directory of call under dir
// and returns its name relative to dir, "<call>/<n>".
func newRecordingDir(dir string, call uint64) (string, error) {
	callDir := strconv.FormatUint(call, 10)
	if err := os.MkdirAll(filepath.Join(dir, callDir), 0o750); err != nil {
		return "", fmt.Errorf("callsfu: record call %d: %w", call, err)
	}
	for n := 1; n <= maxRecordingsPerCall; n++ {
		rel := path.Join(callDir, strconv.Itoa(n))
		err := os.Mkdir(filepath.Join(dir, filepath.FromSlash(rel)), 0o750)
		if err == nil {
			return rel, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("callsfu: record call %d: %w", call, err)
		}
	}
	return "", fmt.Errorf("callsfu: record call %d: %d recordings already", call, maxRecordingsPerCall)
}

// recordLocked adds t to the room's recording, if one runs. The track's
// file is named after its publisher, kind and mid (cut short: the mid is
// the client's).
func (r *room) recordLocked(t *publishedTrack) {
	if r.rec == nil {
		return
	}
	kind := "audio"
	if t.info.Kind == KindVideo {
		kind = "video"
	}
	if err := r.rec.rec.addTrack(t.up, t.info.Peer.String(), kind+"-"+midOf(t.info)); err != nil {
		r.sfu.log.Warn("callsfu: track not recorded", "call", r.call, "track", t.info.ID, "err", err)
	}
}

// unrecordLocked ends t's file in the room's recording, if one runs,
// without waiting for it: the recording's stop waits for every track.
func (r *room) unrecordLocked(t *publishedTrack) {
	if r.rec != nil {
		r.rec.rec.halt(t.up)
	}
}

// stopRecording stops the room's recording, if one runs, and reports
// whether one did: its files are finished and its Done called before it
// returns. The SFU calls it at the call's end too (SFU.ended).
func (r *room) stopRecording() bool {
	r.mu.Lock()
	rr := r.rec
	r.rec = nil
	r.mu.Unlock()
	if rr == nil {
		return false
	}
	sum, err := rr.rec.stop()
	if err != nil {
		r.sfu.log.Error("callsfu: recording", "call", r.call, "dir", rr.rel, "err", err)
	}
	if rr.done != nil {
		rr.done(publicSummary(rr.call, rr.rel, sum), err)
	}
	return true
}

// halt ends u's file without waiting for it (see removeTrack, which
// waits); stop waits for it with the others. A track not being recorded
// is let be.
func (r *recording) halt(u *upTrack) {
	r.mu.Lock()
	t := r.live[u]
	delete(r.live, u)
	r.mu.Unlock()
	if t != nil {
		t.halt()
	}
}

// publicSummary returns the summary of the recording of call in rel.
func publicSummary(call uint64, rel string, s recordingSummary) RecordingSummary {
	out := RecordingSummary{
		Call: call, Chat: s.Chat, By: s.By, Dir: rel,
		Started: s.Started, Stopped: s.Stopped, Recovered: s.Recovered,
		Files: make([]RecordedFile, 0, len(s.Tracks)),
	}
	for _, t := range s.Tracks {
		f := RecordedFile{
			Name: path.Join(rel, t.File), Peer: parsePeer(t.Participant), Kind: KindAudio, Codec: t.Codec,
			FirstFrame: t.FirstFrame, Ended: t.Ended, Frames: t.Frames, Bytes: t.Bytes,
			Duration: time.Duration(t.DurationMS) * time.Millisecond,
			Dropped:  t.Dropped, Lost: t.Lost, Late: t.Late, Error: t.Error,
		}
		if t.Kind == "video" {
			f.Kind = KindVideo
		}
		out.Files = append(out.Files, f)
	}
	return out
}

// parsePeer parses Peer.String's "user.device"; anything else is the zero
// Peer.
func parsePeer(s string) Peer {
	u, d, ok := strings.Cut(s, ".")
	if !ok {
		return Peer{}
	}
	user, err1 := strconv.ParseUint(u, 10, 64)
	device, err2 := strconv.ParseUint(d, 10, 64)
	if err1 != nil || err2 != nil {
		return Peer{}
	}
	return Peer{User: user, Device: device}
}

// RecoverRecordings finishes the recordings under dir (an
// Options.RecordDir) that a node which died while recording left
// unstopped (see recoverRecording: each file is cut after its last
// complete frame, its header brought up to date), and returns their
// summaries, Recovered set, for the node to announce. Recordings stopped
// already are let be; a directory without a manifest (the node died as it
// made it) is skipped. A missing dir holds nothing. The errors of the
// recordings it could not recover are joined; it goes on past them.
func RecoverRecordings(dir string) ([]RecordingSummary, error) {
	var out []RecordingSummary
	errs := eachRecording(dir, "recover recordings", func(call uint64, rel, d string) error {
		sum, ok, err := recoverUnstopped(d)
		if ok {
			out = append(out, publicSummary(call, rel, sum))
		}
		return err
	})
	return out, errs
}

// eachRecording calls f with each recording's directory under dir
// (<call>/<n>, rel as a slash path, d as the file path) and joins the
// errors, going on past them. A missing dir holds nothing.
func eachRecording(dir, op string, f func(call uint64, rel, d string) error) error {
	calls, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("callsfu: %s: %w", op, err)
	}
	var errs []error
	for _, c := range calls {
		call, err := strconv.ParseUint(c.Name(), 10, 64)
		if !c.IsDir() || err != nil {
			continue
		}
		recs, err := os.ReadDir(filepath.Join(dir, c.Name()))
		if err != nil {
			errs = append(errs, fmt.Errorf("callsfu: %s: %w", op, err))
			continue
		}
		for _, n := range recs {
			if !n.IsDir() {
				continue
			}
			if err := f(call, path.Join(c.Name(), n.Name()), filepath.Join(dir, c.Name(), n.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// recoverUnstopped recovers the recording in dir if its manifest says it
// never stopped, and reports whether it did.
func recoverUnstopped(dir string) (recordingSummary, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if errors.Is(err, os.ErrNotExist) {
		return recordingSummary{}, false, nil
	}
	if err != nil {
		return recordingSummary{}, false, fmt.Errorf("callsfu: recover recording: %w", err)
	}
	var m struct {
		Stopped time.Time `json:"stopped"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return recordingSummary{}, false, fmt.Errorf("callsfu: recover recording %q: manifest: %w", dir, err)
	}
	if !m.Stopped.IsZero() {
		return recordingSummary{}, false, nil
	}
	sum, err := recoverRecording(dir)
	return sum, err == nil || sum.Recovered, err
}

// announcedName is the file whose presence in a recording's directory says
// that its announcement is in the chat (MarkAnnounced).
const announcedName = "announced"

// MarkAnnounced records that the recording in rel (RecordingSummary.Dir)
// under dir (an Options.RecordDir) is announced, durably: Unannounced no
// longer returns it.
func MarkAnnounced(dir, rel string) error {
	d := filepath.Join(dir, filepath.FromSlash(rel))
	f, err := os.OpenFile(filepath.Join(d, announcedName), os.O_WRONLY|os.O_CREATE, 0o640)
	if err == nil {
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = syncDir(d)
	}
	if err != nil {
		return fmt.Errorf("callsfu: mark recording %q announced: %w", rel, err)
	}
	return nil
}

// Unannounced returns the summaries of the recordings under dir (an
// Options.RecordDir) that stopped, name a chat, and were never marked
// announced (MarkAnnounced): the node died, or its store refused, between
// a recording's stop and its announcement, or RecoverRecordings has just
// finished it. The node announces them at start. Errors are joined; it
// goes on past them.
func Unannounced(dir string) ([]RecordingSummary, error) {
	var out []RecordingSummary
	errs := eachRecording(dir, "unannounced recordings", func(call uint64, rel, d string) error {
		if _, err := os.Stat(filepath.Join(d, announcedName)); err == nil {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(d, manifestName))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		var sum recordingSummary
		if err == nil {
			err = json.Unmarshal(b, &sum)
		}
		if err != nil {
			return fmt.Errorf("callsfu: unannounced recording %q: %w", d, err)
		}
		if !sum.Stopped.IsZero() && sum.Chat != 0 {
			out = append(out, publicSummary(call, rel, sum))
		}
		return nil
	})
	return out, errs
}

// Broker returns s as the broker has a recording's summary.
func (s *RecordingSummary) Broker() broker.CallRecordingSummary {
	out := broker.CallRecordingSummary{
		Call: broker.CallID(s.Call), Chat: storage.ChatID(s.Chat), By: storage.UserID(s.By), Dir: s.Dir,
		Started: s.Started, Stopped: s.Stopped, Recovered: s.Recovered,
		Files: make([]broker.CallRecordedFile, 0, len(s.Files)),
	}
	for _, f := range s.Files {
		kind := broker.CallTrackAudio
		if f.Kind == KindVideo {
			kind = broker.CallTrackVideo
		}
		offset := time.Duration(0)
		if !f.FirstFrame.IsZero() {
			offset = max(0, f.FirstFrame.Sub(s.Started))
		}
		out.Files = append(out.Files, broker.CallRecordedFile{
			Name: f.Name, User: storage.UserID(f.Peer.User), Device: storage.DeviceID(f.Peer.Device),
			Kind: kind, Codec: f.Codec, Offset: offset, Duration: f.Duration, Bytes: f.Bytes, Error: f.Error,
		})
	}
	return out
}

// syncDir syncs directory d, so that a file just made in it survives a
// crash.
func syncDir(d string) error {
	f, err := os.Open(d)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
