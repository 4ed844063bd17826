package callsfu

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// nextUpdate returns p's next call update of kind, skipping the others.
func (p *sdkPeer) nextUpdate(kind wire.CallUpdateKind) client.CallPush {
	p.t.Helper()
	for {
		ev := p.next(client.EventCallUpdate)
		if ev.Call.Update == kind {
			return ev.Call
		}
	}
}

// nextRecorded returns the recording announced in p's next message,
// skipping call records.
func (p *sdkPeer) nextRecorded() (client.Message, client.CallRecorded) {
	p.t.Helper()
	for {
		m := p.next(client.EventMessage).Message
		if m.Kind == wire.MsgKind_MSG_KIND_CALL {
			continue
		}
		r, err := client.CallRecordedOf(m)
		if err != nil {
			p.t.Fatal(err)
		}
		return m, r
	}
}

// checkRecorded checks an announced recording against the files under
// dir: one file per track of each user in want (audio and video), each
// there, of the size announced, holding frames that pion's readers read
// to the end without an error, and the recording as long as it ran.
func checkRecorded(t *testing.T, dir string, r client.CallRecorded, call uint64, by uint64, want []uint64) {
	t.Helper()
	if r.Call != call || r.StartedBy != by || r.Recovered {
		t.Fatalf("recording %+v: want call %d started by %d", r, call, by)
	}
	if r.Duration <= 0 || r.Started.IsZero() {
		t.Fatalf("recording %+v has no duration", r)
	}
	var got []string
	var total uint64
	for _, f := range r.Files {
		got = append(got, f.Track.String()+" of "+strings.Split(filepath.Base(f.Name), ".")[0])
		total += f.Bytes
		if f.Error != "" || f.Duration <= 0 || f.Duration > r.Duration+time.Second {
			t.Errorf("file %+v: error or duration out of the recording's %v", f, r.Duration)
		}
		if !strings.HasPrefix(f.Name, strconv.FormatUint(call, 10)+"/") || filepath.IsAbs(f.Name) || strings.Contains(f.Name, "..") {
			t.Errorf("file name %q is not relative to the recordings directory", f.Name)
		}
		data := readFile(t, filepath.Join(dir, filepath.FromSlash(f.Name)))
		if uint64(len(data)) != f.Bytes {
			t.Errorf("%s: %d bytes, announced %d", f.Name, len(data), f.Bytes)
		}
		switch f.Track {
		case wire.CallTrack_CALL_TRACK_AUDIO:
			if f.Codec != "opus" || !strings.HasSuffix(f.Name, ".ogg") {
				t.Errorf("audio file %+v", f)
			}
			_, pages, err := readOgg(t, data)
			if err != nil || len(pages) < 10 {
				t.Errorf("%s: %d Opus packets, then %v", f.Name, len(pages), err)
			}
			if len(pages) > 0 && pages[len(pages)-1].flags&oggFlagEOS == 0 {
				t.Errorf("%s: the last page has no end-of-stream flag", f.Name)
			}
		case wire.CallTrack_CALL_TRACK_VIDEO:
			if f.Codec != "vp8" || !strings.HasSuffix(f.Name, ".ivf") {
				t.Errorf("video file %+v", f)
			}
			h, frames, _, err := readIVF(t, data)
			if err != nil || len(frames) < 10 || h.FourCC != "VP80" {
				t.Errorf("%s: %s, %d frames, then %v", f.Name, h.FourCC, len(frames), err)
			}
		default:
			t.Errorf("file %+v of track %v", f, f.Track)
		}
	}
	if total != r.Bytes {
		t.Errorf("files of %d bytes together, announced %d", total, r.Bytes)
	}
	var wantFiles []string
	for _, u := range want {
		wantFiles = append(wantFiles, "CALL_TRACK_AUDIO of "+strconv.FormatUint(u, 10), "CALL_TRACK_VIDEO of "+strconv.FormatUint(u, 10))
	}
	slices.Sort(got)
	slices.Sort(wantFiles)
	if !slices.Equal(got, wantFiles) {
		t.Fatalf("files %q, want %q", got, wantFiles)
	}
}

// recordingNode starts a node with the SFU behind it, recording into a
// temporary directory, which it returns.
func recordingNode(t *testing.T) (*SFU, *brokertest.Node, string) {
	t.Helper()
	dir := t.TempDir()
	s := newTestSFU(t, Options{Logger: slog.New(slog.DiscardHandler), RecordDir: dir})
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{Calls: NewBrokerMedia(s)}})
	return s, n, dir
}

