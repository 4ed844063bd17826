package bots

import (
	"context"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/bots/botapi"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// A bot's updates are read from the store: the records of its chats
// after its delivered marker in each, skipping its own. A batch handed
// out is remembered by its marker with the positions it reached; the
// bot's next request with that marker acknowledges it, and the node
// then moves the bot's delivered markers (SetMarkers) to those
// positions. A request without a marker, or with one the node does not
// know (it restarted), starts again from the markers: at least once.

// queue is one bot's update state.
type queue struct {
	turn chan struct{} // a token held by one poll at a time: a bot's polls are serial
	// since is a sync point of the bot's dialogs: every chat unchanged
	// since then had nothing for the bot.
	since uint64
	// out are the batches handed out and not acknowledged, oldest first.
	out []batch
	// cur continues a pass over the dialogs changed since since;
	// passPending says that pass found records not yet acknowledged.
	cur         storage.DialogCursor
	passPending bool
}

type batch struct {
	marker int64
	pos    map[storage.ChatID]uint64
}

// maxOut bounds a bot's unacknowledged batches.
const maxOut = 16

func (n *Node) queue(bot storage.UserID) *queue {
	n.mu.Lock()
	defer n.mu.Unlock()
	q := n.queues[bot]
	if q == nil {
		q = &queue{turn: make(chan struct{}, 1)}
		n.queues[bot] = q
	}
	return q
}

// nextMarker returns a fresh marker: above every earlier one, across
// restarts too, and never 0.
func (n *Node) nextMarker() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.markerBase++
	return n.markerBase
}

// errWebhookActive refuses long polling to a bot with webhooks, as MAX
// does: the webhooks take its updates.
var errWebhookActive = &botapi.APIError{Status: 409, Code: "webhook.active", Message: "the bot has webhook subscriptions: its updates go there (DELETE /subscriptions to poll)"}

// Updates implements botapi.Backend: long polling, refused while the bot
// has webhooks.
func (n *Node) Updates(ctx context.Context, bot int64, marker int64, limit int, types []string, timeout time.Duration) (botapi.UpdateList, error) {
	if n.o.Webhooks != nil && n.o.Webhooks.Active(bot) {
		return botapi.UpdateList{}, errWebhookActive
	}
	return n.updates(ctx, bot, marker, limit, types, timeout)
}

// Source returns the bots' update queues for webhook delivery.
func (n *Node) Source() Source { return source{n} }

// Source gives a bot's updates as Updates does, webhooks or not.
type Source interface {
	Updates(ctx context.Context, bot int64, marker int64, limit int, types []string, timeout time.Duration) (botapi.UpdateList, error)
}

type source struct{ n *Node }

func (s source) Updates(ctx context.Context, bot int64, marker int64, limit int, types []string, timeout time.Duration) (botapi.UpdateList, error) {
	return s.n.updates(ctx, bot, marker, limit, types, timeout)
}

