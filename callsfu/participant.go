package callsfu

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/webrtc/v4"
)

// Target names one of a participant's two PeerConnections.
type Target uint8

// The two PeerConnections of a participant.
const (
	// TargetPublisher is the PeerConnection the client offers and sends its
	// own media on.
	TargetPublisher Target = iota + 1
	// TargetSubscriber is the PeerConnection the SFU offers and sends the
	// others' media on.
	TargetSubscriber
)

// Candidate is a trickled ICE candidate, as in RTCIceCandidateInit. An empty
// Candidate string means the end of candidates.
type Candidate struct {
	Candidate     string
	SDPMid        string
	SDPMLineIndex uint16
}

// Reason says why a participant was removed.
type Reason uint8

// The reasons a participant leaves a call.
const (
	// ReasonLeft: Leave was called. No EventRemoved is sent for it.
	ReasonLeft Reason = iota + 1
	// ReasonSilent: no RTP or RTCP for Options.SilenceTimeout while media
	// was expected.
	ReasonSilent
	// ReasonICEFailed: one of its PeerConnections lost connectivity.
	ReasonICEFailed
	// ReasonReplaced: the same peer joined again.
	ReasonReplaced
	// ReasonCallEnded: the call was hung up (SFU.End) or abandoned.
	ReasonCallEnded
	// ReasonClosed: the SFU closed.
	ReasonClosed
	// ReasonSlowEvents: its events function fell Options.EventQueue events
	// behind.
	ReasonSlowEvents
	// ReasonClientClosed: the client closed one of its PeerConnections
	// without leaving.
	ReasonClientClosed
	// ReasonStreamEnded: a player (Play) whose tracks all ended: their
	// publisher stopped them or left.
	ReasonStreamEnded
	// ReasonNeverConnected: none of its PeerConnections connected within
	// Options.SilenceTimeout plus Options.ICEFailedTimeout of its joining:
	// it never negotiated one, or its ICE never got through.
	ReasonNeverConnected
)

// String names the reason for logs.
func (r Reason) String() string {
	switch r {
	case ReasonLeft:
		return "left"
	case ReasonSilent:
		return "silent"
	case ReasonICEFailed:
		return "ice failed"
	case ReasonReplaced:
		return "replaced"
	case ReasonCallEnded:
		return "call ended"
	case ReasonClosed:
		return "closed"
	case ReasonSlowEvents:
		return "slow events"
	case ReasonClientClosed:
		return "client closed"
	case ReasonStreamEnded:
		return "stream ended"
	case ReasonNeverConnected:
		return "never connected"
	}
	return "unknown"
}

// EventKind says what an Event reports.
type EventKind uint8

// The kinds of Event, and the fields each one sets.
const (
	// EventOffer: a new SDP offer (SDP) for the subscriber PeerConnection;
	// the client answers it with Participant.Answer.
	EventOffer EventKind = iota + 1
	// EventCandidate: an ICE candidate (Candidate) of the subscriber
	// PeerConnection (Target). Candidates of the publisher PeerConnection
	// come in Publish's answer instead.
	EventCandidate
	// EventJoined: Peer is in the call (sent on Join for everyone already
	// there). A second EventJoined of the same peer means it reconnected.
	EventJoined
	// EventLeft: Peer left the call.
	EventLeft
	// EventTrackPublished: Peer publishes Track. It is offered to this
	// participant in the next EventOffer, unless Peer is this participant,
	// which learns so the ID of its own track (for SetMuted).
	EventTrackPublished
	// EventTrackRemoved: Peer stopped publishing Track.
	EventTrackRemoved
	// EventTrackMuted: Peer muted or unmuted Track (Track.Muted); its
	// publisher hears it too.
	EventTrackMuted
	// EventSpeakers: the active speakers changed (Speakers, loudest first).
	EventSpeakers
	// EventRemoved: this participant was removed (Reason); it is the last
	// event.
	EventRemoved
)