// TestRecordingGroupCall records a group call through a real node: a
// member who is not an admin is refused (FORBIDDEN) and nothing is
// recorded; the owner starts it, the other participant hears so, a
// member who joins later learns it from CallInfo and the tracks that
// member publishes then are recorded too; the stop answers once the
// recording is in the chat, announced with every file, each of which is
// where the message says, of its size, and reads to its end; an offline
// member finds the announcement in the chat's history.
func TestRecordingGroupCall(t *testing.T) {
	_, n, dir := recordingNode(t)
	alice, bob := dialPeer(t, n, "alice", 1), dialPeer(t, n, "bob", 2)
	alice.next(client.EventConnected)
	bob.next(client.EventConnected)
	chat, err := alice.c.CreateChat(alice.ctx(), wire.ChatKind_CHAT_KIND_GROUP, []uint64{2, 3, 4}, "team")
	if err != nil {
		t.Fatal(err)
	}
	info, err := alice.c.StartCall(alice.ctx(), chat.Chat, true)
	if err != nil {
		t.Fatal(err)
	}
	alice.call.Store(info.Call)
	alice.publish('A')
	ring := bob.next(client.EventCallRing).Call
	bob.call.Store(ring.Call)
	if _, err := bob.c.AcceptCall(bob.ctx(), ring.Call); err != nil {
		t.Fatal(err)
	}
	bob.publish('B')
	waitFor(t, "media both ways", func() bool { return alice.received("audio") >= 20 && bob.received("video") >= 20 })

	if err := bob.c.StartRecording(bob.ctx(), info.Call); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("a member's start = %v, want FORBIDDEN", err)
	}
	if err := bob.c.StopRecording(bob.ctx(), info.Call); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("a member's stop = %v, want FORBIDDEN", err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("recordings after a refused start: %v, %v", ents, err)
	}

	if err := alice.c.StartRecording(alice.ctx(), info.Call); err != nil {
		t.Fatal(err)
	}
	if u := bob.nextUpdate(wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STARTED); u.User != 1 || u.Call != info.Call {
		t.Fatalf("bob told %+v", u)
	}
	if err := alice.c.StartRecording(alice.ctx(), info.Call); err != nil {
		t.Fatalf("a second start = %v, want Done", err)
	}

	carol := dialPeer(t, n, "carol", 3)
	carol.next(client.EventConnected)
	cinfo, err := carol.c.JoinCall(carol.ctx(), info.Call)
	if err != nil {
		t.Fatal(err)
	}
	if !cinfo.Recording {
		t.Fatal("a member joining a call being recorded is not told so")
	}
	carol.call.Store(info.Call)
	carol.publish('E') // an Opus TOC of two 10 ms frames, as 'A' and 'B'
	waitFor(t, "carol's tracks at bob's", func() bool {
		bob.mu.Lock()
		defer bob.mu.Unlock()
		return len(slices.DeleteFunc(slices.Clone(bob.streams), func(s string) bool { return s != "3.1" })) == 2
	})
	time.Sleep(500 * time.Millisecond) // half a second of carol's media

	if err := alice.c.StopRecording(alice.ctx(), info.Call); err != nil {
		t.Fatal(err)
	}
	m, rec := bob.nextRecorded()
	if m.Sender != 1 || m.Chat != chat.Chat {
		t.Fatalf("announcement %+v, want sent by alice in chat %d", m, chat.Chat)
	}
	checkRecorded(t, dir, rec, info.Call, 1, []uint64{1, 2, 3})
	if u := bob.nextUpdate(wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STOPPED); u.User != 1 {
		t.Fatalf("bob told %+v", u)
	}
	if err := alice.c.StopRecording(alice.ctx(), info.Call); err != nil {
		t.Fatalf("a second stop = %v, want Done", err)
	}

	dave := dialPeer(t, n, "dave", 4) // offline until now
	dave.next(client.EventConnected)
	page, err := dave.c.History(dave.ctx(), chat.Chat, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range page.Messages {
		if r, err := client.CallRecordedOf(m); err == nil && r.Call == info.Call && len(r.Files) == 6 {
			found = true
		}
	}
	if !found {
		t.Fatalf("dave's history of %d messages holds no announcement", len(page.Messages))
	}
}

