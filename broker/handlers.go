package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// Request limits.
const (
	defaultHistory = 100
	maxHistory     = 1000
	defaultDialogs = 200
	maxDialogs     = 1000
	maxAddMembers  = 1000
)

// rateLimitError carries how long a rate-limited client should wait.
type rateLimitError struct{ wait time.Duration }

func (e *rateLimitError) Error() string {
	return fmt.Sprintf("broker: sending too fast; retry in %v", e.wait.Round(time.Millisecond))
}

func (e *rateLimitError) Unwrap() error { return ErrRateLimited }

// handle runs one request and returns its response: nil for a signal
// that has none.
func (s *Session) handle(ctx context.Context, f *wire.Frame) (*wire.Frame, error) {
	ctx, cancel := context.WithTimeout(ctx, s.b.opts.RequestTimeout)
	defer cancel()
	switch body := f.Body.(type) {
	case *wire.Frame_Send:
		m := body.Send
		return s.appendOne(ctx, storage.Message{Chat: storage.ChatID(m.Chat), ClientMsgID: m.ClientMsgId, Kind: msgKind(m.Kind), Body: m.Body}, true)
	case *wire.Frame_Edit:
		m := body.Edit
		return s.appendOne(ctx, storage.Message{Chat: storage.ChatID(m.Chat), ClientMsgID: m.ClientMsgId, Kind: storage.MsgEdit, Target: m.Target, Body: m.Body}, false)
	case *wire.Frame_Delete:
		m := body.Delete
		return s.appendOne(ctx, storage.Message{Chat: storage.ChatID(m.Chat), ClientMsgID: m.ClientMsgId, Kind: storage.MsgDelete, Target: m.Target}, false)
	case *wire.Frame_React:
		m := body.React
		return s.appendOne(ctx, storage.Message{Chat: storage.ChatID(m.Chat), ClientMsgID: m.ClientMsgId, Kind: storage.MsgReaction, Target: m.Target, Body: []byte(m.Emoji)}, false)
	case *wire.Frame_Sync:
		return s.sync(body.Sync)
	case *wire.Frame_History:
		return s.history(body.History)
	case *wire.Frame_Receipt:
		return s.receipt(ctx, body.Receipt)
	case *wire.Frame_CreateChat:
		return s.createChat(ctx, body.CreateChat)
	case *wire.Frame_AddMembers:
		return s.addMembers(ctx, body.AddMembers)
	case *wire.Frame_RemoveMember:
		return s.removeMember(ctx, storage.ChatID(body.RemoveMember.Chat), storage.UserID(body.RemoveMember.User))
	case *wire.Frame_Leave:
		return s.removeMember(ctx, storage.ChatID(body.Leave.Chat), s.user)
	case *wire.Frame_Typing:
		return nil, s.typing(body.Typing)
	case *wire.Frame_Ping:
		return &wire.Frame{Body: &wire.Frame_Pong{Pong: &wire.Pong{Nonce: body.Ping.Nonce}}}, nil
	case *wire.Frame_Auth:
		return s.reauth(body.Auth)
	}
	return nil, fmt.Errorf("%w: %T is not a request", ErrBadRequest, f.Body)
}

func done() *wire.Frame { return &wire.Frame{Body: &wire.Frame_Done{Done: &wire.Done{}}} }

// msgKind maps a client's message kind; unspecified means text. Only
// content kinds may be sent; edits, deletes and reactions have their own
// requests.
func msgKind(k wire.MsgKind) storage.MsgKind {
	switch k {
	case wire.MsgKind_MSG_KIND_UNSPECIFIED, wire.MsgKind_MSG_KIND_TEXT:
		return storage.MsgText
	case wire.MsgKind_MSG_KIND_MEDIA:
		return storage.MsgMedia
	}
	return 0 // rejected by the store as ErrBadKind
}

// access checks that the user is in chat (and may post, when post is
// set) and returns the chat's cache entry.
func (s *Session) access(chat storage.ChatID, post bool) (*chatEntry, storage.ChatKind, error) {
	if chat == 0 {
		return nil, 0, fmt.Errorf("%w: chat 0", ErrBadRequest)
	}
	e := s.b.chats.get(chat)
	kind, member, poster, err := e.access(s.b.st, s.user)
	switch {
	case err != nil:
		return nil, 0, err
	case !member:
		return nil, 0, fmt.Errorf("%w: chat %d", ErrNotMember, chat)
	case post && !poster:
		return nil, 0, fmt.Errorf("%w: only the owner and admins post in channel %d", ErrForbidden, chat)
	}
	return e, kind, nil
}

