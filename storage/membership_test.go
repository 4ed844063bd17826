package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/gonets/gonets/storage/storagetest"
)

// The store takes posts from members only: in direct chats and groups
// any member, in channels content from admins and the owner (subscribers
// may react); a removed member's next post is refused.
func TestPostsFromMembersOnly(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	ctx := context.Background()
	direct := mustChat(t, s, ChatSpec{Kind: ChatDirect, Creator: 1, Members: []UserID{2}})
	group := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2, 3}})
	channel := mustChat(t, s, ChatSpec{Kind: ChatChannel, Creator: 1, Members: []UserID{2}})
	post := func(m Message, want error) {
		t.Helper()
		acks, err := s.Append(ctx, []Message{m})
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(acks[0].Err, want) {
			t.Fatalf("chat %d sender %d kind %v: %v, want %v", m.Chat, m.Sender, m.Kind, acks[0].Err, want)
		}
	}
	post(text(direct.ID, 1, 1, "hi"), nil)
	post(text(direct.ID, 2, 1, "hi"), nil)
	post(text(direct.ID, 3, 1, "intruder"), ErrNotMember)
	post(text(group.ID, 3, 1, "hi"), nil)
	post(text(group.ID, 4, 1, "intruder"), ErrNotMember)
	post(text(channel.ID, 1, 1, "news"), nil)
	post(text(channel.ID, 2, 1, "a subscriber"), ErrNotAllowed)
	post(Message{Chat: channel.ID, Sender: 2, Device: 1, ClientMsgID: 2, Kind: MsgReaction, Target: 1, Body: []byte("+")}, nil)
	post(text(channel.ID, 9, 1, "a stranger"), ErrNotMember)

	// The sender's role is cached; a removal must reach the cache.
	if err := s.RemoveMember(ctx, group.ID, 3); err != nil {
		t.Fatal(err)
	}
	post(text(group.ID, 3, 2, "after removal"), ErrNotMember)
	if err := s.AddMember(ctx, group.ID, 3, RoleMember); err != nil {
		t.Fatal(err)
	}
	post(text(group.ID, 3, 3, "back"), nil)
	if c, _ := s.Chat(group.ID); c.LastSeq != 2 {
		t.Fatalf("group holds %d messages, want 2: a refused post was written", c.LastSeq)
	}
}

// AddMembers adds up to 1,000 users in one commit, skips members, and
// adds none when one of them cannot join.
func TestAddMembersOneCommit(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{MaxChatsPerUser: 3})
	ctx := context.Background()
	c := mustChat(t, s, ChatSpec{Kind: ChatChannel, Creator: 1, Members: []UserID{5}})
	users := make([]UserID, MaxAddMembers)
	for i := range users {
		users[i] = UserID(1000 + i)
	}
	users[7] = 5 // already in
	commits := s.m.commits.Get()
	added, err := s.AddMembers(ctx, c.ID, users, RoleSubscriber)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.m.commits.Get() - commits; got != 1 {
		t.Fatalf("%d commits for one AddMembers", got)
	}
	if len(added) != MaxAddMembers-1 || slices.Contains(added, 5) {
		t.Fatalf("added %d users (5 among them: %v)", len(added), slices.Contains(added, 5))
	}
	if got, _ := s.Chat(c.ID); got.Members != MaxAddMembers+1 {
		t.Fatalf("channel has %d members", got.Members)
	}
	if _, err := s.AddMembers(ctx, c.ID, make([]UserID, MaxAddMembers+1), RoleSubscriber); !errors.Is(err, ErrBadRange) {
		t.Fatalf("%d users: %v", MaxAddMembers+1, err)
	}

	// User 9 is in three chats: adding it with others adds nobody.
	for range 3 {
		mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 9})
	}
	g := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 20})
	if _, err := s.AddMembers(ctx, g.ID, []UserID{21, 9, 22}, RoleMember); !errors.Is(err, ErrTooManyChats) {
		t.Fatalf("adding a user at its limit: %v", err)
	}
	if got, _ := s.Chat(g.ID); got.Members != 1 {
		t.Fatalf("a refused AddMembers added %d members", got.Members-1)
	}
	for _, u := range []UserID{21, 22} {
		if _, err := s.Member(g.ID, u); !errors.Is(err, ErrNotMember) {
			t.Fatalf("user %d joined through a refused AddMembers: %v", u, err)
		}
	}
}

