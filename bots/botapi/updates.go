package botapi

import (
	"context"
	"errors"
	"slices"
	"time"
)

// The endpoints of uploads, updates and webhooks.

// uploadTypes are the types POST /uploads takes.
var uploadTypes = []string{"image", "video", "audio", "file"}

// upload serves POST /uploads?type and answers {"url","token"}.
func (s *Server) upload(ctx context.Context, c *call) (any, error) {
	q, err := parseQuery(c.r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	typ, err := queryOne(q, "type")
	if err != nil {
		return nil, err
	}
	if !slices.Contains(uploadTypes, typ) {
		return nil, badRequest("type must be image, video, audio or file")
	}
	url, token, err := s.o.Backend.NewUpload(ctx, c.bot, typ)
	if err != nil {
		return nil, err
	}
	return UploadEndpoint{URL: url, Token: token}, nil
}

// pollGrace is how long past its timeout a long poll may take before the
// Server gives up on Backend.Updates.
const pollGrace = 10 * time.Second

// errClosing cancels the long polls in flight when the Server closes.
var errClosing = errors.New("botapi: server closing")

// updates serves GET /updates?marker&limit&timeout&types: it long-polls
// Backend.Updates, ending early when the client goes away or the Server
// closes, and answers an UpdateList whose marker is never 0.
func (s *Server) updates(ctx context.Context, c *call) (any, error) {
	q, err := parseUpdatesQuery(c.r.URL.RawQuery, s.o.DefaultPollTimeout, s.o.MaxPollTimeout)
	if err != nil {
		return nil, err
	}
	c.rc.SetWriteDeadline(time.Now().Add(q.Timeout + 2*pollGrace))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(s.stop, func() { cancel(errClosing) })
	defer stop()
	ctx, cancelTimeout := context.WithTimeout(ctx, q.Timeout+pollGrace)
	defer cancelTimeout()

	list, err := s.o.Backend.Updates(ctx, c.bot, q.Marker, q.Limit, q.Types, q.Timeout)
	if err != nil {
		if errors.Is(context.Cause(ctx), errClosing) && c.r.Context().Err() == nil {
			return nil, ErrUnavailable
		}
		return nil, err
	}
	list.Updates = nonNil(list.Updates)
	if list.Marker == 0 {
		// Backend promises a marker; answering 0 would make the SDK
		// start over, so keep the bot where it asked from.
		list.Marker = max(q.Marker, 1)
	}
	return list, nil
}

// subscriptions serves GET /subscriptions: {"subscriptions": [...]},
// always with the array.
func (s *Server) subscriptions(ctx context.Context, c *call) (any, error) {
	subs, err := s.o.Backend.Subscriptions(ctx, c.bot)
	if err != nil {
		return nil, err
	}
	for i := range subs {
		subs[i].UpdateTypes = nonNil(subs[i].UpdateTypes)
	}
	return SubscriptionList{Subscriptions: nonNil(subs)}, nil
}

// subscribe serves POST /subscriptions {url, secret, update_types}.
func (s *Server) subscribe(ctx context.Context, c *call) (any, error) {
	sub, err := decodeSubscription(c.body)
	if err != nil {
		return nil, err
	}
	return done(s.o.Backend.Subscribe(ctx, c.bot, sub.URL, sub.Secret, sub.UpdateTypes))
}

// unsubscribe serves DELETE /subscriptions?url.
func (s *Server) unsubscribe(ctx context.Context, c *call) (any, error) {
	q, err := parseQuery(c.r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	url, err := queryOne(q, "url")
	if err != nil {
		return nil, err
	}
	if url == "" || len(url) > maxURL {
		return nil, badRequest("url is required")
	}
	return done(s.o.Backend.Unsubscribe(ctx, c.bot, url))
}
