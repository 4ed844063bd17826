// Package bots is the node's bot platform: bots are users of kind bot
// (identity.Accounts) driven over the MAX-compatible Bot API
// (bots/botapi), whose Backend Node implements over the broker and the
// store. The store is each bot's update queue: its updates are the records
// of the chats it is in, read after its delivered markers, and the events
// that concern it alone (pressed buttons, membership changes) are records
// in its service chat. See docs/bots.md.
package bots

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gonets/gonets/bots/botapi"
	"github.com/gonets/gonets/bots/miniapp"
	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/storage"
)

// Accounts are the bot accounts (identity.Accounts).
type Accounts interface {
	Authenticate(token string) (storage.UserID, error)
	IsBot(user storage.UserID) bool
	BotInfo(user storage.UserID) (identity.Bot, error)
	SetBotCommands(user storage.UserID, cmds []identity.BotCommand) error
	BotAppKey(user storage.UserID) ([]byte, error)
	BotUsers(max int) ([]storage.UserID, bool)
}

// Files are the node's stored files as bots see them (media/mediahttp).
type Files interface {
	// NewBotUpload starts an upload for bot: the URL its SDK posts to and
	// the token its message names.
	NewBotUpload(bot uint64, typ string) (url, token string, err error)
	// Resolve returns the file an upload token names, ready false while
	// the upload is not complete; an error for a token not bot's.
	Resolve(bot uint64, token string) (att *wire.Attachment, ready bool, err error)
	// SignedURL is a download URL of a file of message chat/seq, good for
	// ttl without other credentials.
	SignedURL(chat, seq uint64, sha string, ttl time.Duration) string
}

// Webhooks are the bots' webhook subscriptions (bots/webhook).
type Webhooks interface {
	List(bot int64) []botapi.Subscription
	Add(bot int64, url, secret string, types []string) error
	Remove(bot int64, url string) error
	// Notify tells the deliverer that bot's subscriptions changed.
	Notify(bot int64)
	// Active reports whether bot has subscriptions: its updates go to
	// them, and long polling is refused.
	Active(bot int64) bool
}

// Options configure a Node.
type Options struct {
	Accounts Accounts
	// Files serves uploads and download URLs. Nil: uploads are refused
	// and attachments carry no URL.
	Files Files
	// Webhooks keeps subscriptions. Nil: subscribing is refused.
	Webhooks Webhooks
	// Key signs callback ids (at least 32 bytes, kept across restarts so
	// that a redelivered callback can still be answered).
	Key []byte
	// PollInterval is how often a waiting long poll looks for new
	// updates. Default: 100 ms.
	PollInterval time.Duration
	// URLTTL is how long a download URL in an update stays good.
	// Default: 24 h.
	URLTTL time.Duration
	Log    *slog.Logger
	Now    func() time.Time
}

// Node is the bot platform of a node: the Bot API's Backend and the
// broker's Bots.
type Node struct {
	o  Options
	b  *broker.Broker
	st *storage.Store

	mu     sync.Mutex
	queues map[storage.UserID]*queue
	// markerBase makes markers rise across restarts: the node's start in
	// milliseconds (mod 2^40, 34 years), times 1,000, leaves 1,000
	// markers a millisecond of uptime, and stays below 2^53.
	markerBase int64
}

var (
	_ botapi.Backend = (*Node)(nil)
	_ broker.Bots    = (*Node)(nil)
)

