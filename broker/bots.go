package broker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// Errors of bot requests.
var (
	// ErrNoButton is returned for a callback that names no callback
	// button of a bot's message (NO_BUTTON).
	ErrNoButton = errors.New("broker: no such button")
	// ErrNoMiniApp is returned for a mini-app a bot does not declare
	// (NO_MINI_APP); Bots.MiniApp wraps it.
	ErrNoMiniApp = errors.New("broker: no mini-app")
)

// Bots is the node's bot platform (docs/bots.md) as the broker sees it.
// Its event methods are called after the change they report committed,
// on the request's goroutine, before the request is answered; they
// record the event durably for the bots concerned (in a bot's update
// queue) and must return within a store commit or two.
type Bots interface {
	// IsBot reports whether user is a bot. It must not block.
	IsBot(user storage.UserID) bool
	// MembersChanged reports that users joined (added) or left chat, of
	// kind, by user by's doing (by is one of users for a self-join or a
	// leave).
	MembersChanged(ctx context.Context, chat storage.ChatID, kind storage.ChatKind, added bool, users []storage.UserID, by storage.UserID)
	// BotRemoved reports that bot left chat, by user by's doing, with
	// the records after from (its delivered marker) up to to (the chat's
	// last seq once it left) unfetched: they are for its queue still.
	BotRemoved(ctx context.Context, chat storage.ChatID, bot, by storage.UserID, from, to uint64)
	// DirectOpened reports a new direct chat between user and peer.
	DirectOpened(ctx context.Context, chat storage.ChatID, user, peer storage.UserID)
	// Callback records user's press of a callback button with payload on
	// bot's message chat/seq, durably, for the bot's update queue.
	Callback(ctx context.Context, bot storage.UserID, chat storage.ChatID, seq uint64, user storage.UserID, payload string) error
	// MiniApp returns the URL of bot's mini-app and launch data signed for
	// bot, for user opening it from chat (0: from the bot's profile) with
	// start; an error wrapping ErrNoMiniApp when bot declares none.
	MiniApp(ctx context.Context, bot, user storage.UserID, chat storage.ChatID, start string) (url, initData string, err error)
}

// membersChanged tells the bots of a membership change; a failure is
// logged: the change stands.
func (b *Broker) membersChanged(chat storage.ChatID, kind storage.ChatKind, added bool, users []storage.UserID, by storage.UserID) {
	if b.opts.Bots != nil {
		b.opts.Bots.MembersChanged(work, chat, kind, added, users, by)
	}
}

// directOpened tells the bots of a new direct chat.
func (b *Broker) directOpened(chat storage.ChatID, user, peer storage.UserID) {
	if b.opts.Bots != nil {
		b.opts.Bots.DirectOpened(work, chat, user, peer)
	}
}

// Limits of the bot requests.
const (
	maxCallbackPayload = maxButtonPayload
	maxStartParam      = 512
)

// callback handles a Callback: the user presses a callback button of a
// bot's message in a chat the user is in; answered by Done once the bot's
// queue has it.
func (s *Session) callback(req *wire.Callback) (*wire.Frame, error) {
	if s.b.opts.Bots == nil {
		return nil, fmt.Errorf("%w: this node has no bots", ErrNoButton)
	}
	if len(req.Payload) > maxCallbackPayload || req.Payload == "" || req.Seq == 0 {
		return nil, fmt.Errorf("%w: a callback needs a seq and a payload of at most %d bytes", ErrBadRequest, maxCallbackPayload)
	}
	chat := storage.ChatID(req.Chat)
	e, _, err := s.access(chat, false)
	if err != nil {
		return nil, err
	}
	s.b.chats.unref(e)
	if err := s.spend(); err != nil {
		return nil, err
	}
	r, err := s.b.st.Get(chat, req.Seq)
	if errors.Is(err, storage.ErrNoTarget) {
		return nil, fmt.Errorf("%w: no message %d in chat %d", ErrNoButton, req.Seq, chat)
	}
	if err != nil {
		return nil, err
	}
	bot := r.Sender
	if r.Kind != storage.MsgMedia || r.Deleted || !s.b.opts.Bots.IsBot(bot) || !hasCallback(r.Body, req.Payload) {
		return nil, fmt.Errorf("%w: message %d of chat %d has no callback button %q", ErrNoButton, req.Seq, chat, req.Payload)
	}
	if _, err := s.b.st.Member(chat, bot); err != nil {
		// A bot that left learns nothing more of the chat.
		return nil, fmt.Errorf("%w: the bot of message %d left chat %d", ErrNoButton, req.Seq, chat)
	}
	if err := s.b.opts.Bots.Callback(work, bot, chat, req.Seq, s.user, req.Payload); err != nil {
		return nil, err
	}
	return done(), nil
}

