package botapi

import (
	"context"
)

// The endpoints of messages and callbacks.

// send serves POST /messages?chat_id|user_id with a NewMessageBody and
// answers {"message": Message}. disable_link_preview is checked and
// otherwise ignored: the node makes no link previews.
func (s *Server) send(ctx context.Context, c *call) (any, error) {
	q, err := parseRecipientQuery(c.r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	body, err := decodeNewMessageBody(c.body, true)
	if err != nil {
		return nil, err
	}
	m, err := s.o.Backend.Send(ctx, c.bot, q.Chat, q.User, body)
	if err != nil {
		return nil, err
	}
	return SendMessageResult{Message: m}, nil
}

// messageIDQuery returns the message_id parameter, which PUT and DELETE
// /messages require.
func messageIDQuery(c *call) (string, error) {
	q, err := parseQuery(c.r.URL.RawQuery)
	if err != nil {
		return "", err
	}
	mid, err := queryMid(q, "message_id")
	if err == nil && mid == "" {
		err = badRequest("message_id is required")
	}
	return mid, err
}

// edit serves PUT /messages?message_id with a NewMessageBody.
func (s *Server) edit(ctx context.Context, c *call) (any, error) {
	mid, err := messageIDQuery(c)
	if err != nil {
		return nil, err
	}
	body, err := decodeNewMessageBody(c.body, false)
	if err != nil {
		return nil, err
	}
	return done(s.o.Backend.Edit(ctx, c.bot, mid, body))
}

// delete serves DELETE /messages?message_id.
func (s *Server) delete(ctx context.Context, c *call) (any, error) {
	mid, err := messageIDQuery(c)
	if err != nil {
		return nil, err
	}
	return done(s.o.Backend.Delete(ctx, c.bot, mid))
}

// messages serves GET /messages?chat_id&message_ids&from&to&count and
// answers {"messages": [...]}.
func (s *Server) messages(ctx context.Context, c *call) (any, error) {
	q, err := parseMessagesQuery(c.r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	ms, err := s.o.Backend.Messages(ctx, c.bot, q.Chat, q.Mids, q.From, q.To, q.Count)
	if err != nil {
		return nil, err
	}
	return MessageList{Messages: nonNil(ms)}, nil
}

// message serves GET /messages/{message_id}.
func (s *Server) message(ctx context.Context, c *call) (any, error) {
	mid := c.r.PathValue("message_id")
	if !validMid(mid) {
		return nil, badRequest("message_id is not a message id")
	}
	return s.o.Backend.Message(ctx, c.bot, mid)
}

// answer serves POST /answers?callback_id with {message?, notification?}.
func (s *Server) answer(ctx context.Context, c *call) (any, error) {
	q, err := parseQuery(c.r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	id, err := queryOne(q, "callback_id")
	if err != nil {
		return nil, err
	}
	if id == "" || len(id) > maxCallbackIDSize || !printableASCII(id, "") {
		return nil, badRequest("callback_id is required")
	}
	a, err := decodeCallbackAnswer(c.body)
	if err != nil {
		return nil, err
	}
	var note string
	if a.Notification != nil {
		note = *a.Notification
	}
	return done(s.o.Backend.Answer(ctx, c.bot, id, a.Message, note))
}