// New returns a Node; Start joins it to its broker.
func New(o Options) (*Node, error) {
	if o.Accounts == nil {
		return nil, errors.New("bots: Options.Accounts is required")
	}
	if len(o.Key) < 32 {
		return nil, errors.New("bots: Options.Key needs at least 32 bytes")
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.URLTTL <= 0 {
		o.URLTTL = 24 * time.Hour
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Node{o: o, queues: map[storage.UserID]*queue{}, markerBase: o.Now().UnixMilli() % (1 << 40) * 1000}, nil
}

// Start joins n to b. Bot API requests before it answer 503.
func (n *Node) Start(b *broker.Broker) {
	n.mu.Lock()
	n.b, n.st = b, b.Store()
	n.mu.Unlock()
}

func (n *Node) broker() (*broker.Broker, *storage.Store, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.b == nil {
		return nil, nil, botapi.ErrUnavailable
	}
	return n.b, n.st, nil
}

// IsBot implements broker.Bots.
func (n *Node) IsBot(user storage.UserID) bool { return n.o.Accounts.IsBot(user) }

// Authenticate implements botapi.Backend.
func (n *Node) Authenticate(token string) (int64, error) {
	u, err := n.o.Accounts.Authenticate(token)
	if err != nil {
		return 0, botapi.ErrUnknownToken
	}
	return int64(u), nil
}

// MembersChanged implements broker.Bots: each bot among users, or in
// the chat, gets the change in its service chat.
func (n *Node) MembersChanged(ctx context.Context, chat storage.ChatID, kind storage.ChatKind, added bool, users []storage.UserID, by storage.UserID) {
	b, st, err := n.broker()
	if err != nil {
		return
	}
	ev := &wire.MembersChanged{Chat: uint64(chat), By: uint64(by)}
	for _, u := range users {
		ev.Users = append(ev.Users, uint64(u))
	}
	for _, bot := range n.botsOf(st, chat, users) {
		var s *wire.Service
		switch {
		case added:
			s = &wire.Service{Event: &wire.Service_MembersAdded{MembersAdded: ev}}
		case containsUser(users, bot):
			continue // BotRemoved tells it
		default:
			s = &wire.Service{Event: &wire.Service_MemberRemoved{MemberRemoved: ev}}
		}
		if err := postRetried(ctx, b, bot, eventID("members", uint64(chat), uint64(by), added, ev.Users), s); err != nil {
			n.o.Log.Warn("bots: a membership change not queued for a bot", "bot", bot, "chat", chat, "err", err)
		}
	}
}

// BotRemoved implements broker.Bots: the bot's service chat gets
// bot_removed, with the chat's records it had not fetched.
func (n *Node) BotRemoved(ctx context.Context, chat storage.ChatID, bot, by storage.UserID, from, to uint64) {
	b, _, err := n.broker()
	if err != nil {
		return
	}
	ev := &wire.MembersChanged{Chat: uint64(chat), Users: []uint64{uint64(bot)}, By: uint64(by), FromSeq: from, ToSeq: to}
	s := &wire.Service{Event: &wire.Service_BotRemoved{BotRemoved: ev}}
	if err := postRetried(ctx, b, bot, eventID("removed", uint64(chat), uint64(by), false, []uint64{from, to}), s); err != nil {
		n.o.Log.Warn("bots: bot_removed not queued", "bot", bot, "chat", chat, "err", err)
	}
}

// postRetried posts a bot's event in its service chat, trying three
// times with the same id (stored once), so that a passing failure of the
// store does not lose it; a change already committed cannot be undone.
func postRetried(ctx context.Context, b *broker.Broker, bot storage.UserID, id uint64, s *wire.Service) error {
	var err error
	for i := range 3 {
		if err = b.PostService(ctx, storage.ServiceUser, bot, id, s); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(100<<i) * time.Millisecond):
		}
	}
	return err
}

// botsOf returns the bots among users and the chat's members. A chat's
// members are listed only up to botScanMembers; bots of bigger chats
// learn of others' changes when they are among users.
func (n *Node) botsOf(st *storage.Store, chat storage.ChatID, users []storage.UserID) []storage.UserID {
	var bots []storage.UserID
	seen := map[storage.UserID]bool{}
	add := func(u storage.UserID) {
		if !seen[u] && n.o.Accounts.IsBot(u) {
			seen[u] = true
			bots = append(bots, u)
		}
	}
	for _, u := range users {
		add(u)
	}
	// With few bots on the node, each is looked up in the chat: one read
	// each, whatever the chat's size. With many, the chat's first members
	// are read.
	if all, ok := n.o.Accounts.BotUsers(botLookups); ok {
		for _, b := range all {
			if !seen[b] {
				if _, err := st.Member(chat, b); err == nil {
					seen[b] = true
					bots = append(bots, b)
				}
			}
		}
		return bots
	}
	ms, err := st.Members(chat, 0, botScanMembers)
	if err == nil {
		for _, m := range ms {
			add(m.User)
		}
	}
	return bots
}

// botLookups is how many bots a node may have for a membership change to
// look each up in the chat.
const botLookups = 64

// botScanMembers bounds the members read to find a chat's bots.
const botScanMembers = 1000

func containsUser(users []storage.UserID, u storage.UserID) bool {
	for _, x := range users {
		if x == u {
			return true
		}
	}
	return false
}

// eventID derives a client message id for a service event, once per
// event (the clock keeps two real changes apart: add, remove, add), so
// that the retries of one event are stored once.
func eventID(kind string, a, b uint64, flag bool, users []uint64) uint64 {
	h := fnv.New64a()
	h.Write([]byte(kind))
	var buf [8]byte
	for _, v := range append([]uint64{a, b}, users...) {
		binary.BigEndian.PutUint64(buf[:], v)
		h.Write(buf[:])
	}
	if flag {
		h.Write([]byte{1})
	}
	// A nanosecond clock keeps two real changes apart (add, remove, add).
	binary.BigEndian.PutUint64(buf[:], uint64(time.Now().UnixNano()))
	h.Write(buf[:])
	return h.Sum64() | 1
}

// DirectOpened implements broker.Bots: a person opening a direct chat
// with a bot starts it (bot_started), recorded in the chat.
func (n *Node) DirectOpened(ctx context.Context, chat storage.ChatID, user, peer storage.UserID) {
	if !n.o.Accounts.IsBot(peer) || n.o.Accounts.IsBot(user) {
		return
	}
	b, _, err := n.broker()
	if err != nil {
		return
	}
	if err := n.postStarted(ctx, b, chat, user, ""); err != nil {
		n.o.Log.Warn("bots: bot_started not recorded", "bot", peer, "chat", chat, "err", err)
	}
}

