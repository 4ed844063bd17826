package broker

import (
	"context"
	"math"
	"testing"

	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// newPresenceRig returns a broker over a fresh store, with user 2 online
// (one registered session), and a group of user 1's.
func newPresenceRig(t *testing.T) (b *Broker, chat storage.ChatID) {
	t.Helper()
	st, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b, err = New(st, &token.Verifier{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &Session{b: b, conn: &discardConn{}, user: 2, device: 1}
	s.writeFn, s.ctlFn = s.writeLoop, s.controlLoop
	s.expires.Store(math.MaxInt64)
	s.out = NewOutbox(OutboxOptions{Wake: s.wake, Drops: b.m.drops})
	if _, err := b.register(s); err != nil {
		t.Fatal(err)
	}
	c, err := st.CreateChat(context.Background(), storage.ChatSpec{Kind: storage.ChatGroup, Creator: 1})
	if err != nil {
		t.Fatal(err)
	}
	return b, c.ID
}

// indexHolds reports whether the index has user among chat's online
// members, after checking that the index and the users' lists agree.
func indexHolds(t *testing.T, b *Broker, chat storage.ChatID, user storage.UserID) bool {
	t.Helper()
	checkIndex(t, b)
	b.chats.mu.Lock()
	e := b.chats.chats[chat]
	b.chats.mu.Unlock()
	if e == nil {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.pos[user]
	return ok
}

// checkIndex checks, at rest (no append in flight), that every entry is
// referenced once per online member, and that each online user's list of
// entries is exactly the entries holding it.
func checkIndex(t *testing.T, b *Broker) {
	t.Helper()
	held := make(map[storage.UserID]map[*chatEntry]bool)
	b.chats.mu.Lock()
	for id, e := range b.chats.chats {
		e.mu.Lock()
		if e.refs != len(e.users) || len(e.pos) != len(e.users) {
			t.Errorf("chat %d: %d references, %d members online, %d positions", id, e.refs, len(e.users), len(e.pos))
		}
		if e.appends != 0 || len(e.pending) != 0 {
			t.Errorf("chat %d at rest: %d appends in flight, %d publishes pending", id, e.appends, len(e.pending))
		}
		for _, u := range e.users {
			if held[u] == nil {
				held[u] = make(map[*chatEntry]bool)
			}
			held[u][e] = true
		}
		e.mu.Unlock()
	}
	b.chats.mu.Unlock()
	for i := range b.reg.shards {
		sh := &b.reg.shards[i]
		sh.presence.Lock()
		for u, ue := range sh.users {
			if len(ue.chats) != len(held[u]) {
				t.Errorf("user %d lists %d entries, is in %d", u, len(ue.chats), len(held[u]))
			}
			for _, e := range ue.chats {
				if !held[u][e] {
					t.Errorf("user %d lists chat %d, which does not hold it", u, e.id)
				}
			}
			delete(held, u)
		}
		sh.presence.Unlock()
	}
	for u := range held {
		t.Errorf("user %d is in the index but offline", u)
	}
}

// Two changes of one membership commit in one order, and each request
// updates the index after its own commit, so the updates may run in the
// other order (an admin adds a user while the user leaves). The index
// must end as the store did: a removed member must not keep getting the
// chat's pushes, and an added one must not be refused.
func TestMemberUpdatesOutOfOrder(t *testing.T) {
	ctx := context.Background()
	t.Run("add, remove; updated remove, add", func(t *testing.T) {
		b, chat := newPresenceRig(t)
		if _, err := b.st.AddMembers(ctx, chat, []storage.UserID{2}, storage.RoleMember); err != nil {
			t.Fatal(err)
		}
		if err := b.st.RemoveMember(ctx, chat, 2); err != nil {
			t.Fatal(err)
		}
		b.memberLeft(chat, 2)
		b.memberJoined(chat, 2, storage.RoleMember, storage.ChatGroup)
		if indexHolds(t, b, chat, 2) {
			t.Fatal("the index holds a user the store removed")
		}
	})
	t.Run("remove, add; updated add, remove", func(t *testing.T) {
		b, chat := newPresenceRig(t)
		if _, err := b.st.AddMembers(ctx, chat, []storage.UserID{2}, storage.RoleMember); err != nil {
			t.Fatal(err)
		}
		b.memberJoined(chat, 2, storage.RoleMember, storage.ChatGroup)
		if err := b.st.RemoveMember(ctx, chat, 2); err != nil {
			t.Fatal(err)
		}
		if _, err := b.st.AddMembers(ctx, chat, []storage.UserID{2}, storage.RoleMember); err != nil {
			t.Fatal(err)
		}
		b.memberJoined(chat, 2, storage.RoleMember, storage.ChatGroup)
		b.memberLeft(chat, 2)
		if !indexHolds(t, b, chat, 2) {
			t.Fatal("the index lacks a user the store holds")
		}
	})
}