// Event is something a participant's client must hear. Kind says which
// fields are set.
type Event struct {
	Kind      EventKind
	Peer      Peer
	SDP       string
	Target    Target
	Candidate Candidate
	Track     Track
	Speakers  []Peer
	Reason    Reason
}

// role is what a participant does in its call.
type role uint8

const (
	// roleMember publishes and is sent everyone else's tracks (Join).
	roleMember role = iota
	// rolePublisher only publishes (JoinPublisher, a WHIP encoder): it has
	// no subscriber PeerConnection and is offered nothing.
	rolePublisher
	// rolePlayer only plays (Play, a WHEP player): its subscriber
	// PeerConnection answers the client's offer once with the tracks
	// published then and is never renegotiated; it is not announced to the
	// others and hears only its own removal.
	rolePlayer
)

// Participant is one peer in a call, with two PeerConnections: the
// publisher one the client offers (its own media, up) and the subscriber one
// the SFU offers (everyone else's media, down). A participant of a live
// stream has one of them only (JoinPublisher, Play). Its methods are safe
// for concurrent use.
type Participant struct {
	sfu     *SFU
	room    *room
	peer    Peer
	role    role
	events  *eventQueue
	speaker *speaker     // fed by its audio tracks' levels
	heard   atomic.Int64 // unix nanoseconds of the last RTP or RTCP received
	joined  time.Time    // when it was created
	// connected is set once one of its PeerConnections has connected; the
	// sweeper removes one that has not within neverConnectedAfter.
	connected atomic.Bool
	// subUp is set once the subscriber PeerConnection has connected (ICE
	// and DTLS): what is written to it before then is dropped by pion.
	subUp atomic.Bool
	// estimate is the subscriber PeerConnection's bandwidth estimate in
	// bit/s, stored by its estimator; the sweeper re-fits the layers to it.
	estimate atomic.Int64
	removing atomic.Bool // removeAsync has begun
	wg       sync.WaitGroup
	// publishMu makes Publish one offer at a time: it is held through the
	// wait for the SFU's candidates, which mu is not, so that the second of
	// two offers is not applied while the first awaits its answer. Taken
	// before mu; remove never takes it.
	publishMu sync.Mutex

	mu          sync.Mutex                           // guards the following
	pub         *webrtc.PeerConnection               // nil until the first Publish
	sub         *webrtc.PeerConnection               // nil for rolePublisher
	pending     map[Target][]webrtc.ICECandidateInit // before a remote description
	remote      [3]int                               // candidates added since the remote description, by Target
	rids        map[string][]string                  // simulcast rids by mid, from the last offer
	published   map[string]*publishedTrack           // by mid
	subs        map[string]*subscription             // by Track.ID
	fitted      int64                                // the estimate the layers were last fitted to
	offerOut    bool                                 // an offer awaits its answer
	restartICE  bool                                 // the next offer restarts ICE
	renegotiate bool                                 // subscriptions changed while offerOut
	publishing  bool                                 // counted among the room's publishers
	left        bool
}

// maxPendingCandidates bounds the trickled candidates held for a
// PeerConnection that has no remote description yet.
const maxPendingCandidates = 64

// maxRemoteCandidates bounds the candidates a client adds to one
// PeerConnection per remote description (a new offer or answer starts
// the count again): each is a pair the ICE agent checks, with STUN
// packets to an address the client chose.
const maxRemoteCandidates = 64