func (n *Node) postStarted(ctx context.Context, b *broker.Broker, chat storage.ChatID, user storage.UserID, payload string) error {
	body, err := marshalService(&wire.Service{Event: &wire.Service_BotStarted{BotStarted: &wire.BotStarted{User: uint64(user), Payload: payload}}})
	if err != nil {
		return err
	}
	_, err = b.PostAs(ctx, user, storage.DeviceNode, storage.Message{Chat: chat, ClientMsgID: eventID("started", uint64(chat), uint64(user), false, nil), Kind: storage.MsgService, Body: body})
	return err
}

// Callback implements broker.Bots: the press goes to the bot's service
// chat, with an id the bot answers with.
func (n *Node) Callback(ctx context.Context, bot storage.UserID, chat storage.ChatID, seq uint64, user storage.UserID, payload string) error {
	b, _, err := n.broker()
	if err != nil {
		return err
	}
	now := n.o.Now()
	id, err := n.callbackID(bot, chat, seq, user)
	if err != nil {
		return err
	}
	ev := &wire.CallbackPressed{Id: id, Chat: uint64(chat), Seq: seq, User: uint64(user), Payload: payload, AtMs: now.UnixMilli()}
	return b.PostService(ctx, storage.ServiceUser, bot, eventID("callback", uint64(chat), seq, false, []uint64{uint64(user), uint64(now.UnixNano())}), &wire.Service{Event: &wire.Service_Callback{Callback: ev}})
}

// callbackID is "<chat>.<seq>.<user>.<nonce>.<mac>", the mac over the
// rest and the bot with Options.Key, so that a bot answers only its own
// presses and can name no other user.
func (n *Node) callbackID(bot storage.UserID, chat storage.ChatID, seq uint64, user storage.UserID) (string, error) {
	var nonce [6]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", err
	}
	body := fmt.Sprintf("%d.%d.%d.%d.%s", chat, seq, user, n.o.Now().Unix(), base64.RawURLEncoding.EncodeToString(nonce[:]))
	return body + "." + n.mac(bot, body), nil
}

// CallbackTTL is how long a bot may answer a pressed button.
const CallbackTTL = time.Hour

func (n *Node) mac(bot storage.UserID, body string) string {
	m := hmac.New(sha256.New, n.o.Key)
	fmt.Fprintf(m, "callback %d %s", bot, body)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// parseCallbackID checks an id of bot's and returns what it names.
func (n *Node) parseCallbackID(bot storage.UserID, id string) (chat storage.ChatID, seq uint64, user storage.UserID, ok bool) {
	i := strings.LastIndexByte(id, '.')
	if i < 0 || len(id) > 200 {
		return 0, 0, 0, false
	}
	body, mac := id[:i], id[i+1:]
	if !hmac.Equal([]byte(mac), []byte(n.mac(bot, body))) {
		return 0, 0, 0, false
	}
	parts := strings.Split(body, ".")
	if len(parts) != 5 {
		return 0, 0, 0, false
	}
	c, err1 := strconv.ParseUint(parts[0], 10, 64)
	s, err2 := strconv.ParseUint(parts[1], 10, 64)
	u, err3 := strconv.ParseUint(parts[2], 10, 64)
	at, err4 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || n.o.Now().Sub(time.Unix(at, 0)) > CallbackTTL {
		return 0, 0, 0, false
	}
	return storage.ChatID(c), s, storage.UserID(u), true
}

// MiniApp implements broker.Bots: launch data signed with the bot's key.
func (n *Node) MiniApp(ctx context.Context, bot, user storage.UserID, chat storage.ChatID, start string) (string, string, error) {
	info, err := n.o.Accounts.BotInfo(bot)
	if err != nil || info.AppURL == "" {
		return "", "", fmt.Errorf("%w: bot %d declares no mini-app", broker.ErrNoMiniApp, bot)
	}
	key, err := n.o.Accounts.BotAppKey(bot)
	if err != nil {
		return "", "", fmt.Errorf("%w: bot %d: %v", broker.ErrNoMiniApp, bot, err)
	}
	var q [12]byte
	if _, err := rand.Read(q[:]); err != nil {
		return "", "", err
	}
	d := miniapp.LaunchData{
		QueryID:    base64.RawURLEncoding.EncodeToString(q[:]),
		User:       miniapp.User{ID: int64(user), FirstName: userName(user)},
		AuthDate:   n.o.Now(),
		StartParam: start,
	}
	if chat != 0 {
		if _, st, err := n.broker(); err == nil {
			if c, err := st.Chat(chat); err == nil {
				d.Chat = &miniapp.Chat{ID: int64(chat), Type: chatType(c.Kind), Title: c.Title}
			}
		}
	}
	data, err := miniapp.SignWithKey(key, d)
	if err != nil {
		return "", "", err
	}
	return info.AppURL, data, nil
}

// userName is a person's display name: the node keeps no profiles yet.
func userName(u storage.UserID) string { return "User " + strconv.FormatUint(uint64(u), 10) }