// spend takes one token from the user's send bucket.
func (s *Session) spend() error {
	if wait, ok := reserve(s.limiter, s.b.opts.Now()); !ok {
		s.b.m.rateLimited.Inc()
		return &rateLimitError{wait: wait}
	}
	return nil
}

// appendOne appends m as the session's user and device, answers with the
// ack, and publishes the record to the chat's other sessions.
func (s *Session) appendOne(ctx context.Context, m storage.Message, post bool) (*wire.Frame, error) {
	e, _, err := s.access(m.Chat, post)
	if err != nil {
		return nil, err
	}
	if err := s.spend(); err != nil {
		return nil, err
	}
	m.Sender, m.Device = s.user, s.device
	// The store answers every append it takes, committed or not; the
	// request's deadline must not abandon one whose seq is then published
	// by nobody, which would hold the chat's later pushes back.
	acks, err := s.b.st.Append(context.WithoutCancel(ctx), []storage.Message{m})
	if err != nil {
		return nil, err
	}
	ack := acks[0]
	if ack.Err != nil {
		return nil, ack.Err
	}
	if !ack.Duplicate {
		s.b.m.messages.Inc()
		msg := &wire.Message{
			Chat: uint64(m.Chat), Seq: ack.Seq, Sender: uint64(m.Sender), Device: uint64(m.Device),
			ClientMsgId: m.ClientMsgID, Kind: wire.MsgKind(m.Kind), TimeUs: ack.Time, Target: m.Target, Body: m.Body,
		}
		if p, err := s.encodePush(&wire.Frame{Body: &wire.Frame_Deliver{Deliver: &wire.Deliver{Message: msg}}}); err == nil {
			s.b.publish(e, ack.Seq, p, s)
			p.Release()
		}
	}
	return &wire.Frame{Body: &wire.Frame_Ack{Ack: &wire.Ack{Chat: uint64(m.Chat), Seq: ack.Seq, TimeUs: ack.Time, Duplicate: ack.Duplicate}}}, nil
}

// sync lists the user's dialogs changed since a sync point. A sync that
// starts (no cursor) resumes live pushes stopped by a slow read: what was
// dropped before it is in the listing, what comes after it is pushed.
func (s *Session) sync(req *wire.SyncRequest) (*wire.Frame, error) {
	cur, err := storage.ParseDialogCursor(req.Cursor)
	if err != nil {
		return nil, fmt.Errorf("%w: cursor", ErrBadRequest)
	}
	if len(req.Cursor) == 0 && s.out.Resume() {
		s.resyncSent.Store(false)
	}
	limit := int(req.Limit)
	if limit == 0 {
		limit = defaultDialogs
	}
	limit = min(limit, maxDialogs)
	page, err := s.b.st.Dialogs(s.user, req.Since, cur, limit)
	if err != nil {
		return nil, err
	}
	res := &wire.SyncResult{More: page.More, Version: page.Version, Dialogs: make([]*wire.Dialog, len(page.Dialogs))}
	for i, d := range page.Dialogs {
		res.Dialogs[i] = &wire.Dialog{
			Chat: uint64(d.Chat), Kind: wire.ChatKind(d.Kind), LastSeq: d.LastSeq, LastTimeUs: d.LastTime,
			Version: d.Version, Delivered: d.Delivered, Read: d.Read,
		}
	}
	if page.More {
		if res.Next, err = page.Next.AppendBinary(nil); err != nil {
			return nil, err
		}
	} else {
		s.since.Store(page.Version)
	}
	return &wire.Frame{Body: &wire.Frame_SyncResult{SyncResult: res}}, nil
}

// history reads a range of a chat's log.
func (s *Session) history(req *wire.HistoryRequest) (*wire.Frame, error) {
	chat := storage.ChatID(req.Chat)
	if _, _, err := s.access(chat, false); err != nil {
		return nil, err
	}
	limit := int(req.Limit)
	if limit == 0 {
		limit = defaultHistory
	}
	limit = min(limit, maxHistory)
	res := &wire.HistoryResult{Chat: req.Chat}
	collect := func(r *storage.Record) error {
		res.Messages = append(res.Messages, wireMessage(r))
		return nil
	}
	var c storage.Chat
	var err error
	if req.Latest {
		c, err = s.b.st.ReadLatest(chat, limit, collect)
	} else {
		c, err = s.b.st.ReadRange(chat, req.FromSeq, limit, collect)
	}
	if err != nil {
		return nil, err
	}
	res.LastSeq, res.Floor = c.LastSeq, c.Floor
	return &wire.Frame{Body: &wire.Frame_HistoryResult{HistoryResult: res}}, nil
}