// The per-user chat count decides the limit without scanning the user's
// chats, follows joins and leaves, and is rebuilt once for a store
// written before it was kept.
func TestChatCountPerUser(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Options{MaxChatsPerUser: 3})
	ctx := context.Background()
	var chats []Chat
	for range 3 {
		chats = append(chats, mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1}))
	}
	if _, err := s.CreateChat(ctx, ChatSpec{Kind: ChatGroup, Creator: 1}); !errors.Is(err, ErrTooManyChats) {
		t.Fatalf("fourth chat: %v", err)
	}
	if _, err := s.CreateChat(ctx, ChatSpec{Kind: ChatGroup, Creator: 2, Members: []UserID{1}}); !errors.Is(err, ErrTooManyChats) {
		t.Fatalf("a chat naming a full user: %v", err)
	}
	if err := s.RemoveMember(ctx, chats[0].ID, 1); err != nil {
		t.Fatal(err)
	}
	mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1}) // room again

	// A store without counts (written before they were kept) counts once.
	if err := s.db.Delete(s.userKey(nil, tUserN, 1), nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, dir, Options{MaxChatsPerUser: 3})
	if _, err := s.CreateChat(ctx, ChatSpec{Kind: ChatGroup, Creator: 1}); !errors.Is(err, ErrTooManyChats) {
		t.Fatalf("after losing the count: %v", err)
	}
	if err := s.RemoveMember(ctx, chats[1].ID, 1); err != nil {
		t.Fatal(err)
	}
	mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	list, err := s.UserChats(1, 0, 10)
	if err != nil || len(list) != 3 {
		t.Fatalf("UserChats = %v, %v", list, err)
	}
	for _, uc := range list {
		if uc.Kind != ChatGroup {
			t.Fatalf("user chat %+v: kind not recorded", uc)
		}
	}
}

// A direct chat has fixed members: the store refuses to remove one, as
// it refuses to add one, so that its members, the posts it takes (it
// knows a direct chat's members from its record) and their chat counts
// always agree.
func TestDirectMembersFixed(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	ctx := context.Background()
	d := mustChat(t, s, ChatSpec{Kind: ChatDirect, Creator: 1, Members: []UserID{2}})
	for _, u := range []UserID{1, 2} {
		if err := s.RemoveMember(ctx, d.ID, u); !errors.Is(err, ErrNotAllowed) {
			t.Fatalf("removing user %d from a direct chat: %v, want ErrNotAllowed", u, err)
		}
		if _, err := s.Member(d.ID, u); err != nil {
			t.Fatalf("user %d after a refused removal: %v", u, err)
		}
	}
	if _, err := s.AddMembers(ctx, d.ID, []UserID{3}, RoleMember); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("adding to a direct chat: %v, want ErrNotAllowed", err)
	}
	if c, _ := s.Chat(d.ID); c.Members != 2 {
		t.Fatalf("direct chat has %d members, want 2", c.Members)
	}
}

