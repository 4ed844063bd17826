package bots

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/bots/botapi"
	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/storage"
)

// apiError maps the node's errors onto the Bot API's.
func apiError(err error) error {
	switch {
	case err == nil:
		return nil
	case botapi.AsAPIError(err) != nil:
		return err
	case errors.Is(err, storage.ErrUnknownChat):
		return botapi.ErrChatNotFound
	case errors.Is(err, storage.ErrNotMember), errors.Is(err, broker.ErrNotMember):
		return botapi.Errorf(botapi.ErrForbidden, "the bot is not a member of this chat")
	case errors.Is(err, broker.ErrForbidden), errors.Is(err, storage.ErrNotAllowed):
		return botapi.Errorf(botapi.ErrForbidden, "%v", err)
	case errors.Is(err, storage.ErrNoTarget):
		return botapi.Errorf(botapi.ErrNotFound, "message not found")
	case errors.Is(err, broker.ErrUnknownFile):
		return botapi.Errorf(botapi.ErrBadRequest, "an attachment's file is gone: upload it again")
	case errors.Is(err, broker.ErrBadContent), errors.Is(err, broker.ErrBadRequest), errors.Is(err, storage.ErrBadID),
		errors.Is(err, storage.ErrTooLarge):
		return botapi.Errorf(botapi.ErrBadRequest, "%v", err)
	case errors.Is(err, storage.ErrTooManyChats), errors.Is(err, broker.ErrTooManyChats), errors.Is(err, storage.ErrTooManyMembers):
		return botapi.Errorf(botapi.ErrForbidden, "%v", err)
	case errors.Is(err, broker.ErrShutdown), errors.Is(err, storage.ErrClosed):
		return botapi.ErrUnavailable
	}
	return err
}

// Me implements botapi.Backend.
func (n *Node) Me(ctx context.Context, bot int64) (botapi.BotInfo, error) {
	info, err := n.o.Accounts.BotInfo(storage.UserID(bot))
	if err != nil {
		return botapi.BotInfo{}, botapi.ErrUnknownToken
	}
	out := botapi.BotInfo{User: *n.user(storage.UserID(bot))}
	if info.Description != "" {
		d := info.Description
		out.Description = &d
	}
	for _, c := range info.Commands {
		d := c.Description
		out.Commands = append(out.Commands, botapi.BotCommand{Name: c.Name, Description: &d})
	}
	return out, nil
}

// SetCommands implements botapi.Backend.
func (n *Node) SetCommands(ctx context.Context, bot int64, cmds []botapi.BotCommand) ([]botapi.BotCommand, error) {
	var ic []identity.BotCommand
	for _, c := range cmds {
		d := ""
		if c.Description != nil {
			d = *c.Description
		}
		ic = append(ic, identity.BotCommand{Name: c.Name, Description: d})
	}
	if err := n.o.Accounts.SetBotCommands(storage.UserID(bot), ic); err != nil {
		return nil, botapi.Errorf(botapi.ErrBadRequest, "%v", err)
	}
	if cmds == nil {
		cmds = []botapi.BotCommand{}
	}
	return cmds, nil
}

// chat renders chat c for bot.
func (n *Node) chat(st *storage.Store, c storage.Chat, bot storage.UserID) botapi.Chat {
	out := botapi.Chat{
		ChatID: int64(c.ID), Type: chatType(c.Kind), Status: "active",
		LastEventTime: ms(max(c.LastTime, c.Created)), ParticipantsCount: int(c.Members),
		IsPublic: c.Kind == storage.ChatChannel,
	}
	if c.Title != "" {
		t := c.Title
		out.Title = &t
	}
	if c.Creator != 0 {
		o := int64(c.Creator)
		out.OwnerID = &o
	}
	if c.Kind == storage.ChatDirect {
		if ms, err := st.Members(c.ID, 0, 2); err == nil {
			for _, m := range ms {
				if m.User != bot {
					out.DialogWithUser = n.user(m.User)
				}
			}
		}
	}
	return out
}

// Chats implements botapi.Backend.
func (n *Node) Chats(ctx context.Context, bot int64, marker int64, count int) ([]botapi.Chat, int64, error) {
	_, st, err := n.broker()
	if err != nil {
		return nil, 0, err
	}
	if count <= 0 || count > 100 {
		count = 50
	}
	ucs, err := st.UserChats(storage.UserID(bot), storage.ChatID(marker), count+1)
	if err != nil {
		return nil, 0, apiError(err)
	}
	var next int64
	if len(ucs) > count {
		ucs = ucs[:count]
		next = int64(ucs[count-1].Chat)
	}
	out := []botapi.Chat{}
	for _, uc := range ucs {
		if c, err := st.Chat(uc.Chat); err == nil && !storage.IsServiceUser(c.Creator) {
			out = append(out, n.chat(st, c, storage.UserID(bot)))
		}
	}
	return out, next, nil
}