// wireMessage copies a record for the client.
func wireMessage(r *storage.Record) *wire.Message {
	m := &wire.Message{
		Chat: uint64(r.Chat), Seq: r.Seq, Sender: uint64(r.Sender), Device: uint64(r.Device),
		ClientMsgId: r.ClientMsgID, Kind: wire.MsgKind(r.Kind), TimeUs: r.Time, Target: r.Target,
		Body: slices.Clone(r.Body), EditedUs: r.Edited, Deleted: r.Deleted,
	}
	for _, x := range r.Reactions {
		m.Reactions = append(m.Reactions, &wire.Reaction{Emoji: x.Emoji, Count: x.Count})
	}
	return m
}

// receipt advances the user's markers and tells the user's other devices
// and, for read markers outside channels, the other members.
func (s *Session) receipt(ctx context.Context, req *wire.Receipt) (*wire.Frame, error) {
	chat := storage.ChatID(req.Chat)
	e, kind, err := s.access(chat, false)
	if err != nil {
		return nil, err
	}
	before, err := s.b.st.Member(chat, s.user)
	if err != nil {
		return nil, err
	}
	after, err := s.b.st.SetMarkers(ctx, chat, s.user, req.Delivered, req.Read)
	if err != nil {
		return nil, err
	}
	if after.Delivered == before.Delivered && after.Read == before.Read {
		return done(), nil
	}
	push := &wire.Frame{Body: &wire.Frame_Receipt{Receipt: &wire.Receipt{
		Chat: req.Chat, Delivered: after.Delivered, Read: after.Read, User: uint64(s.user),
	}}}
	p, err := s.encodePush(push)
	if err != nil {
		return nil, err
	}
	defer p.Release()
	if after.Read != before.Read && kind != storage.ChatChannel {
		s.b.relay(e, p, s, 0)
	} else {
		bp := outboxPool.Get().(*[]*Outbox)
		to := s.b.reg.appendOutboxes((*bp)[:0], s.user, s)
		Fanout(p, to)
		clear(to)
		*bp = to[:0]
		outboxPool.Put(bp)
	}
	return done(), nil
}

// typing relays a typing signal to the chat's other members' sessions.
func (s *Session) typing(req *wire.Typing) error {
	chat := storage.ChatID(req.Chat)
	e, kind, err := s.access(chat, true)
	if err != nil {
		return err
	}
	if kind == storage.ChatChannel {
		return nil // channel audiences see no typing
	}
	if err := s.spend(); err != nil {
		return nil // typing is best effort: a flood is dropped, not answered
	}
	p, err := s.encodePush(&wire.Frame{Body: &wire.Frame_Typing{Typing: &wire.Typing{Chat: req.Chat, User: uint64(s.user)}}})
	if err != nil {
		return err
	}
	s.b.relay(e, p, nil, s.user)
	p.Release()
	return nil
}

// chatKind maps a client's chat kind.
func chatKind(k wire.ChatKind) storage.ChatKind {
	switch k {
	case wire.ChatKind_CHAT_KIND_DIRECT:
		return storage.ChatDirect
	case wire.ChatKind_CHAT_KIND_GROUP:
		return storage.ChatGroup
	case wire.ChatKind_CHAT_KIND_CHANNEL:
		return storage.ChatChannel
	}
	return 0
}

// createChat creates a chat owned by the user.
func (s *Session) createChat(ctx context.Context, req *wire.CreateChat) (*wire.Frame, error) {
	kind := chatKind(req.Kind)
	if kind == 0 {
		return nil, fmt.Errorf("%w: chat kind %v", ErrBadRequest, req.Kind)
	}
	members := make([]storage.UserID, 0, len(req.Members))
	for _, u := range req.Members {
		if u == 0 {
			return nil, fmt.Errorf("%w: member 0", ErrBadRequest)
		}
		if storage.UserID(u) != s.user {
			members = append(members, storage.UserID(u))
		}
	}
	slices.Sort(members)
	members = slices.Compact(members)
	if kind == storage.ChatDirect && len(members) != 1 {
		return nil, fmt.Errorf("%w: a direct chat has exactly one other member", ErrBadRequest)
	}
	if err := s.b.checkChatRoom(append([]storage.UserID{s.user}, members...)); err != nil {
		return nil, err
	}
	c, err := s.b.st.CreateChat(ctx, storage.ChatSpec{Kind: kind, Creator: s.user, Members: members, Title: req.Title})
	existed := false
	switch {
	case errors.Is(err, storage.ErrChatExists) && kind == storage.ChatDirect:
		existed = true
	case err != nil:
		return nil, err
	}
	s.b.chats.invalidate(c.ID)
	return &wire.Frame{Body: &wire.Frame_Chat{Chat: &wire.ChatInfo{
		Chat: uint64(c.ID), Kind: wire.ChatKind(c.Kind), Title: c.Title, Creator: uint64(c.Creator),
		Members: c.Members, LastSeq: c.LastSeq, Existed: existed,
	}}}, nil
}

