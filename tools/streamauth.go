package tools

import (
	"context"
	"errors"
	"fmt"

	"github.com/gonets/gonets/callsfu"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// channelStreams is the node's callsfu.Authorizer: live streams into
// channels over WHIP and WHEP. The URL's {call} is the channel's chat id in
// decimal and its stream is the SFU call streamCall derives from it; the
// bearer token is a session token, verified as the broker verifies a
// Hello's. A channel's owner and admins publish (their publish starts the
// stream's call), its members of any role play.
type channelStreams struct {
	sfu      *callsfu.SFU
	store    *storage.Store
	verifier *token.Verifier
}

// Authorize implements callsfu.Authorizer.
func (a *channelStreams) Authorize(ctx context.Context, req callsfu.AuthRequest) (callsfu.Grant, error) {
	claims, err := a.verifier.Verify(req.Token)
	if err == nil && storage.DeviceID(claims.Device) == storage.DeviceNode {
		err = fmt.Errorf("%w: device %d is the node's own", token.ErrForged, claims.Device)
	}
	if err != nil {
		return callsfu.Grant{}, fmt.Errorf("%w: %w", callsfu.ErrUnauthorized, err)
	}
	call, id, ok := streamCall(req.Call)
	if !ok {
		return callsfu.Grant{}, fmt.Errorf("%w: %q is not a channel's id", callsfu.ErrUnknownCall, req.Call)
	}
	chat, err := a.store.Chat(storage.ChatID(id))
	switch {
	case errors.Is(err, storage.ErrUnknownChat):
		return callsfu.Grant{}, fmt.Errorf("%w: no channel %d", callsfu.ErrUnknownCall, id)
	case err != nil:
		return callsfu.Grant{}, err
	case chat.Kind != storage.ChatChannel:
		return callsfu.Grant{}, fmt.Errorf("%w: chat %d is a %s; live streams go into channels", callsfu.ErrUnknownCall, id, chat.Kind)
	}
	user := storage.UserID(claims.User)
	m, err := a.store.Member(chat.ID, user)
	switch {
	case errors.Is(err, storage.ErrNotMember), errors.Is(err, storage.ErrBadID):
		return callsfu.Grant{}, fmt.Errorf("%w: user %d is not in channel %d", callsfu.ErrForbidden, user, id)
	case err != nil:
		return callsfu.Grant{}, err
	case req.Publish && m.Role < storage.RoleAdmin:
		return callsfu.Grant{}, fmt.Errorf("%w: user %d is a %s of channel %d; its owner and admins publish", callsfu.ErrForbidden, user, m.Role, id)
	}
	if req.Publish {
		if err := a.sfu.Start(call); err != nil && !errors.Is(err, callsfu.ErrCallExists) {
			return callsfu.Grant{}, err
		}
	}
	return callsfu.Grant{Call: call, Peer: callsfu.Peer{User: claims.User, Device: claims.Device}}, nil
}
