package client

import "fmt"

// Transport names what carries a session: QUIC, or TLS 1.3 over TCP, the
// fallback for networks that block or throttle UDP. As a choice
// (Options.Via) its zero value, TransportAuto, races the two.
type Transport uint8

// Transports.
const (
	// TransportAuto dials QUIC and, 250 ms later or as soon as QUIC
	// fails, TLS over TCP, and keeps the first to connect (happy
	// eyeballs). It is only a choice: a session is always one of the
	// others.
	TransportAuto Transport = iota
	// TransportQUIC is QUIC over UDP.
	TransportQUIC
	// TransportTCP is TLS 1.3 over TCP.
	TransportTCP
)

// String returns "auto", "quic" or "tcp".
func (t Transport) String() string {
	switch t {
	case TransportAuto:
		return "auto"
	case TransportQUIC:
		return "quic"
	case TransportTCP:
		return "tcp"
	}
	return fmt.Sprintf("Transport(%d)", uint8(t))
}

// MarshalText returns the transport's name.
func (t Transport) MarshalText() ([]byte, error) {
	if t > TransportTCP {
		return nil, fmt.Errorf("client: unknown transport %d", uint8(t))
	}
	return []byte(t.String()), nil
}

// UnmarshalText parses "auto", "quic" or "tcp", so that a Transport can
// be a flag (flag.TextVar) or a field of a config file.
func (t *Transport) UnmarshalText(b []byte) error {
	switch string(b) {
	case "auto":
		*t = TransportAuto
	case "quic":
		*t = TransportQUIC
	case "tcp":
		*t = TransportTCP
	default:
		return fmt.Errorf("client: transport %q is not auto, quic or tcp", b)
	}
	return nil
}

// order returns the transports to dial for the choice t, first the one
// that worked last (remembered; TransportAuto when none has yet).
func (t Transport) order(remembered Transport) []Transport {
	switch {
	case t != TransportAuto:
		return []Transport{t}
	case remembered == TransportTCP:
		return []Transport{TransportTCP, TransportQUIC}
	}
	return []Transport{TransportQUIC, TransportTCP}
}
