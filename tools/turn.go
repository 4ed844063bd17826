package tools

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"

	"github.com/VictoriaMetrics/metrics"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/callsfu"
)

// startTURN starts the node's TURN server (calls.turn), which relays to
// sfu's media port only. A port in use is named with its config key.
func startTURN(cfg config, log *slog.Logger, set *metrics.Set, sfu *callsfu.SFU) (*callsfu.TURN, error) {
	opts := cfg.turnOptions()
	opts.PeerPort, opts.Logger, opts.Metrics = sfu.Addr().Port, log, set
	t, err := callsfu.NewTURN(opts)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("calls.turn_port %d is in use (UDP, or TCP): stop what holds it, or give TURN another port: %w", cfg.Calls.TURNPort, err)
	case err != nil:
		return nil, fmt.Errorf("calls.turn: %w", err)
	}
	return t, nil
}

// turnICEServers returns the broker's Options.CallICEServers for t: the
// TURN server with a fresh credential for the user.
func turnICEServers(t *callsfu.TURN) func(user uint64) []broker.ICEServer {
	return func(user uint64) []broker.ICEServer {
		s := t.Credentials(user)
		cred, _ := s.Credential.(string)
		return []broker.ICEServer{{URLs: s.URLs, Username: s.Username, Credential: cred}}
	}
}

// turnGrants is an Authorizer that adds a TURN credential for the grant's
// user to each grant, which the WHIP handler sends as Link headers.
type turnGrants struct {
	callsfu.Authorizer
	turn *callsfu.TURN
}

// Authorize implements callsfu.Authorizer.
func (a turnGrants) Authorize(ctx context.Context, req callsfu.AuthRequest) (callsfu.Grant, error) {
	g, err := a.Authorizer.Authorize(ctx, req)
	if err == nil {
		g.ICEServers = append(g.ICEServers, a.turn.Credentials(g.Peer.User))
	}
	return g, err
}

// withTURN returns auth with the node's TURN credentials added to its
// grants, or auth itself when calls.turn is off.
func (n *node) withTURN(auth callsfu.Authorizer) callsfu.Authorizer {
	if n.turn == nil {
		return auth
	}
	return turnGrants{Authorizer: auth, turn: n.turn}
}

// closeTURN closes the TURN server, its relays and connections.
func (n *node) closeTURN() {
	if n.turn != nil {
		n.turn.Close()
	}
}
