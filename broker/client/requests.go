package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gonets/gonets/broker/wire"
)

// call sends the request f on a live session and returns the response. A
// request that may be repeated (see Client) is sent again on the next
// connection when the one it was sent on breaks.
func (c *Client) call(ctx context.Context, f *wire.Frame, repeat bool) (*wire.Frame, error) {
	for {
		s, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := s.call(ctx, f)
		if c.renews(err) {
			// The node refused the request unread, its session's token
			// past its expiry: the client renews it and reconnects, and
			// the request goes again on the new session.
			c.log.Debug("client: repeating a request after renewing the token", "type", fmt.Sprintf("%T", f.GetBody()))
			continue
		}
		if err == nil || !repeat || !errors.Is(err, ErrConnLost) {
			return resp, err
		}
		c.log.Debug("client: repeating a request after a lost connection", "type", fmt.Sprintf("%T", f.GetBody()))
	}
}

// NextClientMsgID returns a fresh client message id: unique and rising for
// this Client, and in practice across restarts (see SendOptions). An app
// that keeps an outbox of unsent messages across restarts takes ids here,
// stores them with the messages and sends with SendMsg.
func (c *Client) NextClientMsgID() uint64 { return c.msgIDs.next() }

// Send appends a text message to chat and returns its Ack once it is
// durable.
func (c *Client) Send(ctx context.Context, chat uint64, body []byte) (Ack, error) {
	return c.SendMsg(ctx, SendOptions{Chat: chat, Body: body})
}

// SendMsg appends a message. If the connection breaks before the Ack it
// sends the message again, with the same client message id, on the next
// connection; the node then returns the original Ack with Duplicate set.
func (c *Client) SendMsg(ctx context.Context, o SendOptions) (Ack, error) {
	if o.Kind == wire.MsgKind_MSG_KIND_UNSPECIFIED {
		o.Kind = wire.MsgKind_MSG_KIND_TEXT
	}
	if o.ClientMsgID == 0 {
		o.ClientMsgID = c.NextClientMsgID()
	}
	if err := c.checkBody(len(o.Body)); err != nil {
		return Ack{}, err
	}
	f := &wire.Frame{Body: &wire.Frame_Send{Send: &wire.Send{Chat: o.Chat, ClientMsgId: o.ClientMsgID, Kind: o.Kind, Body: o.Body}}}
	return c.appendRecord(ctx, f, Message{Chat: o.Chat, ClientMsgID: o.ClientMsgID, Kind: o.Kind, Body: o.Body})
}

// Edit replaces the body of the user's own message target in chat.
func (c *Client) Edit(ctx context.Context, chat, target uint64, body []byte) (Ack, error) {
	if err := c.checkBody(len(body)); err != nil {
		return Ack{}, err
	}
	id := c.NextClientMsgID()
	f := &wire.Frame{Body: &wire.Frame_Edit{Edit: &wire.Edit{Chat: chat, ClientMsgId: id, Target: target, Body: body}}}
	return c.appendRecord(ctx, f, Message{Chat: chat, ClientMsgID: id, Kind: wire.MsgKind_MSG_KIND_EDIT, Target: target, Body: body})
}

// Delete deletes message target in chat (the sender's own, or any as an
// admin or owner).
func (c *Client) Delete(ctx context.Context, chat, target uint64) (Ack, error) {
	id := c.NextClientMsgID()
	f := &wire.Frame{Body: &wire.Frame_Delete{Delete: &wire.Delete{Chat: chat, ClientMsgId: id, Target: target}}}
	return c.appendRecord(ctx, f, Message{Chat: chat, ClientMsgID: id, Kind: wire.MsgKind_MSG_KIND_DELETE, Target: target})
}