// memberChat reads chat, which bot must be in.
func (n *Node) memberChat(bot int64, chat int64) (*storage.Store, storage.Chat, storage.Member, error) {
	_, st, err := n.broker()
	if err != nil {
		return nil, storage.Chat{}, storage.Member{}, err
	}
	if chat <= 0 {
		return nil, storage.Chat{}, storage.Member{}, botapi.ErrChatNotFound
	}
	c, err := st.Chat(storage.ChatID(chat))
	if err != nil {
		return nil, storage.Chat{}, storage.Member{}, apiError(err)
	}
	m, err := st.Member(c.ID, storage.UserID(bot))
	if err != nil {
		// A chat the bot is not in is not found, as for anyone outside.
		return nil, storage.Chat{}, storage.Member{}, botapi.ErrChatNotFound
	}
	return st, c, m, nil
}

// Chat implements botapi.Backend.
func (n *Node) Chat(ctx context.Context, bot, chat int64) (botapi.Chat, error) {
	st, c, _, err := n.memberChat(bot, chat)
	if err != nil {
		return botapi.Chat{}, err
	}
	return n.chat(st, c, storage.UserID(bot)), nil
}

// EditChat implements botapi.Backend: a new title, as a member of the
// group (or an admin of the channel) may set it.
func (n *Node) EditChat(ctx context.Context, bot, chat int64, title *string) (botapi.Chat, error) {
	st, c, _, err := n.memberChat(bot, chat)
	if err != nil {
		return botapi.Chat{}, err
	}
	if title != nil && *title != c.Title {
		b, _, err := n.broker()
		if err != nil {
			return botapi.Chat{}, err
		}
		if err := b.SetTitleAs(ctx, storage.UserID(bot), c.ID, *title); err != nil {
			return botapi.Chat{}, apiError(err)
		}
		if c, err = st.Chat(c.ID); err != nil {
			return botapi.Chat{}, apiError(err)
		}
	}
	return n.chat(st, c, storage.UserID(bot)), nil
}

func (n *Node) member(m storage.Member, c storage.Chat) botapi.ChatMember {
	return botapi.ChatMember{
		User: *n.user(m.User), JoinTime: ms(m.Joined), LastAccessTime: ms(m.Joined),
		IsOwner: m.Role == storage.RoleOwner, IsAdmin: m.Role >= storage.RoleAdmin,
		Permissions: permissions(m.Role),
	}
}

func permissions(r storage.Role) []string {
	switch {
	case r == storage.RoleOwner:
		return []string{"read_all_messages", "add_remove_members", "add_admins", "change_chat_info", "pin_message", "write"}
	case r == storage.RoleAdmin:
		return []string{"read_all_messages", "add_remove_members", "change_chat_info", "pin_message", "write"}
	}
	return nil
}

// Members implements botapi.Backend.
func (n *Node) Members(ctx context.Context, bot, chat int64, users []int64, marker int64, count int) ([]botapi.ChatMember, int64, error) {
	st, c, _, err := n.memberChat(bot, chat)
	if err != nil {
		return nil, 0, err
	}
	out := []botapi.ChatMember{}
	if len(users) > 0 {
		for _, u := range users {
			if m, err := st.Member(c.ID, storage.UserID(u)); err == nil {
				out = append(out, n.member(m, c))
			}
		}
		return out, 0, nil
	}
	if count <= 0 || count > 100 {
		count = 20
	}
	ms, err := st.Members(c.ID, storage.UserID(marker), count+1)
	if err != nil {
		return nil, 0, apiError(err)
	}
	var next int64
	if len(ms) > count {
		ms = ms[:count]
		next = int64(ms[count-1].User)
	}
	for _, m := range ms {
		out = append(out, n.member(m, c))
	}
	return out, next, nil
}

// Admins implements botapi.Backend.
func (n *Node) Admins(ctx context.Context, bot, chat int64) ([]botapi.ChatMember, error) {
	st, c, _, err := n.memberChat(bot, chat)
	if err != nil {
		return nil, err
	}
	out := []botapi.ChatMember{}
	var after storage.UserID
	for range 100 { // at most 100 pages of 1,000 members
		ms, err := st.Members(c.ID, after, 1000)
		if err != nil {
			return nil, apiError(err)
		}
		for _, m := range ms {
			if m.Role >= storage.RoleAdmin {
				out = append(out, n.member(m, c))
			}
		}
		if len(ms) < 1000 {
			break
		}
		after = ms[len(ms)-1].User
	}
	return out, nil
}

