package callsfu

import (
	"slices"
	"testing"
	"time"
)

// talk is one stretch of a scenario: for dur, each participant sends a
// packet every 20 ms at its level (absent: sends nothing, as with DTX).
type talk struct {
	dur    time.Duration
	levels map[string]uint8
}

// speakerScenario plays stretches into a detector, asking dominant every
// 100 ms, and returns the dominant speaker at the end of each stretch and
// every change seen, with its time.
func speakerScenario(t *testing.T, ids []string, stretches []talk) (ends []string, changes []string) {
	t.Helper()
	det := newSpeakerDetector()
	sps := map[string]*speaker{}
	for _, id := range ids {
		sps[id] = det.add(id)
	}
	now := t0
	for _, st := range stretches {
		for end := now.Add(st.dur); now.Before(end); now = now.Add(20 * time.Millisecond) {
			for id, lv := range st.levels {
				sps[id].observe(lv, now)
			}
			if now.Sub(t0)%(100*time.Millisecond) == 0 {
				if id, changed := det.dominant(now); changed {
					changes = append(changes, id)
				}
			}
		}
		id, _ := det.dominant(now)
		ends = append(ends, id)
	}
	return ends, changes
}

func TestSpeakerDetector(t *testing.T) {
	const (
		speech = 30  // -30 dBov
		loud   = 20  // -20 dBov
		quiet  = 40  // -40 dBov: speech, 10 dB below loud
		noise  = 75  // background after noise suppression
		silent = 127 // silence
	)
	for _, c := range []struct {
		name      string
		stretches []talk
		ends      []string // the dominant speaker after each stretch
		changes   []string
	}{
		{
			name: "first speaker takes the floor after the hold",
			stretches: []talk{
				{300 * time.Millisecond, map[string]uint8{"a": speech, "b": silent}},
				{time.Second, map[string]uint8{"a": speech, "b": silent}},
			},
			ends:    []string{"", "a"},
			changes: []string{"a"},
		},
		{
			name: "noise never takes the floor",
			stretches: []talk{
				{3 * time.Second, map[string]uint8{"a": noise, "b": silent}},
			},
			ends: []string{""},
		},
		{
			name: "a turn passes",
			stretches: []talk{
				{2 * time.Second, map[string]uint8{"a": speech, "b": silent}},
				{2 * time.Second, map[string]uint8{"a": silent, "b": speech}},
			},
			ends:    []string{"a", "b"},
			changes: []string{"a", "b"},
		},
		{
			name: "a cough does not move the floor",
			stretches: []talk{
				{2 * time.Second, map[string]uint8{"a": speech, "b": silent}},
				{300 * time.Millisecond, map[string]uint8{"a": speech, "b": loud}},
				{2 * time.Second, map[string]uint8{"a": speech, "b": silent}},
			},
			ends:    []string{"a", "a", "a"},
			changes: []string{"a"},
		},
		{
			name: "two similar voices at once: no flapping",
			stretches: []talk{
				{2 * time.Second, map[string]uint8{"a": speech, "b": silent}},
				{3 * time.Second, map[string]uint8{"a": speech, "b": speech - 3}},
			},
			ends:    []string{"a", "a"},
			changes: []string{"a"},
		},
		{
			name: "a clearly louder voice wins over a quiet one",
			stretches: []talk{
				{2 * time.Second, map[string]uint8{"a": quiet, "b": silent}},
				{2 * time.Second, map[string]uint8{"a": quiet, "b": loud}},
			},
			ends:    []string{"a", "b"},
			changes: []string{"a", "b"},
		},
		{
			name: "silence keeps the last speaker",
			stretches: []talk{
				{2 * time.Second, map[string]uint8{"a": speech, "b": silent}},
				{5 * time.Second, map[string]uint8{}}, // DTX: no packets at all
			},
			ends:    []string{"a", "a"},
			changes: []string{"a"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			ends, changes := speakerScenario(t, []string{"a", "b"}, c.stretches)
			if !slices.Equal(ends, c.ends) {
				t.Errorf("dominant after each stretch %q, want %q", ends, c.ends)
			}
			if !slices.Equal(changes, c.changes) {
				t.Errorf("changes %q, want %q", changes, c.changes)
			}
		})
	}
}

