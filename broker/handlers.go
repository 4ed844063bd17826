package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// work is the context of requests' store work: it is not cancelled.
var work = context.Background()

// Request limits.
const (
	defaultHistory = 100
	maxHistory     = 1000
	defaultDialogs = 200
	maxDialogs     = 1000
	maxAddMembers  = 1000
)

// errPageFull stops a history read at the frame budget.
var errPageFull = errors.New("broker: page full")

// Frame overheads budgeted around a history page's messages: the frame's
// and result's own fields, and each message's length prefix and tag.
const (
	historyOverhead = 64
	messageOverhead = 6
)

// rateLimitError carries how long a rate-limited client should wait.
type rateLimitError struct{ wait time.Duration }

func (e *rateLimitError) Error() string {
	return fmt.Sprintf("broker: sending too fast; retry in %v", e.wait.Round(time.Millisecond))
}

func (e *rateLimitError) Unwrap() error { return ErrRateLimited }

// handle runs one request and returns its response: nil for a signal
// that has none. Plain sends, the hot path, go to send instead.
//
// Store work is never abandoned: a send or a membership change the store
// has taken completes whatever the client does next, so the index and the
// chat's publish order follow what committed; a failed store answers at
// once. Requests therefore run on a context of their own (work).
func (s *Session) handle(f *wire.Frame) (*wire.Frame, error) {
	ctx := work
	switch body := f.Body.(type) {
	case *wire.Frame_Send: // one ParseSend declined (unknown fields, say)
		m := body.Send
		return s.appendAck(storage.Message{Chat: storage.ChatID(m.Chat), ClientMsgID: m.ClientMsgId, Kind: msgKind(m.Kind), Body: m.Body}, true)
	case *wire.Frame_Edit:
		m := body.Edit
		return s.appendAck(storage.Message{Chat: storage.ChatID(m.Chat), ClientMsgID: m.ClientMsgId, Kind: storage.MsgEdit, Target: m.Target, Body: m.Body}, false)
	case *wire.Frame_Delete:
		m := body.Delete
		return s.appendAck(storage.Message{Chat: storage.ChatID(m.Chat), ClientMsgID: m.ClientMsgId, Kind: storage.MsgDelete, Target: m.Target}, false)
	case *wire.Frame_React:
		m := body.React
		return s.appendAck(storage.Message{Chat: storage.ChatID(m.Chat), ClientMsgID: m.ClientMsgId, Kind: storage.MsgReaction, Target: m.Target, Body: []byte(m.Emoji)}, false)
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
	case *wire.Frame_Devices:
		return s.devices()
	case *wire.Frame_DeviceEnd:
		return s.deviceEnd(body.DeviceEnd)
	case *wire.Frame_StateLinkStart, *wire.Frame_StateLinkFinish, *wire.Frame_LinkedRequest, *wire.Frame_StateUnlink,
		*wire.Frame_CredentialRequest, *wire.Frame_SignRequest, *wire.Frame_SignDecision:
		return s.stateRequest(f)
	case *wire.Frame_Callback:
		return s.callback(body.Callback)
	case *wire.Frame_MiniAppOpen:
		return s.miniAppOpen(body.MiniAppOpen)
	case *wire.Frame_SetTitle:
		return s.setTitle(body.SetTitle)
	}
	if resp, ok, err := s.handleCall(f); ok {
		return resp, err
	}
	return nil, fmt.Errorf("%w: %T is not a request", ErrBadRequest, f.Body)
}

// send handles a Send, the hot path: the ack is encoded straight into the
// response buffer, with no frame structs.
func (s *Session) send(id uint64, m *wire.SendView) error {
	s.b.m.requests.Inc()
	ack, err := s.appendOne(work, storage.Message{Chat: storage.ChatID(m.Chat), ClientMsgID: m.ClientMsgID, Kind: msgKind(m.Kind), Body: m.Body}, true)
	if err != nil {
		s.b.m.requestErrors.Inc()
		return s.respond(id, &wire.Frame{Body: &wire.Frame_Error{Error: s.b.clientError(err)}})
	}
	bp := getBuf()
	*bp = wire.AppendAck((*bp)[:0], id, uint64(m.Chat), ack.Seq, ack.Time, ack.Duplicate)
	err = s.writeResponse(*bp)
	putBuf(bp)
	return err
}