// newParticipant creates a participant of role with its subscriber
// PeerConnection, unless it only publishes.
func newParticipant(r *room, peer Peer, role role, events func(Event)) (*Participant, error) {
	p := &Participant{
		sfu:       r.sfu,
		room:      r,
		peer:      peer,
		role:      role,
		pending:   make(map[Target][]webrtc.ICECandidateInit),
		rids:      make(map[string][]string),
		published: make(map[string]*publishedTrack),
		subs:      make(map[string]*subscription),
	}
	p.joined = time.Now()
	p.heard.Store(p.joined.UnixNano())
	if role != rolePublisher {
		api, err := r.sfu.subscriberAPI(p.onEstimator)
		if err != nil {
			return nil, err
		}
		if p.sub, err = api.NewPeerConnection(r.sfu.rtcConfig()); err != nil {
			return nil, fmt.Errorf("callsfu: subscriber peer connection: %w", err)
		}
	}
	p.events = newEventQueue(r.sfu, events, r.sfu.opts.EventQueue, p.onSlowEvents)
	if p.sub != nil {
		p.watch(p.sub, TargetSubscriber)
		p.sub.OnICECandidate(p.onCandidate)
	}
	p.speaker = r.detector.add(peer.String())
	r.sfu.m.participants.Add(1)
	return p, nil
}

// Peer returns the participant's peer.
func (p *Participant) Peer() Peer { return p.peer }

// Publish applies the client's offer for its publisher PeerConnection (the
// first one creates it; a later one renegotiates) and returns the SFU's
// answer, which carries all of the SFU's ICE candidates. An offer that would
// make one publisher too many is refused with ErrTooManyPublishers, one with
// too many tracks with ErrTooManyTracks, a bad one with ErrBadSDP; none of
// them changes anything. A player (Play) publishes nothing: ErrBadRequest.
func (p *Participant) Publish(offer string) (string, error) {
	if p.role == rolePlayer {
		return "", fmt.Errorf("callsfu: publish %s: %w: a player publishes nothing", p.peer, ErrBadRequest)
	}
	o, err := parseOffer(offer)
	if err != nil {
		return "", fmt.Errorf("callsfu: publish %s: %w: %v", p.peer, ErrBadSDP, err)
	}
	if len(o.sending) > p.sfu.opts.MaxTracks {
		return "", fmt.Errorf("callsfu: publish %s (%d tracks): %w", p.peer, len(o.sending), ErrTooManyTracks)
	}
	p.publishMu.Lock()
	defer p.publishMu.Unlock()
	reserved := false
	if o.sends {
		if reserved, err = p.room.reservePublisher(p, p.sfu.opts.MaxPublishers); err != nil {
			return "", err
		}
	}
	answer, gone, err := p.applyOffer(offer, o)
	if err != nil {
		if reserved {
			p.room.releasePublisher(p)
		}
		return "", err
	}
	if !o.sends {
		p.room.releasePublisher(p)
	}
	for _, t := range gone {
		p.room.unpublish(t)
		t.close()
	}
	return answer, nil
}

// applyOffer applies a parsed offer to the publisher PeerConnection and
// returns the answer and the published tracks the offer no longer sends.
// It does not hold p.mu while the SFU's candidates are gathered into the
// answer (up to publisherGatherTimeout): a Leave meanwhile closes the
// PeerConnection (it is p.pub by then) and the offer fails with ErrLeft.
// The caller holds p.publishMu, or has the participant to itself.
func (p *Participant) applyOffer(offer string, o parsedOffer) (string, []*publishedTrack, error) {
	p.mu.Lock()
	if p.left {
		p.mu.Unlock()
		return "", nil, fmt.Errorf("callsfu: publish %s: %w", p.peer, ErrLeft)
	}
	pc, created := p.pub, false
	if pc == nil {
		var err error
		if pc, err = p.newPublisher(); err != nil {
			p.mu.Unlock()
			return "", nil, err
		}
		created = true
	}
	gathered, err := applyRemoteOffer(pc, offer)
	if err != nil {
		p.mu.Unlock()
		if created {
			p.closePC(pc)
		}
		return "", nil, fmt.Errorf("callsfu: publish %s: %w: %v", p.peer, ErrBadSDP, err)
	}
	if created {
		p.pub = pc
		p.flushCandidatesLocked(TargetPublisher)
	}
	if o.sends && !p.publishing {
		p.heard.Store(time.Now().UnixNano()) // silence counts from now on
	}
	p.publishing = o.sends
	p.rids = o.rids // before the lock is let go: onTrack reads them
	p.mu.Unlock()

	waitGathered(gathered)

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left { // remove closed pc, and the tracks still in p.published
		return "", nil, fmt.Errorf("callsfu: publish %s: %w", p.peer, ErrLeft)
	}
	var gone []*publishedTrack
	for mid, t := range p.published {
		if !o.sending[mid] {
			delete(p.published, mid)
			gone = append(gone, t)
		}
	}
	return pc.LocalDescription().SDP, gone, nil
}