// React sets the user's reaction to message target in chat; an empty
// emoji removes it.
func (c *Client) React(ctx context.Context, chat, target uint64, emoji string) (Ack, error) {
	id := c.NextClientMsgID()
	f := &wire.Frame{Body: &wire.Frame_React{React: &wire.React{Chat: chat, ClientMsgId: id, Target: target, Emoji: emoji}}}
	var body []byte
	if emoji != "" {
		body = []byte(emoji)
	}
	return c.appendRecord(ctx, f, Message{Chat: chat, ClientMsgID: id, Kind: wire.MsgKind_MSG_KIND_REACTION, Target: target, Body: body})
}

// appendRecord sends a request answered by Ack, repeating it across
// reconnections, and queues the acked record m for delivery to the app.
func (c *Client) appendRecord(ctx context.Context, f *wire.Frame, m Message) (Ack, error) {
	resp, err := c.call(ctx, f, true)
	if err != nil {
		return Ack{}, err
	}
	a := resp.GetAck()
	if a == nil {
		return Ack{}, unexpected("Ack", resp)
	}
	ack := ackFromWire(a)
	m.Seq, m.Time, m.Sender, m.Device = ack.Seq, ack.Time, c.user, c.device
	m.Body = bytes.Clone(m.Body) // the caller may reuse its slice
	c.noteOwn(m)
	return ack, nil
}

// checkBody refuses a body over the node's limit before it is sent.
func (c *Client) checkBody(n int) error {
	if limit := c.Limits().MaxBodyBytes; limit > 0 && n > limit {
		return &Error{Code: wire.ErrorCode_ERROR_CODE_TOO_LARGE, Message: fmt.Sprintf("body of %d bytes over the node's %d", n, limit)}
	}
	return nil
}

// CreateChat creates a chat with the user as owner and members (the other
// users; a direct chat has exactly one). For a direct chat that exists
// already it returns that chat with Existed set.
func (c *Client) CreateChat(ctx context.Context, kind wire.ChatKind, members []uint64, title string) (ChatInfo, error) {
	resp, err := c.call(ctx, &wire.Frame{Body: &wire.Frame_CreateChat{CreateChat: &wire.CreateChat{Kind: kind, Members: members, Title: title}}}, false)
	if err != nil {
		return ChatInfo{}, err
	}
	ci := resp.GetChat()
	if ci == nil {
		return ChatInfo{}, unexpected("ChatInfo", resp)
	}
	return chatFromWire(ci), nil
}

// AddMembers adds users to a group or channel.
func (c *Client) AddMembers(ctx context.Context, chat uint64, users []uint64) error {
	return c.done(ctx, &wire.Frame{Body: &wire.Frame_AddMembers{AddMembers: &wire.AddMembers{Chat: chat, Users: users}}}, false)
}

// RemoveMember removes user from chat.
func (c *Client) RemoveMember(ctx context.Context, chat, user uint64) error {
	return c.done(ctx, &wire.Frame{Body: &wire.Frame_RemoveMember{RemoveMember: &wire.RemoveMember{Chat: chat, User: user}}}, false)
}

// Leave removes the user from chat.
func (c *Client) Leave(ctx context.Context, chat uint64) error {
	return c.done(ctx, &wire.Frame{Body: &wire.Frame_Leave{Leave: &wire.Leave{Chat: chat}}}, false)
}

// Receipt advances the user's markers in chat: every message up to
// delivered reached a device, up to read was read (0 leaves a marker as
// it is). Markers never move back.
func (c *Client) Receipt(ctx context.Context, chat, delivered, read uint64) error {
	return c.done(ctx, &wire.Frame{Body: &wire.Frame_Receipt{Receipt: &wire.Receipt{Chat: chat, Delivered: delivered, Read: read}}}, true)
}

// MarkDelivered is Receipt(ctx, chat, seq, 0).
func (c *Client) MarkDelivered(ctx context.Context, chat, seq uint64) error {
	return c.Receipt(ctx, chat, seq, 0)
}

// MarkRead is Receipt(ctx, chat, seq, seq): what was read was delivered.
func (c *Client) MarkRead(ctx context.Context, chat, seq uint64) error {
	return c.Receipt(ctx, chat, seq, seq)
}