// The chat count stays exact when joins and leaves of one user share a
// batch, also for users whose count is computed lazily (written before
// counts were kept): AddMembers and RemoveMember of the same user, a
// removal of an absent user, AddMembers of a member, and CreateChat of a
// direct chat that exists, all in one group commit.
func TestChatCountInOneBatch(t *testing.T) {
	ctx := context.Background()
	gate := storagetest.NewSyncGate(t)
	s := openTest(t, t.TempDir(), Options{FS: gate.FS})
	g := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2}})
	g2 := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	mustChat(t, s, ChatSpec{Kind: ChatDirect, Creator: 1, Members: []UserID{5}})
	for _, u := range []UserID{2, 5} { // as if written before counts were kept
		if err := s.db.Delete(s.userKey(nil, tUserN, u), nil); err != nil {
			t.Fatal(err)
		}
	}
	commits := s.m.commits.Get()
	inOneBatch(t, s, gate,
		func() { mustAppend(t, s, text(g.ID, 1, 1, "holds the sync")) },
		func() { s.AddMembers(ctx, g.ID, []UserID{5, 2}, RoleMember) },
		func() { s.RemoveMember(ctx, g.ID, 5) },
		func() { s.CreateChat(ctx, ChatSpec{Kind: ChatDirect, Creator: 5, Members: []UserID{1}}) },
		func() { s.RemoveMember(ctx, g2.ID, 5) },
		func() { s.AddMembers(ctx, g2.ID, []UserID{2, 5}, RoleMember) },
		func() { s.CreateChat(ctx, ChatSpec{Kind: ChatGroup, Creator: 2, Members: []UserID{5}}) },
		func() { s.RemoveMember(ctx, g2.ID, 2) },
	)
	if got := s.m.commits.Get() - commits; got != 2 {
		t.Fatalf("%d commits, want 2 (the held one and one batch)", got)
	}
	for u, want := range map[UserID]int{1: 3, 2: 2, 5: 3} {
		list, err := s.UserChats(u, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		v, err := s.acquire()
		if err != nil {
			t.Fatal(err)
		}
		b, found, err := v.get(s.userKey(nil, tUserN, u))
		v.release()
		n, _ := binary.Uvarint(b)
		if err != nil || !found || n != uint64(len(list)) || len(list) != want {
			t.Errorf("user %d: count %d (found %v, %v), in %d chats, want %d", u, n, found, err, len(list), want)
		}
	}
}

// inOneBatch runs hold, whose WAL sync it holds, then each op, queued in
// order behind that sync, and lets the sync go: the ops commit in one
// batch. It returns when all have returned.
func inOneBatch(t *testing.T, s *Store, gate *storagetest.SyncGate, hold func(), ops ...func()) {
	t.Helper()
	gate.Hold.Store(true)
	var wg sync.WaitGroup
	wg.Go(hold)
	<-gate.Held
	gate.Hold.Store(false)
	for i, op := range ops {
		wg.Go(op)
		storagetest.WaitFor(t, "an op queued behind the held sync", func() bool {
			s.q.mu.Lock()
			defer s.q.mu.Unlock()
			return len(s.q.reqs) == i+1
		})
	}
	gate.Open()
	wg.Wait()
}

// Membership changes count against the group commit's byte cap, so a
// queue of large AddMembers calls is committed in bounded batches.
func TestMembershipBatchesBounded(t *testing.T) {
	gate := storagetest.NewSyncGate(t)
	s := openTest(t, t.TempDir(), Options{FS: gate.FS})
	ctx := context.Background()
	const calls = 10
	var chats []Chat
	for range calls {
		chats = append(chats, mustChat(t, s, ChatSpec{Kind: ChatChannel, Creator: 1}))
	}
	gate.Hold.Store(true)
	var wg sync.WaitGroup
	wg.Go(func() { mustAppend(t, s, text(chats[0].ID, 1, 1, "held")) })
	<-gate.Held
	gate.Hold.Store(false)
	commits := s.m.commits.Get()
	for i, c := range chats {
		wg.Go(func() {
			users := make([]UserID, MaxAddMembers)
			for j := range users {
				users[j] = UserID(10_000*(i+1) + j)
			}
			if _, err := s.AddMembers(ctx, c.ID, users, RoleSubscriber); err != nil {
				t.Error(err)
			}
		})
	}
	storagetest.WaitFor(t, "the calls queued behind the held sync", func() bool {
		s.q.mu.Lock()
		defer s.q.mu.Unlock()
		return len(s.q.reqs) == calls
	})
	gate.Open()
	wg.Wait()
	// 10 × 1,000 members × 256 B = 2.4 MiB: at least three batches of 1 MiB
	// after the held one.
	if got := s.m.commits.Get() - commits; got < 4 {
		t.Fatalf("%d commits for the held append and 10,000 members, want at least 4", got)
	}
}