// Membership implements botapi.Backend.
func (n *Node) Membership(ctx context.Context, bot, chat int64) (botapi.ChatMember, error) {
	_, c, m, err := n.memberChat(bot, chat)
	if err != nil {
		return botapi.ChatMember{}, err
	}
	return n.member(m, c), nil
}

// AddMembers implements botapi.Backend.
func (n *Node) AddMembers(ctx context.Context, bot, chat int64, users []int64) ([]int64, error) {
	b, _, err := n.broker()
	if err != nil {
		return nil, err
	}
	us := make([]storage.UserID, 0, len(users))
	for _, u := range users {
		if u <= 0 {
			return nil, botapi.Errorf(botapi.ErrBadRequest, "user id %d", u)
		}
		us = append(us, storage.UserID(u))
	}
	if err := b.AddMembersAs(ctx, storage.UserID(bot), storage.ChatID(chat), us); err != nil {
		return nil, apiError(err)
	}
	return nil, nil
}

// RemoveMember implements botapi.Backend.
func (n *Node) RemoveMember(ctx context.Context, bot, chat, user int64) error {
	b, _, err := n.broker()
	if err != nil {
		return err
	}
	if user <= 0 {
		return botapi.Errorf(botapi.ErrBadRequest, "user id %d", user)
	}
	return apiError(b.RemoveMemberAs(ctx, storage.UserID(bot), storage.ChatID(chat), storage.UserID(user)))
}

// Leave implements botapi.Backend.
func (n *Node) Leave(ctx context.Context, bot, chat int64) error {
	return n.RemoveMember(ctx, bot, chat, bot)
}

// Action implements botapi.Backend: typing and its kin are shown as
// typing.
func (n *Node) Action(ctx context.Context, bot, chat int64, action string) error {
	b, _, err := n.broker()
	if err != nil {
		return err
	}
	switch action {
	case "typing_on", "sending_photo", "sending_video", "sending_audio", "sending_file":
	case "mark_seen":
		return nil
	default:
		return botapi.Errorf(botapi.ErrBadRequest, "unknown action %q", action)
	}
	if chat <= 0 {
		return botapi.ErrChatNotFound
	}
	return apiError(b.TypingAs(storage.UserID(bot), storage.ChatID(chat)))
}

// newMsgID is a client message id for a bot's message: the Bot API has
// no idempotency key, so each request is a message of its own.
func newMsgID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) | 1
}

// Send implements botapi.Backend.
func (n *Node) Send(ctx context.Context, bot, chat, user int64, body botapi.NewMessageBody) (botapi.Message, error) {
	b, st, err := n.broker()
	if err != nil {
		return botapi.Message{}, err
	}
	kind, raw, err := n.content(storage.UserID(bot), body)
	if err != nil {
		return botapi.Message{}, err
	}
	cid := storage.ChatID(chat)
	if chat == 0 {
		switch {
		case user <= 0 || user == bot:
			return botapi.Message{}, botapi.Errorf(botapi.ErrBadRequest, "send to a chat_id or a user_id")
		case storage.IsServiceUser(storage.UserID(user)) || n.o.Accounts.IsBot(storage.UserID(user)):
			return botapi.Message{}, botapi.Errorf(botapi.ErrForbidden, "a bot writes to people, not to user %d", user)
		}
		if cid, err = b.DirectChat(ctx, storage.UserID(bot), storage.UserID(user)); err != nil {
			return botapi.Message{}, apiError(err)
		}
	}
	c, err := st.Chat(cid)
	if err != nil {
		return botapi.Message{}, apiError(err)
	}
	ack, err := b.PostAs(ctx, storage.UserID(bot), broker.BotDevice, storage.Message{Chat: cid, ClientMsgID: newMsgID(), Kind: kind, Body: raw})
	if err != nil {
		return botapi.Message{}, apiError(err)
	}
	r, err := st.Get(cid, ack.Seq)
	if err != nil {
		return botapi.Message{}, apiError(err)
	}
	m := n.message(&r, c.Kind, storage.UserID(bot))
	if c.Kind == storage.ChatDirect {
		n.setPeer(st, &m, c.ID, storage.UserID(bot))
	}
	return m, nil
}

