package storage

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestDirectChatIsUnique(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	ctx := context.Background()
	a := mustChat(t, s, ChatSpec{Kind: ChatDirect, Creator: 7, Members: []UserID{9}})
	b, err := s.CreateChat(ctx, ChatSpec{Kind: ChatDirect, Creator: 9, Members: []UserID{7}})
	if !errors.Is(err, ErrChatExists) || b.ID != a.ID {
		t.Fatalf("second direct chat = %d, %v; want %d, ErrChatExists", b.ID, err, a.ID)
	}
	other := mustChat(t, s, ChatSpec{Kind: ChatDirect, Creator: 7, Members: []UserID{10}})
	if other.ID == a.ID {
		t.Fatal("different pairs share a direct chat")
	}
	if _, err := s.CreateChat(ctx, ChatSpec{Kind: ChatDirect, Creator: 7, Members: []UserID{8, 9}}); !errors.Is(err, ErrBadID) {
		t.Fatalf("direct chat with 3 users: %v", err)
	}
	if _, err := s.CreateChat(ctx, ChatSpec{Kind: ChatDirect, Creator: 7, Members: []UserID{7}}); !errors.Is(err, ErrBadID) {
		t.Fatalf("direct chat with oneself: %v", err)
	}
	if err := s.AddMember(ctx, a.ID, 11, RoleMember); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("AddMember to direct chat: %v", err)
	}
}

func TestMembers(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{MaxMembers: 5})
	ctx := context.Background()
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2, 3}})
	for _, u := range []UserID{4, 5} {
		if err := s.AddMember(ctx, c.ID, u, RoleMember); err != nil {
			t.Fatalf("AddMember(%d): %v", u, err)
		}
	}
	f := func(err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("got %v, want %v", err, want)
		}
	}
	f(s.AddMember(ctx, c.ID, 6, RoleMember), ErrTooManyMembers)
	f(s.AddMember(ctx, c.ID, 2, RoleMember), ErrAlreadyMember)
	f(s.AddMember(ctx, c.ID+1, 2, RoleMember), ErrUnknownChat)
	f(s.AddMember(ctx, c.ID, 6, Role(9)), ErrBadKind)
	f(s.RemoveMember(ctx, c.ID, 42), ErrNotMember)
	f(s.RemoveMember(ctx, c.ID, 3), nil)
	f(s.AddMember(ctx, c.ID, 6, RoleAdmin), nil)

	var got []Member
	for after := UserID(0); ; {
		page, err := s.Members(c.ID, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		after = page[len(page)-1].User
	}
	want := map[UserID]Role{1: RoleOwner, 2: RoleMember, 4: RoleMember, 5: RoleMember, 6: RoleAdmin}
	if len(got) != len(want) {
		t.Fatalf("members = %+v", got)
	}
	for _, m := range got {
		if want[m.User] != m.Role {
			t.Fatalf("member %d role %v, want %v", m.User, m.Role, want[m.User])
		}
	}
	if ch, _ := s.Chat(c.ID); ch.Members != 5 {
		t.Fatalf("member count %d, want 5", ch.Members)
	}
	chats, err := s.UserChats(6, 0, 10)
	if err != nil || len(chats) != 1 || chats[0].Chat != c.ID || chats[0].Role != RoleAdmin {
		t.Fatalf("UserChats(6) = %+v, %v", chats, err)
	}
	if chats, _ := s.UserChats(3, 0, 10); len(chats) != 0 {
		t.Fatalf("removed member still lists %+v", chats)
	}
}

func TestChannelDoesNotCapSubscribers(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{MaxMembers: 2})
	c := mustChat(t, s, ChatSpec{Kind: ChatChannel, Creator: 1, Members: []UserID{2, 3, 4}})
	m, err := s.Member(c.ID, 3)
	if err != nil || m.Role != RoleSubscriber {
		t.Fatalf("Member = %+v, %v", m, err)
	}
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{SweepInterval: -1, Shards: 16})
	if err != nil {
		t.Fatal(err)
	}
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2}})
	first := mustAppend(t, s, text(c.ID, 1, 1, "one"), text(c.ID, 2, 1, "two"))
	ver := s.Version()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, Options{}) // shard count comes from the store
	if s.Shards() != 16 || s.Version() != ver {
		t.Fatalf("reopened: shards %d version %d, want 16, %d", s.Shards(), s.Version(), ver)
	}
	dup := mustAppend(t, s, text(c.ID, 1, 1, "one"))
	if !dup[0].Duplicate || dup[0].Seq != first[0].Seq {
		t.Fatalf("dedupe lost across restart: %+v", dup[0])
	}
	next := mustAppend(t, s, text(c.ID, 1, 2, "three"))
	if next[0].Seq != 3 {
		t.Fatalf("seq after restart = %d, want 3", next[0].Seq)
	}
	recs := readAll(t, s, c.ID, 1, 10)
	if len(recs) != 3 || string(recs[2].Body) != "three" {
		t.Fatalf("after restart read %d records", len(recs))
	}
}

