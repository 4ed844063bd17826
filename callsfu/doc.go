// Package callsfu is the node's WebRTC selective forwarding unit: 1:1 and
// group calls and live streams into channels, on pion/webrtc. It owns the
// calls' PeerConnections, their tracks and the forwarding of media between
// them; the broker owns signalling and membership and drives it.
//
// # Media forwarding
//
// Media is forwarded without decoding. Each published track is an upTrack
// with one to three simulcast layers (layer 0 the lowest); each subscriber
// of it is a downTrack. A layer's packets are read by one goroutine of the
// publisher's PeerConnection, which calls upTrack.receive: the packet is
// parsed once, copied once into the layer's packetRing (the recent packets
// every subscriber's NACKs are answered from, so there is no copy per
// subscriber), and offered to every downTrack. The downTrack decides
// whether the packet is for it, rewrites the header in place (its own SSRC
// and payload type, its own sequence numbers and timestamps) and writes it
// to the subscriber's pion track. The path allocates nothing per packet.
//
// A downTrack shows its subscriber one continuous stream. It is on one
// layer at a time and changes layer (setMaxLayer, or a layer that stops
// arriving, when the best below takes over) only at a keyframe of the new
// one, detected from the payload (VP8 payload descriptor and header, H.264
// NAL types), which it asks for. Its sequence numbers run on from the last
// one sent, with no gap at a switch or after a mute, and its timestamps move
// on by the time between the two packets; a seqSegment records each run of
// packets with one offset so NACKs, given in the subscriber's numbers, map
// back to the source packets in the rings. Keyframe requests (a
// subscriber's PLI or FIR, a switch, a start) reach the publisher at most
// once per second per layer (pliThrottle). The speakerDetector picks a
// call's dominant speaker from the audio-level header extension.
//
// A layer whose source restarts its stream (a new SSRC, or sequence numbers
// or timestamps that jump: renegotiation, an encoder restart) starts a new
// run (upLayer.restarted): its packets are numbered beyond the ring's
// window, and each downTrack on it resumes at the run's first keyframe as
// after a mute. Resends are budgeted per subscriber: one per nackShare
// packets sent to it, at most nackBurst in reserve, and a packet once per
// nackRepeatWindow, so no subscriber's NACKs can multiply the node's output.
//
// # Goroutines and locks
//
// receive for a layer runs on that layer's reader goroutine only; the
// readers of different layers run in parallel. A ring is written by its
// reader alone, under its mutex so resends can copy from it; the subscriber
// list is copy-on-write behind an atomic pointer; each downTrack has a mutex
// for its rewriting state, held for arithmetic only, never across a write to
// the subscriber, and atomics that let a reader skip a downTrack on another
// layer without taking it. Lock order: downTrack.nackMu, then downTrack.mu,
// then a packetRing's mu; upTrack.mu (the subscriber list's writers) and
// speakerDetector.mu are taken with no other lock held. The keyframe
// callback and the writes to subscribers run with no lock of the forwarding
// core held, but for a resend's own nackMu.
//
// # TURN
//
// TURN (turn.go) is the node's optional TURN server, apart from the SFU:
// it relays clients that reach nothing else to the SFU's media port and
// to nothing else, with credentials that expire and need no store. Its
// goroutines are pion/turn's (the UDP read loop, the TCP accept loop and
// one per connection, one per allocation reading its relay socket); it
// counts each by wrapping the sockets they read, so Close can close them
// all and wait. TURN.mu guards the quotas and the open sockets and is
// taken with no other lock held.
package callsfu