// TestRecordingAcrossCallEnd: in a direct chat either participant may
// record (it has no admins); a hang-up with the recording running stops
// it, and it is announced in the chat with both participants' files.
func TestRecordingAcrossCallEnd(t *testing.T) {
	s, n, dir := recordingNode(t)
	alice, bob := dialPeer(t, n, "alice", 1), dialPeer(t, n, "bob", 2)
	alice.next(client.EventConnected)
	bob.next(client.EventConnected)
	chat, err := alice.c.CreateChat(alice.ctx(), wire.ChatKind_CHAT_KIND_DIRECT, []uint64{2}, "")
	if err != nil {
		t.Fatal(err)
	}
	info, err := alice.c.StartCall(alice.ctx(), chat.Chat, true)
	if err != nil {
		t.Fatal(err)
	}
	alice.call.Store(info.Call)
	alice.publish('A')
	ring := bob.next(client.EventCallRing).Call
	bob.call.Store(ring.Call)
	if _, err := bob.c.AcceptCall(bob.ctx(), ring.Call); err != nil {
		t.Fatal(err)
	}
	bob.publish('B')
	if err := bob.c.StartRecording(bob.ctx(), info.Call); err != nil {
		t.Fatalf("bob's start in a direct chat: %v", err)
	}
	if u := alice.nextUpdate(wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STARTED); u.User != 2 {
		t.Fatalf("alice told %+v", u)
	}
	waitFor(t, "media both ways", func() bool { return alice.received("video") >= 60 && bob.received("video") >= 60 })

	if err := alice.c.HangUp(alice.ctx(), info.Call); err != nil {
		t.Fatal(err)
	}
	m, rec := bob.nextRecorded()
	if m.Sender != 2 || m.Device != uint64(1<<64-1) {
		t.Fatalf("announcement from %d/%d, want bob's, from the node's device", m.Sender, m.Device)
	}
	checkRecorded(t, dir, rec, info.Call, 2, []uint64{1, 2})
	waitFor(t, "the SFU's room gone", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.rooms) == 0
	})
	if err := alice.c.StartRecording(alice.ctx(), info.Call); !errors.Is(err, client.ErrUnknownCall) {
		t.Fatalf("a start after the end = %v, want UNKNOWN_CALL", err)
	}
}

// TestRecordingRefusals: the SFU refuses a recording without a
// directory, of a call not running, a second of one call, and a stop of
// none; a call's end calls Done once.
func TestRecordingRefusals(t *testing.T) {
	s := newTestSFU(t, Options{Logger: slog.New(slog.DiscardHandler)})
	if err := s.StartRecording(1, RecordOptions{}); !errors.Is(err, ErrRecordingOff) || CodeOf(err) != CodeForbidden {
		t.Fatalf("start without RecordDir = %v", err)
	}
	dir := t.TempDir()
	s = newTestSFU(t, Options{Logger: slog.New(slog.DiscardHandler), RecordDir: dir})
	if err := s.StartRecording(7, RecordOptions{}); !errors.Is(err, ErrUnknownCall) {
		t.Fatalf("start of no call = %v", err)
	}
	if err := s.Start(7); err != nil {
		t.Fatal(err)
	}
	if err := s.StopRecording(7); !errors.Is(err, ErrNotRecording) {
		t.Fatalf("stop of no recording = %v", err)
	}
	done := make(chan RecordingSummary, 2)
	o := RecordOptions{Chat: 3, By: 4, Done: func(sum RecordingSummary, err error) {
		if err != nil {
			t.Error(err)
		}
		done <- sum
	}}
	if err := s.StartRecording(7, o); err != nil {
		t.Fatal(err)
	}
	if err := s.StartRecording(7, o); !errors.Is(err, ErrRecording) {
		t.Fatalf("second start = %v", err)
	}
	if err := s.End(7); err != nil {
		t.Fatal(err)
	}
	sum := <-done
	if sum.Call != 7 || sum.Chat != 3 || sum.By != 4 || sum.Dir != "7/1" || sum.Stopped.Before(sum.Started) || len(sum.Files) != 0 {
		t.Fatalf("summary %+v", sum)
	}
	if m := readManifest(t, filepath.Join(dir, "7", "1")); m.Stopped.IsZero() || m.Chat != 3 || m.By != 4 {
		t.Fatalf("manifest %+v", m)
	}
	if err := s.Start(7); err != nil {
		t.Fatal(err)
	}
	if err := s.StartRecording(7, o); err != nil {
		t.Fatal(err)
	}
	if err := s.StopRecording(7); err != nil {
		t.Fatal(err)
	}
	if sum := <-done; sum.Dir != "7/2" {
		t.Fatalf("the call's second recording in %q, want 7/2", sum.Dir)
	}
	select {
	case sum := <-done:
		t.Fatalf("Done called again: %+v", sum)
	default:
	}
}

