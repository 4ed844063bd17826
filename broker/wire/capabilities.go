package wire

// Capabilities a client lists in Hello and the node repeats in Welcome
// when it agrees (docs/protocol.md).
const (
	// CapHeartbeat: over TLS on TCP the node writes a heartbeat, a Ping
	// with id 0 that the client does not answer, to a session it has
	// written nothing to for a while, and the client need not ping it.
	CapHeartbeat = "heartbeat"
)