// newPublisher creates the publisher PeerConnection.
func (p *Participant) newPublisher() (*webrtc.PeerConnection, error) {
	pc, err := p.sfu.pubAPI.NewPeerConnection(p.sfu.rtcConfig())
	if err != nil {
		return nil, fmt.Errorf("callsfu: publisher peer connection: %w", err)
	}
	p.watch(pc, TargetPublisher)
	pc.OnTrack(p.onTrack)
	return pc, nil
}

// onTrack starts forwarding a layer of a track the client publishes; the
// first layer of a track announces it to the room.
func (p *Participant) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	p.mu.Lock()
	if p.left || p.pub == nil {
		p.mu.Unlock()
		return
	}
	mid := transceiverMid(p.pub, recv)
	t, known := p.published[mid]
	if !known {
		t = newPublishedTrack(p, p.pub, mid, remote, recv, p.rids[mid])
		p.published[mid] = t
	}
	layer, ok := t.layerOf(remote.RID())
	if !ok {
		p.mu.Unlock()
		p.sfu.log.Info("callsfu: unannounced simulcast layer", "peer", p.peer.String(), "rid", remote.RID())
		return
	}
	if t.ssrcs[layer].Swap(uint32(remote.SSRC())) != 0 {
		// pion fires OnTrack again, with the same TrackRemote, when a layer's
		// SSRC changes; the layer's readers already read through it.
		p.mu.Unlock()
		return
	}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		t.readRTP(layer, remote)
	}()
	go func() {
		defer p.wg.Done()
		t.readRTCP(recv, remote.RID())
	}()
	p.mu.Unlock()
	if !known {
		p.room.publish(t) // refused once p is leaving; remove closes t
	}
}

// transceiverMid returns the mid of recv's transceiver in pc.
func transceiverMid(pc *webrtc.PeerConnection, recv *webrtc.RTPReceiver) string {
	for _, tr := range pc.GetTransceivers() {
		if tr.Receiver() == recv {
			return tr.Mid()
		}
	}
	return ""
}

// publisherGatherTimeout bounds the wait for the SFU's own candidates before
// Publish answers (host candidates take microseconds; relay ones a round
// trip to the TURN server).
const publisherGatherTimeout = 3 * time.Second

// applyRemoteOffer applies offer to pc and its answer as pc's local
// description, and returns the promise of pc's candidates gathered, after
// which pc.LocalDescription is the answer with all of them.
func applyRemoteOffer(pc *webrtc.PeerConnection, offer string) (<-chan struct{}, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return nil, err
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return nil, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return nil, err
	}
	return gathered, nil
}

// waitGathered waits for a PeerConnection's candidates, at most
// publisherGatherTimeout.
func waitGathered(gathered <-chan struct{}) {
	t := time.NewTimer(publisherGatherTimeout)
	defer t.Stop()
	select {
	case <-gathered:
	case <-t.C:
	}
}

// Answer applies the client's answer to the SFU's last EventOffer. If the
// subscriptions changed meanwhile, the next EventOffer follows.
func (p *Participant) Answer(answer string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left {
		return fmt.Errorf("callsfu: answer %s: %w", p.peer, ErrLeft)
	}
	if !p.offerOut {
		return fmt.Errorf("callsfu: answer %s: %w: no offer awaits an answer", p.peer, ErrBadSDP)
	}
	err := p.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
	if err != nil {
		return fmt.Errorf("callsfu: answer %s: %w: %v", p.peer, ErrBadSDP, err)
	}
	p.offerOut = false
	p.flushCandidatesLocked(TargetSubscriber)
	if p.renegotiate {
		p.renegotiate = false
		p.negotiateLocked()
	}
	return nil
}