// appendAck appends m and returns its Ack.
func (s *Session) appendAck(m storage.Message, post bool) (*wire.Frame, error) {
	ack, err := s.appendOne(work, m, post)
	if err != nil {
		return nil, err
	}
	return &wire.Frame{Body: &wire.Frame_Ack{Ack: &wire.Ack{Chat: uint64(m.Chat), Seq: ack.Seq, TimeUs: ack.Time, Duplicate: ack.Duplicate}}}, nil
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
// set) and returns the chat's index entry, with a reference the caller
// drops with unref.
func (s *Session) access(chat storage.ChatID, post bool) (*chatEntry, storage.ChatKind, error) {
	if chat == 0 {
		return nil, 0, fmt.Errorf("%w: chat 0", ErrBadRequest)
	}
	e := s.b.chats.ref(chat)
	kind, err := s.accessEntry(e, post)
	if err != nil {
		s.b.chats.unref(e)
		return nil, 0, err
	}
	return e, kind, nil
}

// accessEntry is access on an entry the caller holds. An online user's
// chats are all in the index (register), so the check reads nothing but
// the chat's record, once per entry, for its kind and last seq.
func (s *Session) accessEntry(e *chatEntry, post bool) (storage.ChatKind, error) {
	e.mu.Lock()
	role, member := e.roleLocked(s.user)
	kind, ready := e.kind, e.kind != 0 && e.next != 0
	e.mu.Unlock()
	if !member || !ready {
		c, err := s.b.st.Chat(e.id)
		if err != nil {
			return 0, err
		}
		if !member {
			return 0, fmt.Errorf("%w: chat %d", ErrNotMember, e.id)
		}
		e.mu.Lock()
		if e.kind == 0 {
			e.kind = c.Kind
		}
		if e.next == 0 {
			// Read before this user's append, so it is published in
			// order: every seq up to LastSeq was published already, or
			// will be, late, by an append in flight.
			e.next = c.LastSeq + 1
		}
		kind = e.kind
		e.mu.Unlock()
	}
	if post && kind == storage.ChatChannel && role < storage.RoleAdmin {
		return 0, fmt.Errorf("%w: only the owner and admins post in channel %d", ErrForbidden, e.id)
	}
	return kind, nil
}

// membersPerToken is how many members a membership request may name per
// token of the send bucket it spends.
const membersPerToken = 50

// spend takes one token from the user's send bucket.
func (s *Session) spend() error { return s.spendN(1) }

// spendN takes n tokens (at most the bucket's size) from the user's send
// bucket.
func (s *Session) spendN(n int) error {
	if wait, ok := reserve(s.limiter, s.b.opts.Now(), min(n, s.b.opts.SendBurst)); !ok {
		s.b.m.rateLimited.Inc()
		return &rateLimitError{wait: wait}
	}
	return nil
}

// appendOne appends m as the session's user and device, answers with the
// ack, and publishes the record to the chat's other sessions.
func (s *Session) appendOne(ctx context.Context, m storage.Message, post bool) (storage.Ack, error) {
	if m.Chat == 0 {
		return storage.Ack{}, fmt.Errorf("%w: chat 0", ErrBadRequest)
	}
	// Pinned from before the access check until the publish, so that the
	// entry waiting for this seq is the one it is published to.
	e := s.b.chats.pin(m.Chat)
	defer s.b.unpin(e)
	if _, err := s.accessEntry(e, post); err != nil {
		return storage.Ack{}, err
	}
	if err := s.spend(); err != nil {
		return storage.Ack{}, err
	}
	m.Sender, m.Device = s.user, s.device
	return s.b.commitContent(ctx, e, m, s)
}

// commitContent is commit for a record that may carry a Content (a
// MEDIA message): its body is checked and its files referenced first,
// and the references given back when the message was not stored.
func (b *Broker) commitContent(ctx context.Context, e *chatEntry, m storage.Message, except *Session) (storage.Ack, error) {
	switch m.Kind {
	case storage.MsgMedia:
	case storage.MsgEdit, storage.MsgDelete:
		return b.commitRevision(ctx, e, m, except)
	default:
		return b.commit(ctx, e, m, except)
	}
	body, atts, err := b.prepareContent(ctx, m.Sender, m.Body)
	if err != nil {
		return storage.Ack{}, err
	}
	m.Body = body
	ack, err := b.commit(ctx, e, m, except)
	if releasable(ack, err) {
		// A refused append stored nothing; a duplicate's references were
		// taken by its first send.
		b.releaseContent(atts)
	}
	return ack, err
}

// releasable reports whether an append's answer lets the references its
// Content took be given back: it was refused, or a duplicate. After
// storage.ErrFailed the record may yet come back from the WAL, and after
// the request's context ended the store may still commit the append it
// took: either record holds them, so they are kept (a file kept too
// long, never one collected while a message names it).
func releasable(ack storage.Ack, err error) bool {
	if errors.Is(err, storage.ErrFailed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	return err != nil || ack.Duplicate
}

// commitRevision commits an edit or a delete. Of a MEDIA message, an
// edit carries a whole new Content, whose files it references; once it
// commits, the Content it replaces gives back its references, as a
// delete's target does. The target's revisions are serialized (a stripe
// lock), so that the Content read before the commit is the one replaced.
func (b *Broker) commitRevision(ctx context.Context, e *chatEntry, m storage.Message, except *Session) (storage.Ack, error) {
	mu := &b.revisions[(uint64(m.Chat)*31+m.Target)%uint64(len(b.revisions))]
	mu.Lock()
	defer mu.Unlock()
	t, err := b.st.Get(m.Chat, m.Target)
	if err != nil && !errors.Is(err, storage.ErrNoTarget) {
		// Unread, the target's files cannot be accounted for: an edit
		// stored without its Content checked, or a delete whose files are
		// kept for ever, would break the references.
		return storage.Ack{}, err
	}
	if err != nil && m.Kind == storage.MsgEdit {
		// Not there, or not durable yet when read: the store would take
		// an edit of a target that became durable before the edit's
		// batch, and a MEDIA target's new Content would go unchecked, its
		// files unreferenced. Targets must be acknowledged messages.
		return storage.Ack{}, err
	}
	if err != nil || t.Kind != storage.MsgMedia || t.Deleted {
		return b.commit(ctx, e, m, except) // the store judges the target
	}
	// The stored Content, as Attach filled it (thumbnails included).
	var old wire.Content
	oldOK := proto.Unmarshal(t.Body, &old) == nil
	var newAtts []*wire.Attachment
	if m.Kind == storage.MsgEdit {
		body, atts, err := b.prepareContent(ctx, m.Sender, m.Body, old.Attachments...)
		if err != nil {
			return storage.Ack{}, err
		}
		m.Body, newAtts = body, atts
	}
	ack, err := b.commit(ctx, e, m, except)
	if err != nil || ack.Duplicate {
		if releasable(ack, err) {
			b.releaseContent(newAtts)
		}
		return ack, err
	}
	if oldOK {
		b.releaseContent(old.Attachments)
	}
	return ack, nil
}

// commit appends m to the chat of e, which the caller pinned, and
// publishes the record to the chat's online sessions but except.
func (b *Broker) commit(ctx context.Context, e *chatEntry, m storage.Message, except *Session) (storage.Ack, error) {
	// The store answers every append it takes, committed or not; the
	// request's deadline must not abandon one whose seq is then published
	// by nobody, which would hold the chat's later pushes back.
	ack, err := b.st.AppendOne(ctx, m)
	if errors.Is(err, storage.ErrFailed) {
		// The append may have taken a seq in a batch that failed, which
		// nobody will publish, and its record may yet come back from the
		// WAL when the store reopens: start the chat's order afresh.
		e.restartOrder()
	}
	if err != nil {
		return storage.Ack{}, err
	}
	if errors.Is(ack.Err, storage.ErrNotMember) {
		b.memberLeft(m.Chat, m.Sender) // the store knows better than the index
	}
	if ack.Err != nil {
		return storage.Ack{}, ack.Err
	}
	if !ack.Duplicate {
		b.m.messages.Inc()
		msg := wire.NewMessage{
			Chat: uint64(m.Chat), Seq: ack.Seq, Sender: uint64(m.Sender), Device: uint64(m.Device),
			ClientMsgID: m.ClientMsgID, Kind: wire.MsgKind(m.Kind), TimeUs: ack.Time, Target: m.Target, Body: m.Body,
		}
		p := NewPayload()
		p.B, err = wire.AppendDeliver(p.B, &msg, b.opts.MaxFrameBytes)
		if err != nil {
			p.Release()
			// New checks that a Deliver of the largest body fits a frame;
			// should one not, its seq is skipped, not waited for.
			b.log.Error("broker: deliver not encodable", "chat", m.Chat, "seq", ack.Seq, "err", err)
			p = nil
		}
		b.publish(e, ack.Seq, p, except)
		if p != nil {
			p.Release()
		}
	}
	return ack, nil
}

// sync lists the user's dialogs changed since a sync point. A sync that
// starts (no cursor) resumes live pushes stopped by a slow read: what was
// dropped before it is in the listing, what comes after it is pushed.
func (s *Session) sync(req *wire.SyncRequest) (*wire.Frame, error) {
	cur, err := storage.ParseDialogCursor(req.Cursor)
	if err != nil {
		return nil, fmt.Errorf("%w: cursor", ErrBadRequest)
	}
	if len(req.Cursor) == 0 && s.resume() {
		s.resyncSent.Store(false)
		// A stall between Resume and the store above found a Resync
		// still marked sent, and its control writer wrote nothing.
		if s.controlDue() {
			s.wakeControl()
		}
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
	e, _, err := s.access(chat, false)
	if err != nil {
		return nil, err
	}
	s.b.chats.unref(e)
	limit := int(req.Limit)
	if limit == 0 {
		limit = defaultHistory
	}
	limit = min(limit, maxHistory)
	res := &wire.HistoryResult{Chat: req.Chat}
	// The page stops at what fits one frame: a forward read returns fewer
	// records (the client continues after the last), a latest read drops
	// the oldest.
	budget, size := s.b.opts.MaxFrameBytes-historyOverhead, 0
	collect := func(r *storage.Record) error {
		m := wireMessage(r)
		n := proto.Size(m) + messageOverhead
		for req.Latest && len(res.Messages) > 0 && size+n > budget {
			size -= proto.Size(res.Messages[0]) + messageOverhead
			res.Messages = res.Messages[1:]
		}
		if size+n > budget {
			return errPageFull
		}
		size += n
		res.Messages = append(res.Messages, m)
		return nil
	}
	var c storage.Chat
	if req.Latest {
		c, err = s.b.st.ReadLatest(chat, limit, collect)
	} else {
		c, err = s.b.st.ReadRange(chat, req.FromSeq, limit, collect)
	}
	if err != nil && !errors.Is(err, errPageFull) {
		return nil, err
	}
	if len(res.Messages) == 0 && errors.Is(err, errPageFull) {
		return nil, fmt.Errorf("%w: a record does not fit a frame", storage.ErrTooLarge)
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
	defer s.b.chats.unref(e)
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
	// The user's other devices always hear of it; the other members hear
	// of read markers outside channels and large groups (relay's limit).
	bp := outboxPool.Get().(*[]*Outbox)
	to := s.b.reg.appendOutboxes((*bp)[:0], s.user, s)
	Offer(p, to)
	clear(to)
	*bp = to[:0]
	outboxPool.Put(bp)
	if after.Read != before.Read && kind != storage.ChatChannel {
		s.b.relay(e, p, nil, s.user)
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
	defer s.b.chats.unref(e)
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
	if len(req.Members) > maxAddMembers {
		return nil, fmt.Errorf("%w: at most %d members at creation; add more with AddMembers", ErrBadRequest, maxAddMembers)
	}
	if err := s.spendN(1 + len(req.Members)/membersPerToken); err != nil {
		return nil, err
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
	// The store checks every user's room for one more chat, and the
	// change completes or fails as one, whatever the client does next.
	c, err := s.b.st.CreateChat(ctx, storage.ChatSpec{Kind: kind, Creator: s.user, Members: members, Title: req.Title})
	existed := false
	switch {
	case errors.Is(err, storage.ErrChatExists) && kind == storage.ChatDirect:
		existed = true
	case err != nil:
		return nil, err
	}
	if !existed {
		role := storage.RoleMember
		if kind == storage.ChatChannel {
			role = storage.RoleSubscriber
		}
		s.b.memberJoined(c.ID, s.user, storage.RoleOwner, kind)
		for _, u := range members {
			s.b.memberJoined(c.ID, u, role, kind)
		}
		if kind == storage.ChatDirect {
			s.b.directOpened(c.ID, s.user, members[0])
		} else if len(members) > 0 {
			s.b.membersChanged(c.ID, kind, true, members, s.user)
		}
	}
	return &wire.Frame{Body: &wire.Frame_Chat{Chat: &wire.ChatInfo{
		Chat: uint64(c.ID), Kind: wire.ChatKind(c.Kind), Title: c.Title, Creator: uint64(c.Creator),
		Members: c.Members, LastSeq: c.LastSeq, Existed: existed,
	}}}, nil
}

// addMembers adds users to a group (any member may) or a channel (its
// admins may; anyone may subscribe themselves), in one commit: users
// already in are skipped; if one cannot join (too many chats), none does.
func (s *Session) addMembers(ctx context.Context, req *wire.AddMembers) (*wire.Frame, error) {
	chat := storage.ChatID(req.Chat)
	if chat == 0 {
		return nil, fmt.Errorf("%w: chat 0", ErrBadRequest)
	}
	if len(req.Users) == 0 || len(req.Users) > maxAddMembers {
		return nil, fmt.Errorf("%w: add 1 to %d users at a time", ErrBadRequest, maxAddMembers)
	}
	users := make([]storage.UserID, len(req.Users))
	for i, u := range req.Users {
		if u == 0 {
			return nil, fmt.Errorf("%w: user 0", ErrBadRequest)
		}
		users[i] = storage.UserID(u)
	}
	if err := s.b.addMembers(ctx, s.user, chat, users, s.spendN); err != nil {
		return nil, err
	}
	return done(), nil
}

// addMembers adds users to chat as user by (see Session.addMembers),
// spending from by's send bucket with spend (nil: no limit).
func (b *Broker) addMembers(ctx context.Context, by storage.UserID, chat storage.ChatID, users []storage.UserID, spend func(int) error) error {
	c, err := b.st.Chat(chat)
	if err != nil {
		return err
	}
	me, err := b.st.Member(chat, by)
	member := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotMember) {
		return err
	}
	selfJoin := len(users) == 1 && users[0] == by
	switch {
	case c.Kind == storage.ChatDirect:
		return fmt.Errorf("%w: a direct chat has fixed members", ErrForbidden)
	case c.Kind == storage.ChatChannel && selfJoin:
	case c.Kind == storage.ChatChannel && me.Role < storage.RoleAdmin:
		return fmt.Errorf("%w: only the owner and admins add channel subscribers", ErrForbidden)
	case !member:
		return fmt.Errorf("%w: chat %d", ErrNotMember, chat)
	}
	if spend != nil {
		if err := spend(1 + len(users)/membersPerToken); err != nil {
			return err
		}
	}
	role := storage.RoleMember
	if c.Kind == storage.ChatChannel {
		role = storage.RoleSubscriber
	}
	added, err := b.st.AddMembers(ctx, chat, users, role)
	if err != nil {
		return err
	}
	for _, u := range added {
		b.memberJoined(chat, u, role, c.Kind)
	}
	if len(added) > 0 {
		b.membersChanged(chat, c.Kind, true, added, by)
	}
	return nil
}

// removeMember removes a user: oneself (leave), or anyone below the owner
// by an admin or the owner. The removal completes or fails as one,
// whatever the client does next, and the index follows what committed.
func (s *Session) removeMember(ctx context.Context, chat storage.ChatID, user storage.UserID) (*wire.Frame, error) {
	if err := s.b.removeMember(ctx, s.user, chat, user); err != nil {
		return nil, err
	}
	return done(), nil
}

// removeMember removes user from chat as user by (see
// Session.removeMember).
func (b *Broker) removeMember(ctx context.Context, by storage.UserID, chat storage.ChatID, user storage.UserID) error {
	if chat == 0 || user == 0 {
		return fmt.Errorf("%w: zero chat or user", ErrBadRequest)
	}
	c, err := b.st.Chat(chat)
	if err != nil {
		return err
	}
	if c.Kind == storage.ChatDirect {
		return fmt.Errorf("%w: a direct chat has fixed members", ErrForbidden)
	}
	if user != by {
		me, err := b.st.Member(chat, by)
		if err != nil {
			return err
		}
		them, err := b.st.Member(chat, user)
		if errors.Is(err, storage.ErrNotMember) {
			b.memberLeft(chat, user)
		}
		if err != nil {
			return err
		}
		if me.Role < storage.RoleAdmin || them.Role >= me.Role {
			return fmt.Errorf("%w: removing a %v takes a higher role than %v", ErrForbidden, them.Role, me.Role)
		}
	}
	// A bot's unfetched records of the chat stay its updates: where it
	// stands is read before it leaves.
	var botFrom uint64
	isBot := b.opts.Bots != nil && b.opts.Bots.IsBot(user)
	if isBot {
		if m, err := b.st.Member(chat, user); err == nil {
			botFrom = m.Delivered
		}
	}
	err = b.st.RemoveMember(ctx, chat, user)
	if err == nil || errors.Is(err, storage.ErrNotMember) {
		b.memberLeft(chat, user)
		b.callMemberLeft(chat, user)
	}
	if err != nil {
		return err
	}
	if isBot {
		to := c.LastSeq
		if c2, err := b.st.Chat(chat); err == nil {
			to = c2.LastSeq
		}
		b.opts.Bots.BotRemoved(work, chat, user, by, botFrom, to)
	}
	b.membersChanged(chat, c.Kind, false, []storage.UserID{user}, by)
	return nil
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
	if err := s.b.checkDevice(s.user, s.device); err != nil {
		return nil, err
	}
	s.expires.Store(c.Expires.UnixMicro())
	return done(), nil
}
