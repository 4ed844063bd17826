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

// memberPage is how many members a cache load reads per store call.
const memberPage = 4096

// chatCache holds, per recently used chat, its member list (for fan-out
// and membership checks) and its publish order. It is bounded by
// Options.CacheChats; an evicted chat is reloaded from the store.
type chatCache struct {
	st  *storage.Store
	max int

	mu    sync.Mutex // guards the following
	chats map[storage.ChatID]*chatEntry
}

// chatEntry is one cached chat. Its mutex also serialises the chat's
// fan-out, so that every session receives the chat's messages in seq
// order. Lock order: chatEntry.mu, then a registry shard, then an Outbox.
type chatEntry struct {
	id storage.ChatID
	// inflight counts appends between their access check and their
	// publish; an entry with any is never evicted, so that the seq each
	// one commits is published to the entry that waits for it. It changes
	// under chatCache.mu when it rises, anywhere when it falls.
	inflight atomic.Int32

	mu      sync.Mutex // guards the following
	loaded  bool
	kind    storage.ChatKind
	members []storage.UserID // sorted
	posters []storage.UserID // sorted: admins and the owner
	next    uint64           // the next seq to publish; 0 before the first
	pending []pendingPublish // sorted by seq
}

// pendingPublish is a message acked out of order, waiting for the seqs
// before it.
type pendingPublish struct {
	seq    uint64
	p      *Payload
	except *Session
}

func newChatCache(st *storage.Store, max int) *chatCache {
	return &chatCache{st: st, max: max, chats: make(map[storage.ChatID]*chatEntry)}
}

// get returns the chat's entry, creating an unloaded one.
func (c *chatCache) get(id storage.ChatID) *chatEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.getLocked(id)
}

// pin returns the chat's entry with an append in flight counted; the
// caller calls unpin after its publish (or its failure).
func (c *chatCache) pin(id storage.ChatID) *chatEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.getLocked(id)
	e.inflight.Add(1)
	return e
}

func (e *chatEntry) unpin() { e.inflight.Add(-1) }

// forget drops e if it is still the chat's entry and unused: a chat that
// does not exist must not take a cache slot.
func (c *chatCache) forget(e *chatEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.chats[e.id] == e && e.inflight.Load() == 0 {
		delete(c.chats, e.id)
	}
}

func (c *chatCache) getLocked(id storage.ChatID) *chatEntry {
	e := c.chats[id]
	if e == nil {
		if len(c.chats) >= c.max {
			c.evictLocked()
		}
		e = &chatEntry{id: id}
		c.chats[id] = e
	}
	return e
}

// evictLocked drops about an eighth of the entries, chosen by map order
// (random), skipping those with appends in flight or pending publishes.
func (c *chatCache) evictLocked() {
	n := max(1, len(c.chats)/8)
	for id, e := range c.chats {
		if n == 0 {
			break
		}
		if e.inflight.Load() == 0 && e.mu.TryLock() {
			busy := len(e.pending) > 0
			e.mu.Unlock()
			if !busy {
				delete(c.chats, id)
				n--
			}
		}
	}
}

// invalidate forgets a chat's cached members (a chat just created may have
// been probed before it existed); its publish order stays.
func (c *chatCache) invalidate(id storage.ChatID) {
	if e := c.lookup(id); e != nil {
		e.mu.Lock()
		e.loaded, e.members, e.posters = false, nil, nil
		e.mu.Unlock()
	}
}

// lookup returns the chat's entry if it is cached.
func (c *chatCache) lookup(id storage.ChatID) *chatEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.chats[id]
}

// joined records in the cached member list that user joined with role.
func (c *chatCache) joined(id storage.ChatID, user storage.UserID, role storage.Role) {
	e := c.lookup(id)
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.loaded {
		return
	}
	e.members = insertSorted(e.members, user)
	if role >= storage.RoleAdmin {
		e.posters = insertSorted(e.posters, user)
	}
}

// left records in the cached member list that user left.
func (c *chatCache) left(id storage.ChatID, user storage.UserID) {
	e := c.lookup(id)
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if i, ok := slices.BinarySearch(e.members, user); ok {
		e.members = slices.Delete(e.members, i, i+1)
	}
	if i, ok := slices.BinarySearch(e.posters, user); ok {
		e.posters = slices.Delete(e.posters, i, i+1)
	}
}

func insertSorted(s []storage.UserID, u storage.UserID) []storage.UserID {
	if i, ok := slices.BinarySearch(s, u); !ok {
		s = slices.Insert(s, i, u)
	}
	return s
}

// loadLocked reads the chat's kind and members from the store.
func (e *chatEntry) loadLocked(st *storage.Store) error {
	if e.loaded {
		return nil
	}
	chat, err := st.Chat(e.id)
	if err != nil {
		return err
	}
	members := make([]storage.UserID, 0, min(chat.Members, memberPage))
	var posters []storage.UserID
	for after := storage.UserID(0); ; {
		page, err := st.Members(e.id, after, memberPage)
		if err != nil {
			return err
		}
		for _, m := range page {
			members = append(members, m.User)
			if m.Role >= storage.RoleAdmin {
				posters = append(posters, m.User)
			}
		}
		if len(page) < memberPage {
			break
		}
		after = page[len(page)-1].User
	}
	e.kind, e.members, e.posters, e.loaded = chat.Kind, members, posters, true
	if e.next == 0 {
		e.next = chat.LastSeq + 1
	}
	return nil
}

// access loads the chat and reports whether user is in it and may post.
func (e *chatEntry) access(st *storage.Store, user storage.UserID) (kind storage.ChatKind, member, poster bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.loadLocked(st); err != nil {
		return 0, false, false, err
	}
	_, member = slices.BinarySearch(e.members, user)
	if e.kind == storage.ChatChannel {
		_, poster = slices.BinarySearch(e.posters, user)
	} else {
		poster = member
	}
	return e.kind, member, poster, nil
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
	if err := e.loadLocked(b.st); err != nil {
		// The store is failing; clients will find the record by syncing.
		// Start the order afresh from the store on the next load.
		b.log.Warn("broker: fan-out skipped: chat not loaded", "chat", e.id, "err", err)
		b.m.fanoutErrors.Inc()
		for _, pp := range e.pending {
			if pp.p != nil {
				pp.p.Release()
			}
		}
		e.pending, e.next = nil, 0
		return
	}
	switch {
	case seq < e.next:
		b.fanoutLocked(e, p, except, 0, false) // late, after a cache reload: deliver now
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
	for len(e.pending) > 0 && e.pending[0].seq <= e.next {
		pp := e.pending[0]
		e.pending[0] = pendingPublish{}
		e.pending = e.pending[1:]
		if pp.p != nil {
			b.fanoutLocked(e, pp.p, pp.except, 0, false)
			pp.p.Release()
		}
		if pp.seq == e.next {
			e.next++
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
	for _, u := range e.members {
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

// maxRelayMembers caps the chats that best-effort signals (typing, others'
// read receipts) are relayed in: beyond it they would cost a walk of a
// large member list each, for little.
const maxRelayMembers = 1000

// relay pushes p, best effort, to the online sessions of the chat's
// members (all but except and user skip's), outside the seq order:
// receipts and typing. It does nothing in chats over maxRelayMembers.
func (b *Broker) relay(e *chatEntry, p *Payload, except *Session, skip storage.UserID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.loadLocked(b.st); err != nil || len(e.members) > maxRelayMembers {
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
