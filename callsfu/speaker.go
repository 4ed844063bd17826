package callsfu

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"time"
)

// The active-speaker algorithm's constants.
//
// Each audio packet carries its level in the RFC 6464 header extension: 0 to
// 127, the frame's loudness in -dBov (0 loudest, 127 silence). A speaker's
// loudness is 127 minus that, smoothed by an exponential moving average with
// time constant speakerTau. Missing packets count as silence: a score not
// updated for more than speakerGrace decays toward 0 at the same rate (Opus
// with DTX sends one packet in 400 ms while silent).
//
// The dominant speaker changes only when a challenger is louder than
// speakerMinLoudness and than the dominant speaker by speakerMargin, and has
// stayed so for speakerHold: a cough, a laugh or two people talking at once
// do not move the floor, and it does not flap between two similar voices.
// When everybody is silent the last dominant speaker keeps the floor.
const (
	// speakerTau is the smoothing time constant: a spoken syllable (~200 ms)
	// moves a score about half way, a click (one 20 ms frame) by 6%.
	speakerTau = 300 * time.Millisecond
	// speakerGrace is how long a score holds without packets: three 20 ms
	// Opus frames, so a packet late by jitter does not count as silence.
	speakerGrace = 60 * time.Millisecond
	// speakerMinLoudness is the smoothed loudness a challenger needs:
	// levels louder than -60 dBov, above the noise floor browsers leave
	// after noise suppression; speech runs at about -20 to -45 dBov.
	speakerMinLoudness = 67
	// speakerMargin is how much louder (in dB) than the dominant speaker a
	// challenger must be.
	speakerMargin = 6
	// speakerHold is how long a challenger must lead before it takes the
	// floor.
	speakerHold = 500 * time.Millisecond
)

// speakerDetector finds a call's dominant speaker from its participants'
// audio levels. Participants are added with add, which returns the handle
// their audio tracks feed (upTrackConfig.speaker); dominant is asked
// periodically (every 100 to 300 ms) and reports changes to push as events.
// All methods may be called from any goroutine; mu guards all state, the
// speakers' included, and is held only for arithmetic.
type speakerDetector struct {
	mu         sync.Mutex // guards the following and every speaker's fields
	speakers   []*speaker
	dom        *speaker  // the dominant speaker; nil: none yet, or it left
	challenger *speaker  // the one leading the dominant, if any
	since      time.Time // when challenger took the lead
	reported   string    // the id dominant last returned
}

// speaker is one participant's audio activity.
type speaker struct {
	id  string
	det *speakerDetector
	// Guarded by det.mu.
	score float64   // smoothed loudness as of last
	last  time.Time // when score was last updated; zero: never
}

// newSpeakerDetector returns a detector with no participants.
func newSpeakerDetector() *speakerDetector { return &speakerDetector{} }

// add registers a participant by id and returns its handle.
func (s *speakerDetector) add(id string) *speaker {
	sp := &speaker{id: id, det: s}
	s.mu.Lock()
	s.speakers = append(s.speakers, sp)
	s.mu.Unlock()
	return sp
}

// remove unregisters a participant; if it held the floor, nobody does until
// someone else speaks.
func (s *speakerDetector) remove(sp *speaker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.speakers {
		if x == sp {
			s.speakers = append(s.speakers[:i], s.speakers[i+1:]...)
			break
		}
	}
	if s.dom == sp {
		s.dom = nil
	}
	if s.challenger == sp {
		s.challenger = nil
	}
}

// observe takes one audio packet's level (0 loudest to 127 silence, in
// -dBov) at arrival. Allocates nothing.
func (sp *speaker) observe(level uint8, arrival time.Time) {
	loud := float64(127 - min(level, 127))
	sp.det.mu.Lock()
	defer sp.det.mu.Unlock()
	if sp.last.IsZero() {
		sp.score, sp.last = 0, arrival
	}
	dt := min(max(arrival.Sub(sp.last), 0), speakerGrace)
	score := sp.scoreLocked(arrival)
	alpha := 1 - math.Exp(-float64(dt)/float64(speakerTau))
	sp.score = score + (loud-score)*alpha
	sp.last = arrival
}

// scoreLocked returns the smoothed loudness at now, decayed for the time
// past speakerGrace without packets.
func (sp *speaker) scoreLocked(now time.Time) float64 {
	if sp.last.IsZero() {
		return 0
	}
	gap := now.Sub(sp.last) - speakerGrace
	if gap <= 0 {
		return sp.score
	}
	return sp.score * math.Exp(-float64(gap)/float64(speakerTau))
}

// dominant returns the dominant speaker's id at now ("" if none yet) and
// whether it differs from the one the previous call returned.
func (s *speakerDetector) dominant(now time.Time) (id string, changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.electLocked(now)
	if s.dom != nil {
		id = s.dom.id
	}
	changed = id != s.reported
	s.reported = id
	return id, changed
}

// electLocked hands the floor to a challenger that has led long enough.
func (s *speakerDetector) electLocked(now time.Time) {
	var best *speaker
	bestScore := 0.0
	for _, sp := range s.speakers {
		if sc := sp.scoreLocked(now); best == nil || sc > bestScore {
			best, bestScore = sp, sc
		}
	}
	leads := best != nil && best != s.dom && bestScore >= speakerMinLoudness
	if leads && s.dom != nil {
		leads = bestScore >= s.dom.scoreLocked(now)+speakerMargin
	}
	if !leads {
		s.challenger = nil
		return
	}
	if best != s.challenger {
		s.challenger, s.since = best, now
	}
	if now.Sub(s.since) >= speakerHold {
		s.dom, s.challenger = best, nil
	}
}

// speaking appends to dst the ids of the participants whose smoothed
// loudness at now reaches speakerMinLoudness, loudest first, and returns
// it: who is talking right now, for a list of active speakers beside the
// dominant one (it has no hysteresis of its own).
func (s *speakerDetector) speaking(now time.Time, dst []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	type loud struct {
		id    string
		score float64
	}
	var ls []loud
	for _, sp := range s.speakers {
		if sc := sp.scoreLocked(now); sc >= speakerMinLoudness {
			ls = append(ls, loud{sp.id, sc})
		}
	}
	slices.SortStableFunc(ls, func(a, b loud) int { return cmp.Compare(b.score, a.score) })
	for _, l := range ls {
		dst = append(dst, l.id)
	}
	return dst
}
