package client

// EventKind says what an Event carries.
type EventKind uint8

// Event kinds.
const (
	// EventMessage carries Message: the next record of its chat, in seq
	// order, delivered once.
	EventMessage EventKind = iota + 1
	// EventReceipt carries Receipt: another device or member moved a
	// marker.
	EventReceipt
	// EventTyping carries Typing.
	EventTyping
	// EventConnected follows each connection (the first and every
	// reconnection) once the client has delivered what it missed: every
	// chat is caught up to the sync point it just took. It carries
	// Transport.
	EventConnected
	// EventDisconnected carries Err, why the connection ended. The client
	// reconnects unless Options.NoReconnect is set or Err is fatal (a
	// rejected token), in which case Events closes next.
	EventDisconnected
	// EventResynced follows the catch-up the node asked for with a Resync
	// push (the app read too slowly and live pushes stopped): the missed
	// messages precede it.
	EventResynced
	// EventCallRing carries Call: a call started in one of the user's
	// chats rings this device (Call.User and Device are the caller's).
	EventCallRing
	// EventCallUpdate carries Call: a call's state changed (Call.Update).
	EventCallUpdate
	// EventCallOffer carries Call: the SFU's offer (Call.SDP) for this
	// device's subscribing PeerConnection; answer with AnswerSubscriber.
	EventCallOffer
	// EventCallCandidate carries Call: one of the SFU's ICE candidates
	// (Call.Candidate) for Call.PC.
	EventCallCandidate
	// EventCallSpeaker carries Call: Call.User speaks now.
	EventCallSpeaker
	// EventCallRemoved carries Call: the node took this device out of the
	// call (Call.Removed, Call.Message).
	EventCallRemoved
	// EventCallbackAnswer carries CallbackAnswer: a bot answered a button
	// this user pressed (Client.PressButton).
	EventCallbackAnswer
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventMessage:
		return "message"
	case EventReceipt:
		return "receipt"
	case EventTyping:
		return "typing"
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventResynced:
		return "resynced"
	case EventCallRing:
		return "call ring"
	case EventCallUpdate:
		return "call update"
	case EventCallOffer:
		return "call offer"
	case EventCallCandidate:
		return "call candidate"
	case EventCallSpeaker:
		return "call speaker"
	case EventCallRemoved:
		return "call removed"
	case EventCallbackAnswer:
		return "callback answer"
	}
	return "unknown"
}

// Event is one thing the client tells the app, in order: a delivered
// message, a pushed receipt, typing signal or call push, or a change of
// connection.
type Event struct {
	Kind    EventKind
	Message Message  // EventMessage
	Receipt Receipt  // EventReceipt
	Typing  Typing   // EventTyping
	Call    CallPush // EventCall*
	// CallbackAnswer is a bot's answer (EventCallbackAnswer).
	CallbackAnswer CallbackAnswer
	Err            error // EventDisconnected
	// Transport carries the connection (EventConnected).
	Transport Transport
}