// AddCandidate adds a candidate the client trickled for one of its
// PeerConnections. Candidates that arrive before the PeerConnection has the
// client's description are held until it does.
func (p *Participant) AddCandidate(target Target, c Candidate) error {
	if c.Candidate == "" {
		return nil // end of candidates: nothing to do for a full ICE agent
	}
	mid, index := c.SDPMid, c.SDPMLineIndex
	init := webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: &mid, SDPMLineIndex: &index}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left {
		return fmt.Errorf("callsfu: candidate of %s: %w", p.peer, ErrLeft)
	}
	var pc *webrtc.PeerConnection
	switch target {
	case TargetPublisher:
		pc = p.pub
	case TargetSubscriber:
		if p.sub == nil {
			return fmt.Errorf("callsfu: candidate of %s: %w: it has no subscriber connection", p.peer, ErrBadCandidate)
		}
		pc = p.sub
		if p.offerOut {
			pc = nil // the answer, and with it the client's ICE credentials, is on its way
		}
	default:
		return fmt.Errorf("callsfu: candidate of %s for target %d: %w", p.peer, target, ErrBadCandidate)
	}
	if p.remote[target] >= maxRemoteCandidates {
		return fmt.Errorf("callsfu: candidate of %s: %w: more than %d for one description",
			p.peer, ErrBadCandidate, maxRemoteCandidates)
	}
	if pc == nil || pc.RemoteDescription() == nil {
		if len(p.pending[target]) >= maxPendingCandidates {
			return fmt.Errorf("callsfu: candidate of %s: %w: more than %d before the description",
				p.peer, ErrBadCandidate, maxPendingCandidates)
		}
		p.pending[target] = append(p.pending[target], init)
		return nil
	}
	if err := pc.AddICECandidate(init); err != nil {
		return fmt.Errorf("callsfu: candidate of %s: %w: %v", p.peer, ErrBadCandidate, err)
	}
	p.remote[target]++
	return nil
}

// flushCandidatesLocked adds the candidates held for target.
func (p *Participant) flushCandidatesLocked(target Target) {
	p.remote[target] = 0 // a new remote description: the count starts again
	pc := p.sub
	if target == TargetPublisher {
		pc = p.pub
	}
	for _, c := range p.pending[target] {
		if err := pc.AddICECandidate(c); err != nil {
			p.sfu.log.Info("callsfu: held candidate refused", "peer", p.peer.String(), "err", err)
		}
	}
	delete(p.pending, target)
}

// SetMuted mutes or unmutes one of the participant's own published tracks:
// the SFU stops (or resumes) forwarding it and tells the others.
func (p *Participant) SetMuted(trackID string, muted bool) error {
	t := p.ownTrack(trackID)
	if t == nil {
		return fmt.Errorf("callsfu: mute %q of %s: %w", trackID, p.peer, ErrUnknownTrack)
	}
	t.setMuted(muted)
	p.room.setMuted(t)
	return nil
}

// ownTrack returns the participant's published track of that ID, or nil.
func (p *Participant) ownTrack(id string) *publishedTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.published {
		if t.info.ID == id {
			return t
		}
	}
	return nil
}