// TestRecoverRecordings: of the recordings under a directory, the one a
// node left unstopped (a copy of a running recording's directory, as a
// SIGKILL leaves it) is recovered, its files finished and reading to
// their end, and returned with the manifest's chat and starter; one
// stopped and a directory without a manifest are let be.
func TestRecoverRecordings(t *testing.T) {
	checkRecordLeaks(t)
	live, root := t.TempDir(), t.TempDir()
	r, err := newRecording(live, quiet(recordingOptions{Call: "9", Chat: 5, By: 6}))
	if err != nil {
		t.Fatal(err)
	}
	video, audio := newRecSource(t, true), newRecSource(t, false)
	if err := r.addTrack(video.up, "6.1", "video-1"); err != nil {
		t.Fatal(err)
	}
	if err := r.addTrack(audio.up, "6.1", "audio-0"); err != nil {
		t.Fatal(err)
	}
	video.feed(40)
	audio.feed(60)
	waitFor(t, "frames written", func() bool {
		m := readManifest(t, live)
		return len(m.Tracks) == 2 && !m.Tracks[0].FirstFrame.IsZero() && !m.Tracks[1].FirstFrame.IsZero()
	})
	time.Sleep(600 * time.Millisecond) // past Hold and a sync
	killed := filepath.Join(root, "9", "1")
	copyDir(t, live, killed)
	if _, err := r.stop(); err != nil {
		t.Fatal(err)
	}
	copyDir(t, live, filepath.Join(root, "9", "2")) // stopped: let be
	if err := os.MkdirAll(filepath.Join(root, "9", "3"), 0o750); err != nil {
		t.Fatal(err)
	}

	sums, err := RecoverRecordings(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 1 {
		t.Fatalf("recovered %d recordings, want 1: %+v", len(sums), sums)
	}
	sum := sums[0]
	if sum.Call != 9 || sum.Chat != 5 || sum.By != 6 || sum.Dir != "9/1" || !sum.Recovered || len(sum.Files) != 2 {
		t.Fatalf("summary %+v", sum)
	}
	for _, f := range sum.Files {
		data := readFile(t, filepath.Join(root, filepath.FromSlash(f.Name)))
		if f.Peer != (Peer{User: 6, Device: 1}) || f.Bytes != int64(len(data)) || f.Frames == 0 || f.Error != "" {
			t.Errorf("file %+v (%d bytes)", f, len(data))
		}
		if f.Kind == KindVideo {
			if _, frames, _, err := readIVF(t, data); err != nil || uint64(len(frames)) != f.Frames {
				t.Errorf("%s: %d frames, then %v; want %d", f.Name, len(frames), err, f.Frames)
			}
		} else if _, pages, err := readOgg(t, data); err != nil || len(pages) == 0 || pages[len(pages)-1].flags&oggFlagEOS == 0 {
			t.Errorf("%s: %d pages, then %v, or no end-of-stream flag", f.Name, len(pages), err)
		}
	}
	if b := sum.Broker(); b.Chat != 5 || b.By != 6 || len(b.Files) != 2 || b.Files[0].User != 6 || b.Files[0].Name != sum.Files[0].Name {
		t.Fatalf("the broker's summary %+v", b)
	}
	if again, err := RecoverRecordings(root); err != nil || len(again) != 0 {
		t.Fatalf("a second recovery = %+v, %v; want none", again, err)
	}
	if sums, err := RecoverRecordings(filepath.Join(root, "none")); err != nil || sums != nil {
		t.Fatalf("recovery of a missing directory = %v, %v", sums, err)
	}
}

// copyDir copies the files of dir into a new directory to.
func copyDir(t *testing.T, dir, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o750); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := os.WriteFile(filepath.Join(to, e.Name()), readFile(t, filepath.Join(dir, e.Name())), 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRecordingUnannounced: a recording whose announcement failed (the
// broker's done returned an error; a crash between the stop and the
// announcement leaves the same) is among Unannounced, for the node to
// announce at its next start, until MarkAnnounced; one announced is not.
func TestRecordingUnannounced(t *testing.T) {
	dir := t.TempDir()
	s := newTestSFU(t, Options{Logger: slog.New(slog.DiscardHandler), RecordDir: dir})
	m := NewBrokerMedia(s)
	record := func(announce error) {
		t.Helper()
		if err := s.Start(7); err != nil {
			t.Fatal(err)
		}
		by := broker.CallParticipant{Call: 7, User: 4, Device: 1}
		if err := m.StartRecording(t.Context(), by, 3, func(broker.CallRecordingSummary) error { return announce }); err != nil {
			t.Fatal(err)
		}
		if err := s.End(7); err != nil {
			t.Fatal(err)
		}
	}
	dirs := func() []string {
		t.Helper()
		sums, err := Unannounced(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, sum := range sums {
			if sum.Chat != 3 || sum.By != 4 || sum.Call != 7 || sum.Stopped.IsZero() {
				t.Errorf("unannounced %+v", sum)
			}
			out = append(out, sum.Dir)
		}
		return out
	}
	record(errors.New("the store refused"))
	record(nil)
	if got := dirs(); !slices.Equal(got, []string{"7/1"}) {
		t.Fatalf("unannounced %q, want the one whose announcement failed, 7/1", got)
	}
	if err := MarkAnnounced(dir, "7/1"); err != nil {
		t.Fatal(err)
	}
	if got := dirs(); len(got) != 0 {
		t.Fatalf("unannounced %q after MarkAnnounced, want none", got)
	}
	if sums, err := Unannounced(filepath.Join(dir, "none")); err != nil || sums != nil {
		t.Fatalf("a missing directory: %v, %v", sums, err)
	}
}