// checkChatRoom fails with ErrTooManyChats when a user is in
// MaxChatsPerUser chats already. It is checked before the change, so
// concurrent joins may pass it together.
func (b *Broker) checkChatRoom(users []storage.UserID) error {
	for _, u := range users {
		chats, err := b.st.UserChats(u, 0, b.opts.MaxChatsPerUser)
		if err != nil {
			return err
		}
		if len(chats) >= b.opts.MaxChatsPerUser {
			return fmt.Errorf("%w: user %d is in %d chats", ErrTooManyChats, u, len(chats))
		}
	}
	return nil
}

// addMembers adds users to a group (any member may) or a channel (its
// admins may; anyone may subscribe themselves). Users already in are
// skipped; the adds before a failure stay.
func (s *Session) addMembers(ctx context.Context, req *wire.AddMembers) (*wire.Frame, error) {
	chat := storage.ChatID(req.Chat)
	if len(req.Users) == 0 || len(req.Users) > maxAddMembers {
		return nil, fmt.Errorf("%w: add 1 to %d users at a time", ErrBadRequest, maxAddMembers)
	}
	e := s.b.chats.get(chat)
	kind, member, poster, err := e.access(s.b.st, s.user)
	if err != nil {
		return nil, err
	}
	selfJoin := len(req.Users) == 1 && storage.UserID(req.Users[0]) == s.user
	switch {
	case kind == storage.ChatDirect:
		return nil, fmt.Errorf("%w: a direct chat has fixed members", ErrForbidden)
	case kind == storage.ChatChannel && selfJoin:
	case kind == storage.ChatChannel && !poster:
		return nil, fmt.Errorf("%w: only the owner and admins add channel subscribers", ErrForbidden)
	case !member:
		return nil, fmt.Errorf("%w: chat %d", ErrNotMember, chat)
	}
	role := storage.RoleMember
	if kind == storage.ChatChannel {
		role = storage.RoleSubscriber
	}
	defer s.b.chats.invalidate(chat)
	for _, u := range req.Users {
		if u == 0 {
			return nil, fmt.Errorf("%w: user 0", ErrBadRequest)
		}
		if _, err := s.b.st.Member(chat, storage.UserID(u)); err == nil {
			continue
		}
		if err := s.b.checkChatRoom([]storage.UserID{storage.UserID(u)}); err != nil {
			return nil, err
		}
		if err := s.b.st.AddMember(ctx, chat, storage.UserID(u), role); err != nil && !errors.Is(err, storage.ErrAlreadyMember) {
			return nil, fmt.Errorf("add user %d: %w", u, err)
		}
	}
	return done(), nil
}

// removeMember removes a user: oneself (leave), or anyone below the owner
// by an admin or the owner.
func (s *Session) removeMember(ctx context.Context, chat storage.ChatID, user storage.UserID) (*wire.Frame, error) {
	if chat == 0 || user == 0 {
		return nil, fmt.Errorf("%w: zero chat or user", ErrBadRequest)
	}
	if user != s.user {
		me, err := s.b.st.Member(chat, s.user)
		if err != nil {
			return nil, err
		}
		them, err := s.b.st.Member(chat, user)
		if err != nil {
			return nil, err
		}
		if me.Role < storage.RoleAdmin || them.Role >= me.Role {
			return nil, fmt.Errorf("%w: removing a %v takes a higher role than %v", ErrForbidden, them.Role, me.Role)
		}
	}
	if err := s.b.st.RemoveMember(ctx, chat, user); err != nil {
		return nil, err
	}
	s.b.chats.invalidate(chat)
	return done(), nil
}

// reauth replaces the session's token with a fresh one for the same user
// and device.
func (s *Session) reauth(req *wire.Auth) (*wire.Frame, error) {
	c, err := s.b.verifier.Verify(req.Token)
	if err != nil {
		return nil, err
	}
	if storage.UserID(c.User) != s.user || storage.DeviceID(c.Device) != s.device {
		return nil, fmt.Errorf("%w: the token is for another user or device", token.ErrForged)
	}
	s.expires.Store(c.Expires.UnixMicro())
	return done(), nil
}