// RequestLayer sets the quality the participant wants of another's video
// track, typically from the size it is shown at. The SFU forwards at most
// that layer, less when the bandwidth estimate of the subscriber
// PeerConnection does not fit it; QualityOff stops the track's forwarding.
func (p *Participant) RequestLayer(trackID string, q Quality) error {
	if q < QualityOff || q > QualityHigh {
		return fmt.Errorf("callsfu: request quality %d: %w", q, ErrBadRequest)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.subs[trackID]
	if s == nil {
		return fmt.Errorf("callsfu: request layer of %q by %s: %w", trackID, p.peer, ErrUnknownTrack)
	}
	s.requested = q
	p.allocateLocked()
	return nil
}

// RestartICE has the SFU offer the subscriber PeerConnection anew with fresh
// ICE credentials, for a client whose network changed (the offer does not
// wait for the connection, which is what is lost). The client restarts the
// publisher PeerConnection itself, with an ICE-restart offer to Publish.
// The SFU offers nothing to a participant of a live stream: ErrBadRequest.
func (p *Participant) RestartICE() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left {
		return fmt.Errorf("callsfu: restart ICE of %s: %w", p.peer, ErrLeft)
	}
	if p.role != roleMember {
		return fmt.Errorf("callsfu: restart ICE of %s: %w: the SFU offers it nothing", p.peer, ErrBadRequest)
	}
	p.restartICE = true
	p.negotiateLocked()
	return nil
}

// Leave removes the participant from its call and closes its
// PeerConnections before it returns.
func (p *Participant) Leave() {
	p.remove(ReasonLeft)
}

// subscribe offers t to the participant on its subscriber PeerConnection.
// The caller holds the room's lock and negotiates once it has let go of it.
func (p *Participant) subscribe(t *publishedTrack) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left || p.subs[t.info.ID] != nil {
		return
	}
	s, err := newSubscription(p, t)
	if err != nil {
		p.sfu.log.Error("callsfu: subscribe", "peer", p.peer.String(), "track", t.info.ID, "err", err)
		return
	}
	if len(p.subs) == 0 {
		p.heard.Store(time.Now().UnixNano()) // silence counts from now on
	}
	p.subs[t.info.ID] = s
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		s.readRTCP()
	}()
	p.allocateLocked()
}

// unsubscribe stops sending t to the participant. The caller holds the
// room's lock and negotiates once it has let go of it. A player is not renegotiated: its
// track just stops, and a player with no track left is removed
// (ReasonStreamEnded), which closes its PeerConnection.
func (p *Participant) unsubscribe(t *publishedTrack) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.subs[t.info.ID]
	if s == nil {
		return
	}
	delete(p.subs, t.info.ID)
	if p.left {
		return
	}
	if p.role == rolePlayer {
		if len(p.subs) == 0 {
			p.removeAsync(ReasonStreamEnded, p.sfu.m.removedStreamEnded)
		}
		return
	}
	if err := p.sub.RemoveTrack(s.sender); err != nil {
		p.sfu.log.Warn("callsfu: unsubscribe", "peer", p.peer.String(), "track", t.info.ID, "err", err)
	}
	p.allocateLocked()
}

// applyMute brings the forwarding of t to this participant in line with the
// publisher's mute and this participant's requested quality.
func (p *Participant) applyMute(t *publishedTrack) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.subs[t.info.ID]; s != nil {
		s.local.setMuted(t.muted.Load() || s.requested == QualityOff)
	}
}

// negotiate sends a new offer for the subscriber PeerConnection, or, while
// one awaits its answer, sends it once that answer is in.
func (p *Participant) negotiate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.negotiateLocked()
}

// negotiateLocked is negotiate with p.mu held, and no room's lock.
func (p *Participant) negotiateLocked() {
	if p.left || p.role != roleMember {
		return
	}
	if p.sfu.beforeOffer != nil {
		p.sfu.beforeOffer(p)
	}
	if p.offerOut || (p.connectingLocked() && !p.restartICE) {
		p.renegotiate = true
		return
	}
	if len(p.sub.GetTransceivers()) == 0 {
		return // nothing to offer yet
	}
	offer, err := p.sub.CreateOffer(&webrtc.OfferOptions{ICERestart: p.restartICE})
	if err == nil {
		err = p.sub.SetLocalDescription(offer)
	}
	if err != nil {
		p.sfu.log.Error("callsfu: subscriber offer", "peer", p.peer.String(), "err", err)
		return
	}
	p.offerOut = true
	p.restartICE = false
	p.emit(Event{Kind: EventOffer, Target: TargetSubscriber, SDP: p.sub.LocalDescription().SDP})
}