// hasCallback reports whether a Content body has a callback button with
// payload.
func hasCallback(body []byte, payload string) bool {
	var c wire.Content
	if proto.Unmarshal(body, &c) != nil || c.Keyboard == nil {
		return false
	}
	for _, row := range c.Keyboard.Rows {
		for _, bt := range row.GetButtons() {
			if bt.GetType() == wire.ButtonType_BUTTON_TYPE_CALLBACK && bt.GetPayload() == payload {
				return true
			}
		}
	}
	return false
}

// miniAppOpen handles a MiniAppOpen.
func (s *Session) miniAppOpen(req *wire.MiniAppOpen) (*wire.Frame, error) {
	bot := storage.UserID(req.Bot)
	if s.b.opts.Bots == nil || bot == 0 || !s.b.opts.Bots.IsBot(bot) {
		return nil, fmt.Errorf("%w: user %d is not a bot", ErrNoMiniApp, req.Bot)
	}
	if len(req.StartParam) > maxStartParam {
		return nil, fmt.Errorf("%w: start_param longer than %d bytes", ErrBadRequest, maxStartParam)
	}
	chat := storage.ChatID(req.Chat)
	if chat != 0 {
		e, _, err := s.access(chat, false)
		if err != nil {
			return nil, err
		}
		s.b.chats.unref(e)
	}
	if err := s.spend(); err != nil {
		return nil, err
	}
	u, data, err := s.b.opts.Bots.MiniApp(work, bot, s.user, chat, req.StartParam)
	if err != nil {
		return nil, err
	}
	return &wire.Frame{Body: &wire.Frame_MiniAppLaunch{MiniAppLaunch: &wire.MiniAppLaunch{Url: u, InitData: data}}}, nil
}

// The broker's side of the Bot API: a bot acts through these, as its
// user, from device BotDevice.

// BotDevice is the device a bot's messages come from.
const BotDevice storage.DeviceID = 1

// PostAs appends m as user from device dev: a member of m.Chat that may
// post there (or, for edits, deletes and reactions, a member). A MEDIA
// body is checked and its files referenced as a client's. The record is
// pushed to the chat's online sessions.
func (b *Broker) PostAs(ctx context.Context, user storage.UserID, dev storage.DeviceID, m storage.Message) (storage.Ack, error) {
	if m.Chat == 0 || user == 0 {
		return storage.Ack{}, fmt.Errorf("%w: zero chat or user", ErrBadRequest)
	}
	// Pinned before the chat is read, so that the order read is the
	// entry's (as a session's appendOne does).
	e := b.chats.pin(m.Chat)
	defer b.unpin(e)
	c, err := b.st.Chat(m.Chat)
	if err != nil {
		return storage.Ack{}, err
	}
	me, err := b.st.Member(m.Chat, user)
	if err != nil {
		return storage.Ack{}, err
	}
	if m.Kind < 64 && c.Kind == storage.ChatChannel && me.Role < storage.RoleAdmin {
		return storage.Ack{}, fmt.Errorf("%w: only the owner and admins post in channel %d", ErrForbidden, m.Chat)
	}
	m.Sender, m.Device = user, dev
	prime(e, c)
	return b.commitContent(ctx, e, m, nil)
}

// prime tells an entry new to the index where chat c's order stands
// before an append, as a session's access check does: c was read before
// the append, so every seq up to its LastSeq was published already, or
// will be, late, by an append in flight.
func prime(e *chatEntry, c storage.Chat) {
	e.mu.Lock()
	if e.kind == 0 {
		e.kind = c.Kind
	}
	if e.next == 0 {
		e.next = c.LastSeq + 1
	}
	e.mu.Unlock()
}

// DirectChat returns the direct chat of user and peer, creating it (as
// user's) when there is none.
func (b *Broker) DirectChat(ctx context.Context, user, peer storage.UserID) (storage.ChatID, error) {
	if user == 0 || peer == 0 || user == peer {
		return 0, fmt.Errorf("%w: a direct chat needs two users", ErrBadRequest)
	}
	c, err := b.st.CreateChat(ctx, storage.ChatSpec{Kind: storage.ChatDirect, Creator: user, Members: []storage.UserID{peer}})
	if err != nil && !errors.Is(err, storage.ErrChatExists) {
		return 0, err
	}
	// Also when it existed, as ServiceChat does.
	b.memberJoined(c.ID, user, storage.RoleOwner, storage.ChatDirect)
	b.memberJoined(c.ID, peer, storage.RoleMember, storage.ChatDirect)
	return c.ID, nil
}