func TestReadBounds(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	for i := 1; i <= 20; i++ {
		mustAppend(t, s, text(c.ID, 1, uint64(i), "m"))
	}
	f := func(from uint64, limit int, first, n int) {
		t.Helper()
		recs := readAll(t, s, c.ID, from, limit)
		if len(recs) != n || (n > 0 && recs[0].Seq != uint64(first)) {
			t.Fatalf("ReadRange(%d, %d) = %d records from %v", from, limit, len(recs), recs)
		}
	}
	f(0, 5, 1, 5)
	f(18, 10, 18, 3)
	f(21, 10, 0, 0)
	var latest []uint64
	if _, err := s.ReadLatest(c.ID, 3, func(r *Record) error { latest = append(latest, r.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(latest) != 3 || latest[0] != 18 || latest[2] != 20 {
		t.Fatalf("ReadLatest = %v", latest)
	}
	if _, err := s.ReadRange(c.ID, 1, 0, nil); !errors.Is(err, ErrBadRange) {
		t.Fatalf("limit 0: %v", err)
	}
	if _, err := s.ReadRange(c.ID+1, 1, 1, nil); !errors.Is(err, ErrUnknownChat) {
		t.Fatalf("unknown chat: %v", err)
	}
	stop := errors.New("stop")
	n := 0
	if _, err := s.ReadRange(c.ID, 1, 20, func(*Record) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("callback error: %v after %d", err, n)
	}
}

func TestCompressionRoundTrip(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{MaxBodyBytes: 256 << 10, MaxBatchBytes: 1 << 20})
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	bodies := [][]byte{
		[]byte("short"),
		[]byte(stringsRepeat("compressible text ", 100)),   // s2
		[]byte(stringsRepeat("a much longer body ", 5000)), // zstd
		randomBytes(4096), // incompressible: stored raw
	}
	for i, b := range bodies {
		mustAppend(t, s, Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: uint64(i + 1), Kind: MsgText, Body: b})
	}
	recs := readAll(t, s, c.ID, 1, 10)
	for i, r := range recs {
		if string(r.Body) != string(bodies[i]) {
			t.Fatalf("body %d did not round-trip (%d bytes vs %d)", i, len(r.Body), len(bodies[i]))
		}
	}
	var enc []byte
	enc, codec := s.codec.appendEncoded(enc, bodies[2])
	if codec != codecZstd || len(enc) >= len(bodies[2])/10 {
		t.Fatalf("large body: codec %d, %d bytes", codec, len(enc))
	}
	if _, codec := s.codec.appendEncoded(nil, bodies[3]); codec != codecNone {
		t.Fatalf("random body compressed with codec %d", codec)
	}
}

func TestSetTitle(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Options{})
	ctx := context.Background()
	g, err := s.CreateChat(ctx, ChatSpec{Kind: ChatGroup, Creator: 1, Title: "old"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetTitle(ctx, g.ID, "new"); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Chat(g.ID); err != nil || c.Title != "new" {
		t.Fatalf("chat %+v %v", c, err)
	}
	s.Close()
	s = openTest(t, dir, Options{})
	if c, err := s.Chat(g.ID); err != nil || c.Title != "new" {
		t.Fatalf("after reopening: %+v %v", c, err)
	}
	if err := s.SetTitle(ctx, g.ID, strings.Repeat("x", 257)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("long title: %v", err)
	}
	d, err := s.CreateChat(ctx, ChatSpec{Kind: ChatDirect, Creator: 1, Members: []UserID{2}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetTitle(ctx, d.ID, "x"); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("direct: %v", err)
	}
	if err := s.SetTitle(ctx, 12345, "x"); !errors.Is(err, ErrUnknownChat) {
		t.Fatalf("unknown: %v", err)
	}
}

// A direct chat a store made at its legacy id (before chat ids were kept
// below 2^53) is still the pair's: no second one is made.
func TestDirectChatLegacyID(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	ctx := context.Background()
	a, b := UserID(1<<33), UserID(1<<33+1)
	// The chat as an older store made it: at its legacy id.
	legacy := legacyDirectID(a, b, 0)
	op := &createOp{at: legacy, spec: ChatSpec{Kind: ChatDirect, Creator: a, Members: []UserID{b}}}
	if err := s.submit(ctx, op, 0); err != nil || op.err != nil {
		t.Fatal(err, op.err)
	}
	c, err := s.CreateChat(ctx, ChatSpec{Kind: ChatDirect, Creator: b, Members: []UserID{a}})
	if !errors.Is(err, ErrChatExists) || c.ID != legacy {
		t.Fatalf("CreateChat = %d, %v; want the legacy chat %d, ErrChatExists", c.ID, err, legacy)
	}
	// A new pair gets an id below 2^53.
	n := mustChat(t, s, ChatSpec{Kind: ChatDirect, Creator: a, Members: []UserID{7}})
	if n.ID >= 1<<53 || n.ID < 1<<52 {
		t.Fatalf("new direct chat id %d", n.ID)
	}
	g := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: a})
	if g.ID >= 1<<52 {
		t.Fatalf("new group id %d", g.ID)
	}
}

// Options.Uncapped users join chats beyond MaxChatsPerUser.
func TestUncapped(t *testing.T) {
	const bot = UserID(99)
	s := openTest(t, t.TempDir(), Options{MaxChatsPerUser: 2, Uncapped: func(u UserID) bool { return u == bot }})
	ctx := context.Background()
	for i := range 4 {
		if _, err := s.CreateChat(ctx, ChatSpec{Kind: ChatDirect, Creator: UserID(10 + i), Members: []UserID{bot}}); err != nil {
			t.Fatalf("chat %d with the bot: %v", i, err)
		}
	}
	if _, err := s.CreateChat(ctx, ChatSpec{Kind: ChatGroup, Creator: 10}); err != nil {
		t.Fatalf("a capped user's second chat: %v", err)
	}
	if _, err := s.CreateChat(ctx, ChatSpec{Kind: ChatGroup, Creator: 10}); !errors.Is(err, ErrTooManyChats) {
		t.Fatalf("a capped user's third chat: %v", err)
	}
}
