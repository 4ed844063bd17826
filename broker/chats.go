package broker

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gonets/gonets/storage"
)

// maxPending caps the out-of-order publishes a chat holds while it waits
// for a missing seq; past it the chat publishes what it holds, in order.
const maxPending = 256

// chatIndex holds an entry per chat that has a member online on this node
// or an append in flight: the chat's online members (the index fan-out
// walks, so that a post costs O(online members), whatever the chat's
// size) and its publish order. It holds no member lists: its size follows
// the online (user, chat) pairs, each user's bounded by
// storage.Options.MaxChatsPerUser, and an entry goes when its last
// online member and its last append do.
type chatIndex struct {
	st *storage.Store

	mu    sync.Mutex // guards the following, and every entry's refs
	chats map[storage.ChatID]*chatEntry

	pairs atomic.Int64 // online (user, chat) pairs, for the metrics
}

// chatEntry is one chat in the index. Its mutex also serialises the
// chat's fan-out, so that every session receives the chat's messages in
// seq order. Lock order: chatIndex.mu, then chatEntry.mu, then a registry
// shard, then an Outbox.
type chatEntry struct {
	id storage.ChatID
	// refs counts the online members joined and the appends pinned
	// between their access check and their publish; guarded by
	// chatIndex.mu. The entry leaves the index at zero.
	refs int

	mu    sync.Mutex // guards the following
	kind  storage.ChatKind
	users []storage.UserID // online members, unordered
	roles []storage.Role   // their roles, by index in users
	pos   map[storage.UserID]int32
	// next is the next seq to publish; 0 until an access check reads the
	// chat's last seq, before the first append through this entry.
	next    uint64
	pending []pendingPublish // sorted by seq
	// appends counts the appends pinned, from before their access check
	// until their publish or failure: while none is, no seq missing
	// before a pending publish can come.
	appends int
}

// pendingPublish is a message acked out of order, waiting for the seqs
// before it.
type pendingPublish struct {
	seq    uint64
	p      *Payload
	except *Session
}

func newChatIndex(st *storage.Store) *chatIndex {
	return &chatIndex{st: st, chats: make(map[storage.ChatID]*chatEntry)}
}

// ref returns the chat's entry, creating it, with one more reference.
func (c *chatIndex) ref(id storage.ChatID) *chatEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.chats[id]
	if e == nil {
		e = &chatEntry{id: id}
		c.chats[id] = e
	}
	e.refs++
	return e
}

// unref drops a reference; the last one removes the entry, releasing
// publishes still waiting for a seq that no append in flight can bring
// (clients find those messages by syncing).
func (c *chatIndex) unref(e *chatEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.refs--; e.refs > 0 {
		return
	}
	delete(c.chats, e.id)
	e.mu.Lock()
	for _, pp := range e.pending {
		if pp.p != nil {
			pp.p.Release()
		}
	}
	e.pending = nil
	e.mu.Unlock()
}

// pin returns the chat's entry held for an append, from before its access
// check until its publish (or failure): the entry waiting for the seq the
// append commits is then the one it is published to. The caller unpins
// with Broker.unpin.
func (c *chatIndex) pin(id storage.ChatID) *chatEntry {
	e := c.ref(id)
	e.mu.Lock()
	e.appends++
	e.mu.Unlock()
	return e
}

// unpin ends an append pinned to e, published or not. The last append in
// flight lets what waits for a missing seq go: no append can bring that
// seq any more (a batch that failed took it, or the chat's order began at
// a view that lacked it), and clients find its record by syncing.
func (b *Broker) unpin(e *chatEntry) {
	e.mu.Lock()
	e.appends--
	b.drainLocked(e)
	e.mu.Unlock()
	b.chats.unref(e)
}

// join adds user, online, to the chat's members with role, and returns
// the entry, held until leave.
func (c *chatIndex) join(id storage.ChatID, user storage.UserID, role storage.Role, kind storage.ChatKind) *chatEntry {
	e := c.ref(id)
	e.mu.Lock()
	if e.kind == 0 {
		e.kind = kind
	}
	if i, ok := e.pos[user]; ok {
		e.roles[i] = role
		e.mu.Unlock()
		c.unref(e) // joined already: keep one reference
		return e
	}
	if e.pos == nil {
		e.pos = make(map[storage.UserID]int32)
	}
	e.pos[user] = int32(len(e.users))
	e.users = append(e.users, user)
	e.roles = append(e.roles, role)
	e.mu.Unlock()
	c.pairs.Add(1)
	return e
}