// Auth replaces the session's token before it expires; reconnections use
// the new one too.
func (c *Client) Auth(ctx context.Context, token string) error {
	if err := c.done(ctx, &wire.Frame{Body: &wire.Frame_Auth{Auth: &wire.Auth{Token: token}}}, true); err != nil {
		return err
	}
	c.mu.Lock()
	c.token = token
	c.mu.Unlock()
	return nil
}

// done sends a request answered by Done.
func (c *Client) done(ctx context.Context, f *wire.Frame, repeat bool) error {
	resp, err := c.call(ctx, f, repeat)
	if err != nil {
		return err
	}
	if resp.GetDone() == nil {
		return unexpected("Done", resp)
	}
	return nil
}

// History reads up to limit messages of chat from seq fromSeq on (0: the
// oldest retained), in seq order. It is a plain read: what Events delivers
// does not change.
func (c *Client) History(ctx context.Context, chat, fromSeq uint64, limit int) (HistoryPage, error) {
	return c.history(ctx, &wire.HistoryRequest{Chat: chat, FromSeq: fromSeq, Limit: clampLimit(limit)})
}

// Latest reads the newest limit messages of chat, in seq order.
func (c *Client) Latest(ctx context.Context, chat uint64, limit int) (HistoryPage, error) {
	return c.history(ctx, &wire.HistoryRequest{Chat: chat, Limit: clampLimit(limit), Latest: true})
}

func (c *Client) history(ctx context.Context, req *wire.HistoryRequest) (HistoryPage, error) {
	resp, err := c.call(ctx, &wire.Frame{Body: &wire.Frame_History{History: req}}, true)
	if err != nil {
		return HistoryPage{}, err
	}
	r := resp.GetHistoryResult()
	if r == nil {
		return HistoryPage{}, unexpected("HistoryResult", resp)
	}
	return historyFromWire(r), nil
}

// Sync lists the user's dialogs changed since a sync point (0: all), at
// most limit per page (0: the node's default); pass the page's Next as
// cursor while More is set. It is a plain read: the client keeps its own
// sync point for delivery (see SyncState).
func (c *Client) Sync(ctx context.Context, since uint64, cursor []byte, limit int) (SyncPage, error) {
	resp, err := c.call(ctx, &wire.Frame{Body: &wire.Frame_Sync{Sync: &wire.SyncRequest{Since: since, Cursor: cursor, Limit: clampLimit(limit)}}}, true)
	if err != nil {
		return SyncPage{}, err
	}
	r := resp.GetSyncResult()
	if r == nil {
		return SyncPage{}, unexpected("SyncResult", resp)
	}
	return syncFromWire(r), nil
}

// clampLimit maps a page size onto the wire's field; the node caps it.
func clampLimit(n int) uint32 {
	return uint32(min(max(n, 0), 1<<31))
}

// Typing tells chat's online members that the user is typing. It waits
// only for the signal to be written; the node never answers it.
func (c *Client) Typing(ctx context.Context, chat uint64) error {
	s, err := c.session(ctx)
	if err != nil {
		return err
	}
	return s.signal(&wire.Frame{Body: &wire.Frame_Typing{Typing: &wire.Typing{Chat: chat}}})
}

// Ping checks that the node answers and returns the round-trip time.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	nonce := uint64(start.UnixNano())
	resp, err := c.call(ctx, &wire.Frame{Body: &wire.Frame_Ping{Ping: &wire.Ping{Nonce: nonce}}}, true)
	if err != nil {
		return 0, err
	}
	p := resp.GetPong()
	if p == nil {
		return 0, unexpected("Pong", resp)
	}
	if p.GetNonce() != nonce {
		return 0, fmt.Errorf("%w: pong nonce %d, want %d", ErrProtocol, p.GetNonce(), nonce)
	}
	return time.Since(start), nil
}
