package brokertest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/gonets/gonets/broker"
)

// CallMedia is a fake SFU for tests of call signalling: it keeps who is
// in which room, logs every call the broker makes into it, answers a
// publish offer with "answer to " and the offer, refuses an offer that
// does not start with "v=0" (broker.ErrBadSDP), and lets a test push
// events to a participant (Emit) and make a method fail (Fail).
type CallMedia struct {
	mu     sync.Mutex // guards the following
	rooms  map[broker.CallID]map[broker.CallParticipant]func(broker.CallEvent)
	ended  map[broker.CallID]bool
	log    []string
	fail   map[string]error
	answer []string // subscriber answers, in order
}

// NewCallMedia returns an empty fake.
func NewCallMedia() *CallMedia {
	return &CallMedia{
		rooms: make(map[broker.CallID]map[broker.CallParticipant]func(broker.CallEvent)),
		ended: make(map[broker.CallID]bool),
		fail:  make(map[string]error),
	}
}

// Fail makes every later call of method ("Join", "Publish", ...) return
// err; a nil err lifts it.
func (m *CallMedia) Fail(method string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		delete(m.fail, method)
		return
	}
	m.fail[method] = err
}

// Log returns the calls made so far, one line each ("Join 5/2 video").
func (m *CallMedia) Log() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.log)
}

// In returns the participants in the call's room, by user.
func (m *CallMedia) In(call broker.CallID) []broker.CallParticipant {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ps []broker.CallParticipant
	for p := range m.rooms[call] {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b broker.CallParticipant) int { return cmp.Compare(a.User, b.User) })
	return ps
}

// Ended reports whether the broker ended the call's room.
func (m *CallMedia) Ended(call broker.CallID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ended[call]
}

// Answers returns the subscriber answers received, in order.
func (m *CallMedia) Answers() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.answer)
}

// Emit hands ev to p as the SFU would, and reports whether p is in a
// room. A p with a zero Join names the device's participant in the room,
// whatever its join. A CallEventRemoved takes p out of the room first.
func (m *CallMedia) Emit(p broker.CallParticipant, ev broker.CallEvent) bool {
	m.mu.Lock()
	if p.Join == 0 {
		for q := range m.rooms[p.Call] {
			if q.User == p.User && q.Device == p.Device {
				p = q
			}
		}
	}
	fn := m.rooms[p.Call][p]
	if fn != nil && ev.Kind == broker.CallEventRemoved {
		delete(m.rooms[p.Call], p)
	}
	m.mu.Unlock()
	if fn == nil {
		return false
	}
	fn(ev)
	return true
}

// enterLocked logs a call and returns its injected failure, or the
// error for a participant who is not in a room (unless join).
func (m *CallMedia) enterLocked(method string, p broker.CallParticipant, join bool, detail string) error {
	m.log = append(m.log, strings.TrimSpace(fmt.Sprintf("%s %d/%d %s", method, p.User, p.Device, detail)))
	if err := m.fail[method]; err != nil {
		return err
	}
	if _, in := m.rooms[p.Call][p]; !in && !join {
		return fmt.Errorf("fake sfu: %d/%d in call %d: %w", p.User, p.Device, p.Call, broker.ErrUnknownCall)
	}
	return nil
}

// Join implements broker.CallMedia.
func (m *CallMedia) Join(_ context.Context, p broker.CallParticipant, video bool, events func(broker.CallEvent)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	kind := "audio"
	if video {
		kind = "video"
	}
	if err := m.enterLocked("Join", p, true, kind); err != nil {
		return err
	}
	if m.ended[p.Call] {
		return fmt.Errorf("fake sfu: call %d ended: %w", p.Call, broker.ErrUnknownCall)
	}
	if m.rooms[p.Call] == nil {
		m.rooms[p.Call] = make(map[broker.CallParticipant]func(broker.CallEvent))
	}
	m.rooms[p.Call][p] = events
	return nil
}

// Publish implements broker.CallMedia.
func (m *CallMedia) Publish(_ context.Context, p broker.CallParticipant, offer string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.enterLocked("Publish", p, false, ""); err != nil {
		return "", err
	}
	if !strings.HasPrefix(offer, "v=0") {
		return "", fmt.Errorf("fake sfu: offer %.16q: %w", offer, broker.ErrBadSDP)
	}
	return "answer to " + offer, nil
}

// Answer implements broker.CallMedia.
func (m *CallMedia) Answer(_ context.Context, p broker.CallParticipant, answer string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.enterLocked("Answer", p, false, ""); err != nil {
		return err
	}
	m.answer = append(m.answer, answer)
	return nil
}

// Candidate implements broker.CallMedia.
func (m *CallMedia) Candidate(_ context.Context, p broker.CallParticipant, pc broker.CallPC, c broker.ICECandidate) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.enterLocked("Candidate", p, false, fmt.Sprintf("pc%d %s", pc, c.Candidate))
}

// Mute implements broker.CallMedia.
func (m *CallMedia) Mute(_ context.Context, p broker.CallParticipant, kind broker.CallTrack, trackID string, muted bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.enterLocked("Mute", p, false, fmt.Sprintf("track%d %q %v", kind, trackID, muted))
}

// RequestLayer implements broker.CallMedia.
func (m *CallMedia) RequestLayer(_ context.Context, p broker.CallParticipant, track string, q broker.CallQuality) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.enterLocked("RequestLayer", p, false, fmt.Sprintf("%s q%d", track, q))
}

// Leave implements broker.CallMedia.
func (m *CallMedia) Leave(_ context.Context, p broker.CallParticipant) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.enterLocked("Leave", p, false, ""); err != nil {
		return err
	}
	delete(m.rooms[p.Call], p)
	return nil
}

// End implements broker.CallMedia.
func (m *CallMedia) End(_ context.Context, call broker.CallID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.log = append(m.log, fmt.Sprintf("End %d", call))
	delete(m.rooms, call)
	m.ended[call] = true
	return nil
}

var _ broker.CallMedia = (*CallMedia)(nil)