// setPeer sets a dialog message's recipient user: the bot's peer.
func (n *Node) setPeer(st *storage.Store, m *botapi.Message, chat storage.ChatID, bot storage.UserID) {
	if ms, err := st.Members(chat, 0, 2); err == nil {
		for _, x := range ms {
			if x.User != bot {
				u := int64(x.User)
				m.Recipient.UserID = &u
			}
		}
	}
}

// ownMessage reads the bot's message mid.
func (n *Node) ownMessage(bot int64, id string) (*broker.Broker, storage.Record, error) {
	b, st, err := n.broker()
	if err != nil {
		return nil, storage.Record{}, err
	}
	chat, seq, err := parseMid(id)
	if err != nil {
		return nil, storage.Record{}, err
	}
	if _, err := st.Member(chat, storage.UserID(bot)); err != nil {
		return nil, storage.Record{}, botapi.ErrNotFound
	}
	r, err := st.Get(chat, seq)
	if err != nil || r.Kind >= 64 || r.Deleted {
		return nil, storage.Record{}, botapi.Errorf(botapi.ErrNotFound, "message %s not found", id)
	}
	return b, r, nil
}

// Edit implements botapi.Backend.
func (n *Node) Edit(ctx context.Context, bot int64, id string, body botapi.NewMessageBody) error {
	b, r, err := n.ownMessage(bot, id)
	if err != nil {
		return err
	}
	if r.Sender != storage.UserID(bot) {
		return botapi.Errorf(botapi.ErrForbidden, "a bot edits only its own messages")
	}
	if body.Attachments == nil && r.Kind == storage.MsgMedia {
		// attachments null keeps the message's files and keyboard (MAX's
		// rule; [] removes them): only its text and format change.
		return n.editText(ctx, b, bot, r, body)
	}
	kind, raw, err := n.content(storage.UserID(bot), body)
	if err != nil {
		return err
	}
	if kind != r.Kind {
		// The store keeps a message's kind: a plain text edit of a MEDIA
		// message is stored as a Content.
		if r.Kind == storage.MsgMedia {
			raw, err = textContent(raw)
			if err != nil {
				return err
			}
		} else {
			return botapi.Errorf(botapi.ErrBadRequest, "a text message is edited with text only")
		}
	}
	_, err = b.PostAs(ctx, storage.UserID(bot), broker.BotDevice, storage.Message{Chat: r.Chat, ClientMsgID: newMsgID(), Kind: storage.MsgEdit, Target: r.Seq, Body: raw})
	return apiError(err)
}

// editText replaces the text (and format) of the bot's MEDIA message r,
// keeping its attachments and keyboard.
func (n *Node) editText(ctx context.Context, b *broker.Broker, bot int64, r storage.Record, body botapi.NewMessageBody) error {
	var c wire.Content
	if err := proto.Unmarshal(r.Body, &c); err != nil {
		return fmt.Errorf("bots: message %d of chat %d: %w", r.Seq, r.Chat, err)
	}
	text := ""
	if body.Text != nil {
		text = *body.Text
	}
	if !utf8.ValidString(text) || utf8.RuneCountInString(text) > maxText {
		return botapi.ErrTooLong
	}
	c.Text = text
	if body.Format != nil {
		f, err := textFormat(*body.Format)
		if err != nil {
			return err
		}
		c.Format = f
	}
	// The files keep their references: Attach takes new ones for the
	// edit's Content and the edit gives back the old Content's.
	for _, a := range c.Attachments {
		a.Size, a.Width, a.Height, a.ThumbSha256 = 0, 0, 0, ""
	}
	raw, err := proto.Marshal(&c)
	if err != nil {
		return err
	}
	_, err = b.PostAs(ctx, storage.UserID(bot), broker.BotDevice, storage.Message{Chat: r.Chat, ClientMsgID: newMsgID(), Kind: storage.MsgEdit, Target: r.Seq, Body: raw})
	return apiError(err)
}

func textContent(text []byte) ([]byte, error) {
	return marshalContent(&wire.Content{Text: string(text)})
}

// Delete implements botapi.Backend.
func (n *Node) Delete(ctx context.Context, bot int64, id string) error {
	b, r, err := n.ownMessage(bot, id)
	if err != nil {
		return err
	}
	_, err = b.PostAs(ctx, storage.UserID(bot), broker.BotDevice, storage.Message{Chat: r.Chat, ClientMsgID: newMsgID(), Kind: storage.MsgDelete, Target: r.Seq})
	return apiError(err)
}