func TestSpeakerRemoved(t *testing.T) {
	det := newSpeakerDetector()
	a, b := det.add("a"), det.add("b")
	now := t0
	for range 50 {
		now = now.Add(20 * time.Millisecond)
		a.observe(30, now)
		b.observe(40, now)
		det.dominant(now)
	}
	if got := det.speaking(now, nil); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("speaking = %q, want [a b]", got)
	}
	if id, _ := det.dominant(now); id != "a" {
		t.Fatalf("dominant = %q, want a", id)
	}
	det.remove(a)
	if id, changed := det.dominant(now); id != "" || !changed {
		t.Errorf("after the dominant left: %q, %v, want \"\", true", id, changed)
	}
	for range 30 {
		now = now.Add(20 * time.Millisecond)
		b.observe(40, now)
		det.dominant(now)
	}
	if id, _ := det.dominant(now); id != "b" {
		t.Errorf("dominant = %q, want b", id)
	}
	if got := det.speaking(now, nil); !slices.Equal(got, []string{"b"}) {
		t.Errorf("speaking = %q, want [b]", got)
	}
}

func TestAudioLevelFedFromPackets(t *testing.T) {
	det := newSpeakerDetector()
	sp := det.add("a")
	u := newUpTrack(upTrackConfig{kind: kindAudio, mimeType: "audio/opus", audioLevelExtID: 1, speaker: sp})
	d := u.subscribe(&recorder{}, 1, 111)
	defer u.unsubscribe(d)
	now := t0
	for i := range 60 { // rtpPacket sets level 0x30 = -48 dBov under id 1
		now = now.Add(20 * time.Millisecond)
		if err := u.receive(0, rtpPacket(t, uint16(i), uint32(i)*960, false, vp8Payload(0, uint16(i), false, false, 20)), now); err != nil {
			t.Fatal(err)
		}
		det.dominant(now)
	}
	if id, _ := det.dominant(now); id != "a" {
		t.Errorf("dominant = %q, want a", id)
	}
}

func TestSpeakerHold(t *testing.T) {
	det := newSpeakerDetector()
	a, b := det.add("a"), det.add("b")
	// set fixes each speaker's smoothed loudness at now.
	set := func(now time.Time, sa, sb float64) {
		a.score, a.last, b.score, b.last = sa, now, sb, now
	}
	for _, step := range []struct {
		at     time.Duration
		sa, sb float64
		want   string
	}{
		{0, 90, 0, ""},
		{400 * time.Millisecond, 90, 0, ""},
		{500 * time.Millisecond, 90, 0, "a"},                       // led for the hold
		{600 * time.Millisecond, 90, 95, "a"},                      // louder, within the margin
		{700 * time.Millisecond, 90, 96, "a"},                      // leads by the margin from here
		{1100 * time.Millisecond, 90, 96, "a"},                     // 400 ms
		{1150 * time.Millisecond, 90, 90, "a"},                     // lost the lead: the hold restarts
		{1200 * time.Millisecond, 90, 96, "a"},                     // leads again
		{1600 * time.Millisecond, 90, 96, "a"},                     // 400 ms
		{1700 * time.Millisecond, 90, 96, "b"},                     // 500 ms
		{2500 * time.Millisecond, 20, speakerMinLoudness - 1, "b"}, // all quiet: b keeps it
	} {
		now := t0.Add(step.at)
		set(now, step.sa, step.sb)
		if got, _ := det.dominant(now); got != step.want {
			t.Errorf("at %v (a %v, b %v): dominant %q, want %q", step.at, step.sa, step.sb, got, step.want)
		}
	}
}