// connectingLocked reports whether the subscriber PeerConnection has been
// negotiated but is not connected yet. A new offer waits for the connection:
// a client whose ICE agent has not started when the offer comes (pion's
// does so on a goroutine after the answer) takes the offer for an ICE
// restart.
func (p *Participant) connectingLocked() bool {
	return p.sub.RemoteDescription() != nil && p.sub.ConnectionState() != webrtc.PeerConnectionStateConnected
}

// onSubscriberConnected starts the forwarding of every subscribed track,
// held until now, and sends the offer that waited for the connection.
func (p *Participant) onSubscriberConnected() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.subs {
		s.local.transportUp()
	}
	if p.renegotiate && !p.offerOut {
		p.renegotiate = false
		p.negotiateLocked()
	}
}

// onCandidate sends a candidate the SFU gathered for the subscriber
// PeerConnection. It takes p.mu so that it follows the offer it belongs to.
func (p *Participant) onCandidate(c *webrtc.ICECandidate) {
	if c == nil {
		return
	}
	init := c.ToJSON()
	ev := Event{Kind: EventCandidate, Target: TargetSubscriber, Candidate: Candidate{Candidate: init.Candidate}}
	if init.SDPMid != nil {
		ev.Candidate.SDPMid = *init.SDPMid
	}
	if init.SDPMLineIndex != nil {
		ev.Candidate.SDPMLineIndex = *init.SDPMLineIndex
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.left {
		p.emit(ev)
	}
}

// watch removes the participant when pc's connection fails or the client
// closes it, and sends the subscriber offer that waited for the connection.
func (p *Participant) watch(pc *webrtc.PeerConnection, target Target) {
	pc.OnConnectionStateChange(func(state webrtc.PeerConnectionState) {
		var reason Reason
		switch state {
		case webrtc.PeerConnectionStateConnected:
			p.connected.Store(true)
			if target == TargetSubscriber {
				p.subUp.Store(true)
				p.onSubscriberConnected()
			}
			return
		case webrtc.PeerConnectionStateFailed:
			reason = ReasonICEFailed
		case webrtc.PeerConnectionStateClosed:
			reason = ReasonClientClosed // by DTLS close_notify, unless the SFU closed it
		default:
			return
		}
		p.mu.Lock()
		current := !p.left && (pc == p.pub || pc == p.sub) // not one the SFU closed
		p.mu.Unlock()
		if !current {
			return
		}
		p.sfu.log.Info("callsfu: peer connection lost", "peer", p.peer.String(), "call", p.room.call,
			"target", target, "reason", reason.String())
		counter := p.sfu.m.removedClosed
		if reason == ReasonICEFailed {
			counter = p.sfu.m.removedICEFailed
		}
		p.removeAsync(reason, counter)
	})
}

// heardAt records RTP or RTCP from the client.
func (p *Participant) heardAt(now time.Time) { p.heard.Store(now.UnixNano()) }

// silentSince returns how long the participant has been silent while media
// was expected of it. A participant that neither publishes nor is sent
// anything owes no packets and is never silent.
func (p *Participant) silentSince(now time.Time) time.Duration {
	p.mu.Lock()
	idle := !p.publishing && len(p.subs) == 0
	p.mu.Unlock()
	if idle {
		p.heard.Store(now.UnixNano())
		return 0
	}
	return now.Sub(time.Unix(0, p.heard.Load()))
}

// neverConnected reports whether none of the participant's PeerConnections
// has connected in the time a client that negotiates gets: a
// participant that joins and never publishes nor answers an offer owes no
// packets, so silence alone would never remove it.
func (p *Participant) neverConnected(now time.Time) bool {
	o := &p.sfu.opts
	return !p.connected.Load() && now.Sub(p.joined) > o.SilenceTimeout+o.ICEFailedTimeout
}

// onSlowEvents removes a participant whose events queue overflowed.
func (p *Participant) onSlowEvents() {
	p.removeAsync(ReasonSlowEvents, p.sfu.m.removedSlow)
}

// removeAsync removes the participant on a goroutine of the SFU's, for a
// reason found where it cannot wait for the teardown (a pion callback, the
// sweeper), and counts the removal. Only the first call does anything.
func (p *Participant) removeAsync(reason Reason, counter *metrics.Counter) {
	if !p.removing.CompareAndSwap(false, true) {
		return
	}
	if p.sfu.goTracked(func() { p.remove(reason) }) {
		counter.Inc()
	}
}

// emit queues an event for the participant's events function. A player
// hears of its own removal only.
func (p *Participant) emit(e Event) {
	if p.role == rolePlayer && e.Kind != EventRemoved {
		return
	}
	p.events.push(e)
}

// remove takes the participant out of its call and tears it down: its tracks
// unpublished, its PeerConnections closed, its goroutines ended. Only the
// first call does anything, and reports true; later ones return false at
// once.
func (p *Participant) remove(reason Reason) bool {
	p.mu.Lock()
	if p.left {
		p.mu.Unlock()
		return false
	}
	p.left = true
	pub, sub := p.pub, p.sub
	tracks := make([]*publishedTrack, 0, len(p.published))
	for _, t := range p.published {
		tracks = append(tracks, t)
	}
	p.mu.Unlock()

	emptied, unsubscribed := p.room.drop(p)
	negotiateAll(unsubscribed)
	if reason != ReasonLeft {
		p.emit(Event{Kind: EventRemoved, Reason: reason})
	}
	if pub != nil {
		p.closePC(pub)
	}
	if sub != nil {
		p.closePC(sub)
	}
	p.wg.Wait()
	p.room.detector.remove(p.speaker)
	for _, t := range tracks {
		t.close()
	}
	p.events.close()
	p.sfu.m.participants.Add(-1)
	p.sfu.log.Info("callsfu: participant removed", "peer", p.peer.String(), "call", p.room.call,
		"reason", reason.String())
	if emptied {
		p.sfu.ended(p.room, EndEmpty)
	}
	return true
}

// closePC closes a PeerConnection and waits for its goroutines.
func (p *Participant) closePC(pc *webrtc.PeerConnection) {
	if err := pc.GracefulClose(); err != nil && !errors.Is(err, webrtc.ErrConnectionClosed) {
		p.sfu.log.Warn("callsfu: close peer connection", "peer", p.peer.String(), "err", err)
	}
}

// eventQueue delivers a participant's events in order from one goroutine,
// so that a slow events function never blocks the SFU: a full queue calls
// overflow once and drops the event, and those after it, but for the
// EventRemoved, which is delivered last all the same (what the events
// function feeds learns of every removal).
type eventQueue struct {
	ch       chan Event
	overflow func()

	mu         sync.Mutex // guards the following
	closed     bool
	overflowed bool
	removed    *Event // an EventRemoved the queue had no room for
}

// newEventQueue starts the goroutine that calls fn for each event; s waits
// for it in Close, closeEventsGrace at most.
func newEventQueue(s *SFU, fn func(Event), size int, overflow func()) *eventQueue {
	q := &eventQueue{ch: make(chan Event, size), overflow: overflow}
	started := s.goEvents(func() {
		for e := range q.ch {
			fn(e)
		}
		q.mu.Lock() // ch is closed: removed is set for good
		removed := q.removed
		q.mu.Unlock()
		if removed != nil {
			fn(*removed)
		}
	})
	if !started { // the SFU is closing: nobody will hear anything
		q.close()
	}
	return q
}

// push queues e, or drops it and reports the overflow (an EventRemoved is
// kept aside for the end).
func (q *eventQueue) push(e Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if !q.overflowed {
		select {
		case q.ch <- e:
			return
		default:
			q.overflowed = true
			q.overflow()
		}
	}
	if e.Kind == EventRemoved && q.removed == nil {
		removed := e // not e itself: every push would allocate it
		q.removed = &removed
	}
}

// close lets the goroutine end once it has delivered what is queued.
func (q *eventQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
}