// Message implements botapi.Backend.
func (n *Node) Message(ctx context.Context, bot int64, id string) (botapi.Message, error) {
	_, r, err := n.ownMessage(bot, id)
	if err != nil {
		return botapi.Message{}, err
	}
	_, st, _ := n.broker()
	c, err := st.Chat(r.Chat)
	if err != nil {
		return botapi.Message{}, apiError(err)
	}
	m := n.message(&r, c.Kind, storage.UserID(bot))
	if c.Kind == storage.ChatDirect {
		n.setPeer(st, &m, c.ID, storage.UserID(bot))
	}
	return m, nil
}

// Messages implements botapi.Backend.
func (n *Node) Messages(ctx context.Context, bot, chat int64, mids []string, from, to int64, count int) ([]botapi.Message, error) {
	out := []botapi.Message{}
	if len(mids) > 0 {
		for _, id := range mids {
			if m, err := n.Message(ctx, bot, id); err == nil {
				out = append(out, m)
			}
		}
		return out, nil
	}
	st, c, _, err := n.memberChat(bot, chat)
	if err != nil {
		return nil, err
	}
	if count <= 0 || count > 100 {
		count = 50
	}
	var recs []storage.Record
	_, err = st.ReadLatest(c.ID, 1000, func(r *storage.Record) error {
		t := ms(r.Time)
		if r.Kind >= 64 || r.Kind == storage.MsgService || r.Deleted || (from > 0 && t > from) || (to > 0 && t < to) {
			return nil
		}
		cp := *r
		cp.Body = append([]byte(nil), r.Body...)
		recs = append(recs, cp)
		return nil
	})
	if err != nil {
		return nil, apiError(err)
	}
	slices.Reverse(recs) // newest first
	for i := range recs[:min(count, len(recs))] {
		m := n.message(&recs[i], c.Kind, storage.UserID(bot))
		out = append(out, m)
	}
	return out, nil
}

// Answer implements botapi.Backend.
func (n *Node) Answer(ctx context.Context, bot int64, callbackID string, body *botapi.NewMessageBody, notification string) error {
	b, st, err := n.broker()
	if err != nil {
		return err
	}
	chat, seq, user, ok := n.parseCallbackID(storage.UserID(bot), callbackID)
	if !ok {
		return botapi.Errorf(botapi.ErrNotFound, "unknown or expired callback_id")
	}
	if _, err := st.Member(chat, storage.UserID(bot)); err != nil {
		return botapi.Errorf(botapi.ErrForbidden, "the bot left the chat of this callback")
	}
	if body != nil {
		if err := n.Edit(ctx, bot, mid(chat, seq), *body); err != nil {
			return err
		}
	}
	if _, err := st.Member(chat, user); err != nil {
		return nil // the presser left: nobody to tell
	}
	b.PushCallbackAnswer(user, &wire.CallbackAnswer{Chat: uint64(chat), Seq: seq, CallbackId: callbackID, Notification: notification})
	return nil
}

// NewUpload implements botapi.Backend.
func (n *Node) NewUpload(ctx context.Context, bot int64, typ string) (string, string, error) {
	if n.o.Files == nil {
		return "", "", botapi.Errorf(botapi.ErrBadRequest, "this node stores no files")
	}
	if _, ok := wireAttachmentType(typ); !ok {
		return "", "", botapi.Errorf(botapi.ErrBadRequest, "upload type %q: use image, video, audio or file", typ)
	}
	url, tok, err := n.o.Files.NewBotUpload(uint64(bot), typ)
	if err != nil {
		return "", "", fmt.Errorf("bots: new upload: %w", err)
	}
	return url, tok, nil
}

// Subscriptions implements botapi.Backend.
func (n *Node) Subscriptions(ctx context.Context, bot int64) ([]botapi.Subscription, error) {
	if n.o.Webhooks == nil {
		return []botapi.Subscription{}, nil
	}
	s := n.o.Webhooks.List(bot)
	if s == nil {
		s = []botapi.Subscription{}
	}
	return s, nil
}

// Subscribe implements botapi.Backend.
func (n *Node) Subscribe(ctx context.Context, bot int64, url, secret string, types []string) error {
	if n.o.Webhooks == nil {
		return botapi.Errorf(botapi.ErrWebhookURL, "this node delivers no webhooks")
	}
	if err := n.o.Webhooks.Add(bot, url, secret, types); err != nil {
		return err
	}
	n.o.Webhooks.Notify(bot)
	return nil
}

// Unsubscribe implements botapi.Backend.
func (n *Node) Unsubscribe(ctx context.Context, bot int64, url string) error {
	if n.o.Webhooks == nil {
		return nil
	}
	if err := n.o.Webhooks.Remove(bot, url); err != nil {
		return err
	}
	n.o.Webhooks.Notify(bot)
	return nil
}