// AddMembersAs adds users to chat as user by, as a client's AddMembers.
func (b *Broker) AddMembersAs(ctx context.Context, by storage.UserID, chat storage.ChatID, users []storage.UserID) error {
	if chat == 0 || len(users) == 0 || len(users) > maxAddMembers {
		return fmt.Errorf("%w: add 1 to %d users to a chat", ErrBadRequest, maxAddMembers)
	}
	return b.addMembers(ctx, by, chat, users, nil)
}

// RemoveMemberAs removes user from chat as user by (by itself: a leave),
// as a client's RemoveMember.
func (b *Broker) RemoveMemberAs(ctx context.Context, by storage.UserID, chat storage.ChatID, user storage.UserID) error {
	return b.removeMember(ctx, by, chat, user)
}

// TypingAs relays "user is typing" to chat's online members, as a
// client's Typing; user must be a member.
func (b *Broker) TypingAs(user storage.UserID, chat storage.ChatID) error {
	if _, err := b.st.Member(chat, user); err != nil {
		return err
	}
	c, err := b.st.Chat(chat)
	if err != nil || c.Kind == storage.ChatChannel {
		return err
	}
	p := b.encodeCallPush(&wire.Frame{Body: &wire.Frame_Typing{Typing: &wire.Typing{Chat: uint64(chat), User: uint64(user)}}})
	if p == nil {
		return nil
	}
	e := b.chats.ref(chat)
	b.relay(e, p, nil, user)
	b.chats.unref(e)
	p.Release()
	return nil
}

// PushCallbackAnswer pushes a bot's answer to a pressed button to the
// presser's online devices (best effort: the answer is a notification).
func (b *Broker) PushCallbackAnswer(user storage.UserID, ans *wire.CallbackAnswer) {
	b.pushUser(user, nil, &wire.Frame{Body: &wire.Frame_CallbackAnswer{CallbackAnswer: ans}}, false)
}

// Store returns the broker's store, for the node's other ways in (the
// Bot API) to read what they may.
func (b *Broker) Store() *storage.Store { return b.st }

// setTitle handles a SetTitle.
func (s *Session) setTitle(req *wire.SetTitle) (*wire.Frame, error) {
	if err := s.spend(); err != nil {
		return nil, err
	}
	if err := s.b.SetTitleAs(work, s.user, storage.ChatID(req.Chat), req.Title); err != nil {
		return nil, err
	}
	return done(), nil
}

// SetTitleAs renames chat as user by: a group's member, or a channel's
// owner or admin. The change is recorded in the chat as a title_changed
// service record from by.
func (b *Broker) SetTitleAs(ctx context.Context, by storage.UserID, chat storage.ChatID, title string) error {
	if chat == 0 || title == "" || len(title) > 256 {
		return fmt.Errorf("%w: a title is 1 to 256 bytes", ErrBadRequest)
	}
	// Renames of one chat are serialized, so that its last title_changed
	// record names its title; pinned before the chat is read.
	mu := &b.revisions[uint64(chat)*31%uint64(len(b.revisions))]
	mu.Lock()
	defer mu.Unlock()
	e := b.chats.pin(chat)
	defer b.unpin(e)
	c, err := b.st.Chat(chat)
	if err != nil {
		return err
	}
	me, err := b.st.Member(chat, by)
	if err != nil {
		return err
	}
	switch {
	case c.Kind == storage.ChatDirect:
		return fmt.Errorf("%w: a direct chat has no title", ErrForbidden)
	case c.Kind == storage.ChatChannel && me.Role < storage.RoleAdmin:
		return fmt.Errorf("%w: only the owner and admins rename channel %d", ErrForbidden, chat)
	}
	if err := b.st.SetTitle(ctx, chat, title); err != nil {
		return err
	}
	body, err := proto.Marshal(&wire.Service{Event: &wire.Service_TitleChanged{TitleChanged: &wire.TitleChanged{Title: title, By: uint64(by)}}})
	if err != nil {
		return err
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	m := storage.Message{Chat: chat, Sender: by, Device: storage.DeviceNode, ClientMsgID: binary.LittleEndian.Uint64(id[:]) | 1,
		Kind: storage.MsgService, Body: body}
	prime(e, c)
	_, err = b.commit(ctx, e, m, nil)
	return err
}