// leave removes user from the chat's online members and drops the
// reference join took.
func (c *chatIndex) leave(e *chatEntry, user storage.UserID) {
	e.mu.Lock()
	i, ok := e.pos[user]
	if ok {
		last := len(e.users) - 1
		moved := e.users[last]
		e.users[i], e.roles[i] = moved, e.roles[last]
		e.pos[moved] = i
		e.users, e.roles = e.users[:last], e.roles[:last]
		delete(e.pos, user)
		if len(e.users) == 0 {
			e.users, e.roles, e.pos = nil, nil, nil
		}
	}
	e.mu.Unlock()
	if ok {
		c.pairs.Add(-1)
		c.unref(e)
	}
}

// len returns the chats in the index.
func (c *chatIndex) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.chats)
}

// role returns user's role if user is an online member.
func (e *chatEntry) roleLocked(user storage.UserID) (storage.Role, bool) {
	i, ok := e.pos[user]
	if !ok {
		return 0, false
	}
	return e.roles[i], true
}

// restartOrder forgets the chat's next seq, after an append failed in a
// way that may leave a seq unpublished: the next publish starts the order
// again, and the publishes waiting for the lost seq go out with it.
func (e *chatEntry) restartOrder() {
	e.mu.Lock()
	e.next = 0
	e.mu.Unlock()
}

// outboxPool recycles the recipient lists that fan-out collects.
var outboxPool = sync.Pool{New: func() any { s := make([]*Outbox, 0, 256); return &s }}

// publish pushes p, the encoded record seq, to every online session of
// every member but except, in seq order: a record acked before its
// predecessors waits for them (at most maxPending of them). It takes its
// own references to p. A nil p publishes nothing but lets the seqs after
// seq go: every acked seq must be published, or skipped this way.
func (b *Broker) publish(e *chatEntry, seq uint64, p *Payload, except *Session) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.next == 0 {
		e.next = seq // the access check could not read the chat; start here
	}
	switch {
	case seq < e.next:
		b.fanoutLocked(e, p, except, 0, false) // late: deliver now
		return
	case seq > e.next:
		if p != nil {
			p.Retain()
		}
		i, _ := slices.BinarySearchFunc(e.pending, seq, func(x pendingPublish, s uint64) int { return cmpU64(x.seq, s) })
		e.pending = slices.Insert(e.pending, i, pendingPublish{seq: seq, p: p, except: except})
		if len(e.pending) <= maxPending {
			return
		}
		e.next = e.pending[0].seq // give up on the gap
	default:
		b.fanoutLocked(e, p, except, 0, false)
		e.next++
	}
	b.drainLocked(e)
}

// drainLocked publishes the pending records that are due: those the
// chat's order has reached, and, once no append is in flight, all of
// them.
func (b *Broker) drainLocked(e *chatEntry) {
	for len(e.pending) > 0 && (e.pending[0].seq <= e.next || e.appends == 0) {
		pp := e.pending[0]
		e.pending[0] = pendingPublish{}
		e.pending = e.pending[1:]
		if pp.p != nil {
			b.fanoutLocked(e, pp.p, pp.except, 0, false)
			pp.p.Release()
		}
		if pp.seq >= e.next {
			e.next = pp.seq + 1
		}
	}
	if len(e.pending) == 0 {
		e.pending = nil
	}
}

// fanoutLocked pushes p to the chat's online sessions but except and
// those of user skip. A best-effort push (typing, receipts) is dropped
// by a full outbox without stalling it: the client can do without it.
func (b *Broker) fanoutLocked(e *chatEntry, p *Payload, except *Session, skip storage.UserID, bestEffort bool) {
	if p == nil {
		return
	}
	bp := outboxPool.Get().(*[]*Outbox)
	to := (*bp)[:0]
	for _, u := range e.users {
		if u != skip {
			to = b.reg.appendOutboxes(to, u, except)
		}
	}
	var n int
	if bestEffort {
		n = Offer(p, to)
	} else {
		n = Fanout(p, to)
	}
	b.m.deliveries.Add(n)
	clear(to)
	*bp = to[:0]
	outboxPool.Put(bp)
}

// maxRelayMembers caps the online members that best-effort signals
// (typing, others' read receipts) are relayed to: beyond it a chat is an
// audience, not a conversation, and the signals would cost much for
// little.
const maxRelayMembers = 1000

// relay pushes p, best effort, to the online sessions of the chat's
// members (all but except and user skip's), outside the seq order:
// receipts and typing. It does nothing in chats with more than
// maxRelayMembers members online.
func (b *Broker) relay(e *chatEntry, p *Payload, except *Session, skip storage.UserID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.users) > maxRelayMembers {
		return
	}
	b.fanoutLocked(e, p, except, skip, true)
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