func (n *Node) updates(ctx context.Context, bot int64, marker int64, limit int, types []string, timeout time.Duration) (botapi.UpdateList, error) {
	_, st, err := n.broker()
	if err != nil {
		return botapi.UpdateList{}, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	q := n.queue(storage.UserID(bot))
	// A poll waits for the one before it: the SDK polls serially, and a
	// second poller of the same bot takes turns.
	select {
	case <-ctx.Done():
		return botapi.UpdateList{}, ctx.Err()
	case q.turn <- struct{}{}:
	}
	defer func() { <-q.turn }()
	if err := n.ack(ctx, st, storage.UserID(bot), q, marker); err != nil {
		return botapi.UpdateList{}, apiError(err)
	}
	deadline := time.Now().Add(timeout)
	var tick *time.Ticker
	// idle is the store's version when a look found nothing: until the
	// store commits again nothing can be new for the bot (its callbacks
	// and service events are records too), and the next tick need not
	// look. Version is read before the look: the look's view is at least
	// that recent (the store publishes a view before its version; a
	// reopen after a failure stores the version first, but readers get
	// the failure, not a view, until its view is published).
	var idle uint64
	for {
		ver := st.Version()
		if tick != nil && ver == idle {
			if !time.Now().Before(deadline) {
				return botapi.UpdateList{Updates: []botapi.Update{}, Marker: n.lastMarker(q)}, nil
			}
			select {
			case <-ctx.Done():
				return botapi.UpdateList{}, ctx.Err()
			case <-tick.C:
			}
			continue
		}
		ups, pos, err := n.collect(st, storage.UserID(bot), q, limit, types)
		if err != nil {
			return botapi.UpdateList{}, apiError(err)
		}
		if len(ups) > 0 || len(pos) > 0 {
			// pos without updates: records of other types were passed
			// over; hand them out as an empty batch so that the bot's
			// acknowledgement moves past them.
			m := n.nextMarker()
			q.out = append(q.out, batch{marker: m, pos: pos})
			if len(q.out) > maxOut {
				q.out = q.out[len(q.out)-maxOut:]
			}
			if ups == nil {
				ups = []botapi.Update{}
			}
			if len(ups) > 0 || !time.Now().Before(deadline) {
				return botapi.UpdateList{Updates: ups, Marker: m}, nil
			}
			// Passed-over records only: acknowledge them at once and wait on.
			if err := n.ack(ctx, st, storage.UserID(bot), q, m); err != nil {
				return botapi.UpdateList{}, apiError(err)
			}
			continue
		}
		if q.cur != (storage.DialogCursor{}) {
			continue // a pass over many dialogs goes on at once
		}
		if !time.Now().Before(deadline) {
			return botapi.UpdateList{Updates: []botapi.Update{}, Marker: n.lastMarker(q)}, nil
		}
		idle = ver
		if tick == nil {
			tick = time.NewTicker(n.o.PollInterval)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return botapi.UpdateList{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// lastMarker is the marker to answer an empty poll with: the newest
// outstanding one, else a fresh one (never 0).
func (n *Node) lastMarker(q *queue) int64 {
	if len(q.out) > 0 {
		return q.out[len(q.out)-1].marker
	}
	return n.nextMarker()
}

// ack acknowledges the batches up to marker; 0 or an unknown marker
// forgets them all, so that they are read again from the store.
func (n *Node) ack(ctx context.Context, st *storage.Store, bot storage.UserID, q *queue, marker int64) error {
	i := slices.IndexFunc(q.out, func(b batch) bool { return b.marker == marker })
	if marker == 0 || i < 0 {
		q.out = q.out[:0]
		return nil
	}
	pos := map[storage.ChatID]uint64{}
	for _, b := range q.out[:i+1] {
		for c, s := range b.pos {
			pos[c] = max(pos[c], s)
		}
	}
	for c, s := range pos {
		if _, err := st.SetMarkers(ctx, c, bot, s, 0); err != nil && !isGone(err) {
			return err
		}
	}
	q.out = slices.Delete(q.out, 0, i+1)
	return nil
}

func isGone(err error) bool {
	return err != nil && (errorIs(err, storage.ErrNotMember) || errorIs(err, storage.ErrUnknownChat))
}

// collect reads up to limit updates past the bot's markers and the
// batches out, and the positions they reach.
func (n *Node) collect(st *storage.Store, bot storage.UserID, q *queue, limit int, types []string) ([]botapi.Update, map[storage.ChatID]uint64, error) {
	outPos := map[storage.ChatID]uint64{}
	for _, b := range q.out {
		for c, s := range b.pos {
			outPos[c] = max(outPos[c], s)
		}
	}
	var ups []botapi.Update
	pos := map[storage.ChatID]uint64{}
	// A pass over the bot's changed dialogs may take several calls: it
	// goes on from q.cur, so that a bot in very many chats reaches every
	// one of them, and since moves on only after a whole pass found
	// nothing pending.
	for pages := 0; pages < maxPagesPerCall; pages++ {
		page, err := st.Dialogs(bot, q.since, q.cur, 200)
		if err != nil {
			return nil, nil, err
		}
		for _, d := range page.Dialogs {
			from := max(d.Delivered, outPos[d.Chat])
			if d.LastSeq <= from {
				if d.LastSeq > d.Delivered {
					q.passPending = true // handed out, not acknowledged
				}
				continue
			}
			q.passPending = true
			if len(ups) >= limit {
				continue
			}
			if err := n.read(st, bot, d, from, limit, types, &ups, pos); err != nil {
				return nil, nil, err
			}
		}
		if page.More {
			q.cur = page.Next
			continue
		}
		if !q.passPending && len(q.out) == 0 && page.Version > 0 {
			q.since = page.Version
		}
		q.cur, q.passPending = storage.DialogCursor{}, false
		break
	}
	return ups, pos, nil
}

// maxPagesPerCall bounds the dialog pages (of 200) one look at a bot's
// queue reads; a longer pass goes on at the next.
const maxPagesPerCall = 20

// read appends the updates of dialog d's records after seq from.
func (n *Node) read(st *storage.Store, bot storage.UserID, d storage.Dialog, from uint64, limit int, types []string, ups *[]botapi.Update, pos map[storage.ChatID]uint64) error {
	_, err := st.ReadRange(d.Chat, from+1, limit, func(r *storage.Record) error {
		if len(*ups) >= limit {
			return errStop
		}
		pos[d.Chat] = r.Seq
		for _, u := range n.recordUpdates(st, bot, d.Kind, r) {
			if len(types) == 0 || slices.Contains(types, u.UpdateType) {
				*ups = append(*ups, u)
			}
		}
		return nil
	})
	if err == errStop {
		err = nil
	}
	return err
}

type stopError struct{}

func (stopError) Error() string { return "stop" }

var errStop error = stopError{}

// maxTail bounds the records of a chat a bot left that come before its
// bot_removed; older ones are dropped (and logged).
const maxTail = 1000

// recordUpdates renders record r as bot's updates: none, one, or for a
// bot_removed the records of the chat it had not fetched, then it.
func (n *Node) recordUpdates(st *storage.Store, bot storage.UserID, kind storage.ChatKind, r *storage.Record) []botapi.Update {
	if r.Sender == bot && r.Kind != storage.MsgService {
		return nil
	}
	u, ok := n.update(st, bot, kind, r)
	if !ok {
		return nil
	}
	if u.UpdateType != "bot_removed" {
		return []botapi.Update{u}
	}
	var s wire.Service
	if proto.Unmarshal(r.Body, &s) != nil || s.GetBotRemoved() == nil {
		return []botapi.Update{u}
	}
	e := s.GetBotRemoved()
	var out []botapi.Update
	chat := storage.ChatID(e.Chat)
	c, err := st.Chat(chat)
	if err == nil && e.ToSeq > e.FromSeq {
		from := e.FromSeq
		if e.ToSeq-from > maxTail {
			n.o.Log.Warn("bots: a removed bot's unfetched records dropped", "bot", bot, "chat", chat, "dropped", e.ToSeq-from-maxTail)
			from = e.ToSeq - maxTail
		}
		_, err = st.ReadRange(chat, from+1, int(e.ToSeq-from), func(t *storage.Record) error {
			if t.Seq <= e.ToSeq && (t.Sender != bot || t.Kind == storage.MsgService) {
				if tu, ok := n.update(st, bot, c.Kind, t); ok && tu.UpdateType != "bot_removed" {
					out = append(out, tu)
				}
			}
			return nil
		})
		if err != nil {
			n.o.Log.Warn("bots: a removed bot's unfetched records not read", "bot", bot, "chat", chat, "err", err)
		}
	}
	return append(out, u)
}

// update renders record r as an update for bot, ok false for a record
// that is none.
func (n *Node) update(st *storage.Store, bot storage.UserID, kind storage.ChatKind, r *storage.Record) (botapi.Update, bool) {
	u := botapi.Update{Timestamp: ms(r.Time)}
	switch r.Kind {
	case storage.MsgText, storage.MsgMedia:
		if r.Deleted {
			return u, false // its delete follows
		}
		m := n.message(r, kind, bot)
		u.UpdateType, u.Message = "message_created", &m
		return u, true
	case storage.MsgEdit:
		t, err := st.Get(r.Chat, r.Target)
		if err != nil {
			return u, false
		}
		// The edit as it was: this record's body over the target.
		t.Body, t.Edited, t.Deleted = r.Body, r.Time, false
		m := n.message(&t, kind, bot)
		u.UpdateType, u.Message = "message_edited", &m
		return u, true
	case storage.MsgDelete:
		u.UpdateType, u.MessageID, u.ChatID, u.UserID = "message_removed", mid(r.Chat, r.Target), int64(r.Chat), int64(r.Sender)
		return u, true
	case storage.MsgService:
		return n.serviceUpdate(st, bot, r, u)
	}
	return u, false
}

// serviceUpdate renders a service record: in the bot's service chat, the
// events that concern it alone; in a direct chat, bot_started.
func (n *Node) serviceUpdate(st *storage.Store, bot storage.UserID, r *storage.Record, u botapi.Update) (botapi.Update, bool) {
	var s wire.Service
	if proto.Unmarshal(r.Body, &s) != nil {
		return u, false
	}
	service := storage.IsServiceUser(r.Sender)
	switch ev := s.Event.(type) {
	case *wire.Service_BotStarted:
		if service || r.Sender == bot {
			return u, false
		}
		u.UpdateType, u.ChatID, u.User = "bot_started", int64(r.Chat), n.user(storage.UserID(ev.BotStarted.User))
		if ev.BotStarted.Payload != "" {
			p := ev.BotStarted.Payload
			u.Payload = &p
		}
		return u, true
	case *wire.Service_MembersAdded:
		if !service || len(ev.MembersAdded.Users) == 0 {
			return u, false
		}
		return n.memberUpdate(st, bot, ev.MembersAdded, true, u)
	case *wire.Service_MemberRemoved:
		if !service || len(ev.MemberRemoved.Users) == 0 {
			return u, false
		}
		return n.memberUpdate(st, bot, ev.MemberRemoved, false, u)
	case *wire.Service_BotRemoved:
		if !service {
			return u, false
		}
		e := ev.BotRemoved
		u.UpdateType, u.ChatID, u.User = "bot_removed", int64(e.Chat), n.user(storage.UserID(e.By))
		u.IsChannel = n.isChannel(st, storage.ChatID(e.Chat))
		return u, true
	case *wire.Service_TitleChanged:
		u.UpdateType, u.ChatID, u.User, u.Title = "chat_title_changed", int64(r.Chat), n.user(storage.UserID(ev.TitleChanged.By)), ev.TitleChanged.Title
		return u, true
	case *wire.Service_Callback:
		if !service {
			return u, false
		}
		e := ev.Callback
		u.UpdateType = "message_callback"
		u.Timestamp = e.AtMs
		u.Callback = &botapi.Callback{Timestamp: e.AtMs, CallbackID: e.Id, Payload: e.Payload, User: *n.user(storage.UserID(e.User))}
		if t, err := st.Get(storage.ChatID(e.Chat), e.Seq); err == nil && !t.Deleted {
			if c, err := st.Chat(t.Chat); err == nil {
				m := n.message(&t, c.Kind, bot)
				u.Message = &m
			}
		}
		return u, true
	}
	return u, false
}

// memberUpdate renders a membership change: bot_added when the bot
// itself joined, else user_added or user_removed (for the first user:
// a change of several users is one record, told as the first's).
func (n *Node) memberUpdate(st *storage.Store, bot storage.UserID, e *wire.MembersChanged, added bool, u botapi.Update) (botapi.Update, bool) {
	u.ChatID = int64(e.Chat)
	u.IsChannel = n.isChannel(st, storage.ChatID(e.Chat))
	by := int64(e.By)
	if added && slices.Contains(e.Users, uint64(bot)) {
		u.UpdateType, u.User = "bot_added", n.user(storage.UserID(e.By))
		return u, true
	}
	who := storage.UserID(e.Users[0])
	u.User = n.user(who)
	if added {
		u.UpdateType = "user_added"
		if by != 0 && by != int64(who) {
			u.InviterID = &by
		}
	} else {
		u.UpdateType = "user_removed"
		if by != 0 && by != int64(who) {
			u.AdminID = &by
		}
	}
	return u, true
}

func (n *Node) isChannel(st *storage.Store, chat storage.ChatID) *bool {
	c, err := st.Chat(chat)
	v := err == nil && c.Kind == storage.ChatChannel
	return &v
}
