package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// ChatSpec describes a chat to create.
type ChatSpec struct {
	Kind ChatKind
	// Creator becomes the owner.
	Creator UserID
	// Members are added as members (direct, group) or subscribers
	// (channel). A direct chat has exactly one, the peer.
	Members []UserID
	// Title is at most 256 bytes; direct chats have none.
	Title string
	// Retention overrides Options.Retention for this chat when set.
	Retention *Retention
}

// Chat is a chat as readers see it: only durable state.
type Chat struct {
	ID      ChatID
	Kind    ChatKind
	Title   string
	Creator UserID
	// Created is the creation time, Unix µs.
	Created int64
	// LastSeq is the last durable seq; Floor the first retained one.
	LastSeq uint64
	Floor   uint64
	// LastTime is the time of the last message, Unix µs.
	LastTime int64
	// Version is the store version of the chat's last change.
	Version uint64
	Members uint64
}

// Member is a chat member with its read markers.
type Member struct {
	User   UserID
	Role   Role
	Joined int64 // Unix µs
	// Delivered and Read are the last seqs delivered to and read by any of
	// the user's devices.
	Delivered uint64
	Read      uint64
}

// CreateChat creates a chat and returns it once durable. Creating a direct
// chat that exists returns it with ErrChatExists.
func (s *Store) CreateChat(ctx context.Context, spec ChatSpec) (Chat, error) {
	if err := s.validateSpec(&spec); err != nil {
		return Chat{}, err
	}
	op := &createOp{spec: spec}
	if err := s.submit(ctx, op, memberOpBytes*(len(spec.Members)+1)); err != nil {
		return Chat{}, err
	}
	if op.err != nil && !errors.Is(op.err, ErrChatExists) {
		return Chat{}, op.err
	}
	c, err := s.Chat(op.id)
	if err != nil {
		return Chat{}, err
	}
	return c, op.err
}

func (s *Store) validateSpec(spec *ChatSpec) error {
	switch {
	case !spec.Kind.valid():
		return fmt.Errorf("storage: chat kind %d: %w", spec.Kind, ErrBadKind)
	case spec.Creator == 0:
		return fmt.Errorf("storage: creator: %w", ErrBadID)
	case len(spec.Title) > maxTitleBytes:
		return fmt.Errorf("storage: title of %d bytes: %w", len(spec.Title), ErrTooLarge)
	case spec.Retention != nil && spec.Retention.MaxAge < 0:
		return fmt.Errorf("storage: negative retention age: %w", ErrBadRange)
	}
	seen := make(map[UserID]bool, len(spec.Members)+1)
	seen[spec.Creator] = true
	members := spec.Members[:0:0]
	for _, u := range spec.Members {
		if u == 0 {
			return fmt.Errorf("storage: member: %w", ErrBadID)
		}
		if !seen[u] {
			seen[u] = true
			members = append(members, u)
		}
	}
	spec.Members = members
	if spec.Kind == ChatDirect {
		if len(members) != 1 {
			return fmt.Errorf("storage: a direct chat needs exactly one peer besides its creator: %w", ErrBadID)
		}
		spec.Title = ""
	}
	if spec.Kind != ChatChannel && uint64(len(members)+1) > s.opts.MaxMembers {
		return fmt.Errorf("storage: %d members over %d: %w", len(members)+1, s.opts.MaxMembers, ErrTooManyMembers)
	}
	return nil
}

// Chat ids are below 2^53, so that JavaScript, whose numbers are
// doubles, holds them exactly (MAX's bot SDK reads them as numbers):
// direct chats' in [2^52, 2^53), derived from the pair, the others'
// random below 2^52.
const (
	directIDBit = 1 << 52
	chatIDMask  = 1<<53 - 1
)

// directID is the k-th candidate id of the direct chat between a and b.
// Candidates are probed in order on a collision with another pair.
func directID(a, b UserID, k uint64) ChatID {
	if a > b {
		a, b = b, a
	}
	id := mix64(mix64(uint64(a))^uint64(b)+k)&chatIDMask | directIDBit
	return ChatID(id)
}

// legacyDirectID is directID as stores before chat ids were kept below
// 2^53 derived it, in [2^62, 2^63). Like mix64, it must never change.
func legacyDirectID(a, b UserID, k uint64) ChatID {
	if a > b {
		a, b = b, a
	}
	id := mix64(mix64(uint64(a))^uint64(b)+k) | 1<<62
	return ChatID(id &^ (1 << 63))
}

type createOp struct {
	spec ChatSpec
	at   ChatID // the id to create at, for tests of legacy stores; 0: pick one
	id   ChatID
	err  error
}

func (op *createOp) apply(s *Store, bc *batchCtx) error {
	sp := &op.spec
	if op.at != 0 {
		op.id = op.at
	} else if sp.Kind == ChatDirect {
		// A store written before chat ids were kept below 2^53 holds its
		// direct chats at their legacy ids: the pair's chat is found there
		// first, so that no pair gets a second one.
		for k := uint64(0); ; k++ {
			id := legacyDirectID(sp.Creator, sp.Members[0], k)
			st, err := s.state(id)
			if errors.Is(err, ErrUnknownChat) {
				break
			}
			if err != nil {
				return err
			}
			if st.kind == ChatDirect && isPair(st.rec.creator, st.rec.peer, sp.Creator, sp.Members[0]) {
				op.id, op.err = id, ErrChatExists
				return nil
			}
		}
		for k := uint64(0); ; k++ {
			id := directID(sp.Creator, sp.Members[0], k)
			st, err := s.state(id)
			if errors.Is(err, ErrUnknownChat) {
				op.id = id
				break
			}
			if err != nil {
				return err
			}
			if st.kind == ChatDirect && isPair(st.rec.creator, st.rec.peer, sp.Creator, sp.Members[0]) {
				op.id, op.err = id, ErrChatExists
				return nil
			}
		}
	} else {
		for {
			id := ChatID(rand.Uint64() & (directIDBit - 1)) // below the direct-id range
			if id == 0 {
				continue
			}
			if _, err := s.state(id); errors.Is(err, ErrUnknownChat) {
				op.id = id
				break
			} else if err != nil {
				return err
			}
		}
	}
	for _, u := range append([]UserID{sp.Creator}, sp.Members...) {
		if err := s.checkRoom(bc, u); err != nil {
			if isInputErr(err) {
				op.err = err
				return nil
			}
			return err
		}
	}
	st := &chatState{id: op.id, kind: sp.Kind, pushLoaded: true}
	st.rec = chatRecord{kind: sp.Kind, created: bc.now, creator: sp.Creator, title: sp.Title, floor: 1, dedupeFloor: 1}
	if sp.Kind == ChatDirect {
		st.rec.peer = sp.Members[0]
	}
	if sp.Retention != nil {
		st.rec.retention, st.rec.hasRetention = *sp.Retention, true
	}
	s.mu.Lock()
	s.chats[op.id] = st
	s.mu.Unlock()
	defaultRole := RoleMember
	if sp.Kind == ChatChannel {
		defaultRole = RoleSubscriber
	}
	if err := s.stageJoin(bc, st, sp.Creator, RoleOwner); err != nil {
		return err
	}
	for _, u := range sp.Members {
		if err := s.stageJoin(bc, st, u, defaultRole); err != nil {
			return err
		}
	}
	bc.touch(st, true)
	return nil
}

func isPair(a, b, x, y UserID) bool { return (a == x && b == y) || (a == y && b == x) }

// stageJoin writes a new member's records, counts the chat among the
// user's and picks its mode. The caller checked the user's room.
func (s *Store) stageJoin(bc *batchCtx, st *chatState, user UserID, role Role) error {
	mode := modePush
	if st.kind == ChatChannel || (st.kind == ChatGroup && st.rec.members >= s.opts.PushMembers) {
		mode = modePull
	}
	// What the chat held before the member joined was never delivered to
	// it, and never will be as new: its delivered marker starts at the
	// chat's last seq (a bot's updates are read after it; history stays
	// readable).
	m := memberRecord{role: role, mode: mode, joined: bc.now, delivered: st.durSeq}
	bc.set(s.chatKey(bc.key[:0], tMember, st.id, uint64(user)), m.appendTo(bc.val[:0]))
	bc.set(s.userKey(bc.key[:0], tUserChat, user, uint64(st.id)), []byte{byte(role), mode, byte(st.kind)})
	if mode == modePull {
		bc.set(s.userKey(bc.key[:0], tPull, user, uint64(st.id)), []byte{})
	} else {
		st.push = append(st.push, user)
		st.added = append(st.added, user)
	}
	st.rec.members++
	if st.roles != nil {
		st.roles[user] = role
	}
	return s.addChatCount(bc, user, 1)
}

// userChatCount returns how many chats user is in, through the values
// staged in this batch. A store written before the count was kept has
// none: it is counted once from the durable user-chat keys, then kept.
// Every join and leave stages the count, so a batch never holds a staged
// membership of a user whose count is missing.
func (s *Store) userChatCount(bc *batchCtx, user UserID) (uint64, error) {
	k := s.userKey(nil, tUserN, user)
	v, found, err := s.get(bc, k)
	if err != nil {
		return 0, err
	}
	if found {
		n, w := binary.Uvarint(v)
		if w <= 0 {
			return 0, fmt.Errorf("storage: chat count %x: %w", k, errCorrupt)
		}
		return n, nil
	}
	prefix := s.userKey(nil, tUserChat, user)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: keyUpper(prefix)})
	if err != nil {
		return 0, err
	}
	n := uint64(0)
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	return n, nil
}

// addChatCount moves user's chat count by delta.
func (s *Store) addChatCount(bc *batchCtx, user UserID, delta int) error {
	n, err := s.userChatCount(bc, user)
	if err != nil {
		return err
	}
	n = uint64(int64(n) + int64(delta))
	bc.set(s.userKey(bc.key[:0], tUserN, user), binary.AppendUvarint(bc.val[:0], n))
	return nil
}

// checkRoom fails with ErrTooManyChats when user is in MaxChatsPerUser
// chats already. Service users are not capped.
func (s *Store) checkRoom(bc *batchCtx, user UserID) error {
	if IsServiceUser(user) || (s.opts.Uncapped != nil && s.opts.Uncapped(user)) {
		return nil
	}
	n, err := s.userChatCount(bc, user)
	if err != nil {
		return err
	}
	if n >= s.opts.MaxChatsPerUser {
		return fmt.Errorf("storage: user %d is in %d chats: %w", user, n, ErrTooManyChats)
	}
	return nil
}

// Chat returns a chat's durable state.
func (s *Store) Chat(id ChatID) (Chat, error) {
	v, c, err := s.viewChat(id)
	if err != nil {
		return Chat{}, err
	}
	v.release()
	return c, nil
}

// memberOpBytes is what one member a change adds counts against the
// group commit's and the queue's byte caps: about what it writes (four
// keys), so that a batch of membership changes is bounded as one of
// messages is.
const memberOpBytes = 256

// MaxAddMembers caps the users one AddMembers call adds.
const MaxAddMembers = 1000

// AddMember adds user to chat with role, or fails with ErrAlreadyMember.
func (s *Store) AddMember(ctx context.Context, chat ChatID, user UserID, role Role) error {
	added, err := s.AddMembers(ctx, chat, []UserID{user}, role)
	if err == nil && len(added) == 0 {
		return ErrAlreadyMember
	}
	return err
}

// AddMembers adds users to chat with role in one commit and returns those
// it added, in id order; users already in are skipped. It changes
// nothing when it fails: on ErrTooManyChats (one of the users is in
// MaxChatsPerUser chats), ErrTooManyMembers, ErrNotAllowed (a direct
// chat) or ErrUnknownChat. It takes up to MaxAddMembers users.
func (s *Store) AddMembers(ctx context.Context, chat ChatID, users []UserID, role Role) ([]UserID, error) {
	if chat == 0 {
		return nil, ErrBadID
	}
	if !role.valid() {
		return nil, fmt.Errorf("storage: role %d: %w", role, ErrBadKind)
	}
	if len(users) == 0 || len(users) > MaxAddMembers {
		return nil, fmt.Errorf("storage: add %d users, not 1 to %d: %w", len(users), MaxAddMembers, ErrBadRange)
	}
	users = slices.Clone(users)
	slices.Sort(users)
	users = slices.Compact(users)
	if users[0] == 0 {
		return nil, ErrBadID
	}
	op := &addOp{chat: chat, users: users, role: role}
	if err := s.submit(ctx, op, memberOpBytes*len(users)); err != nil {
		return nil, err
	}
	return op.added, op.err
}

type addOp struct {
	chat  ChatID
	users []UserID // sorted, distinct
	role  Role
	added []UserID
	err   error
}

func (op *addOp) apply(s *Store, bc *batchCtx) error {
	st, rejected, err := s.opState(op.chat)
	if rejected != nil || err != nil {
		op.err = rejected
		return err
	}
	if st.kind == ChatDirect {
		op.err = fmt.Errorf("storage: direct chats have fixed members: %w", ErrNotAllowed)
		return nil
	}
	// Check everything before staging anything: the op adds all or none.
	var add []UserID
	for _, u := range op.users {
		_, found, err := s.get(bc, s.chatKey(bc.key[:0], tMember, op.chat, uint64(u)))
		if err != nil {
			return err
		}
		if found {
			continue
		}
		if err := s.checkRoom(bc, u); err != nil {
			if isInputErr(err) {
				op.err = err
				return nil
			}
			return err
		}
		add = append(add, u)
	}
	if st.kind != ChatChannel && st.rec.members+uint64(len(add)) > s.opts.MaxMembers {
		op.err = fmt.Errorf("storage: %d members and %d more over %d: %w", st.rec.members, len(add), s.opts.MaxMembers, ErrTooManyMembers)
		return nil
	}
	if len(add) == 0 {
		return nil
	}
	if err := s.loadPush(st); err != nil {
		return err
	}
	for _, u := range add {
		if err := s.stageJoin(bc, st, u, op.role); err != nil {
			return err
		}
	}
	bc.touch(st, true)
	op.added = add
	return nil
}

// RemoveMember removes user from chat; leaving is removing oneself. It
// fails with ErrNotMember for a user not in chat and with ErrNotAllowed
// for a direct chat, whose members are fixed.
func (s *Store) RemoveMember(ctx context.Context, chat ChatID, user UserID) error {
	if chat == 0 || user == 0 {
		return ErrBadID
	}
	op := &removeOp{chat: chat, user: user}
	if err := s.submit(ctx, op, 0); err != nil {
		return err
	}
	return op.err
}

type removeOp struct {
	chat ChatID
	user UserID
	err  error
}

func (op *removeOp) apply(s *Store, bc *batchCtx) error {
	st, rejected, err := s.opState(op.chat)
	if rejected != nil || err != nil {
		op.err = rejected
		return err
	}
	if st.kind == ChatDirect {
		// Posts to a direct chat are checked against its record's two
		// users (roleOf), not its member entries: they must stay.
		op.err = fmt.Errorf("storage: direct chats have fixed members: %w", ErrNotAllowed)
		return nil
	}
	mk := s.chatKey(nil, tMember, op.chat, uint64(op.user))
	v, found, err := s.get(bc, mk)
	if err != nil {
		return err
	}
	if !found {
		op.err = ErrNotMember
		return nil
	}
	var m memberRecord
	if err := m.decode(v); err != nil {
		return fmt.Errorf("storage: member %x: %w", mk, err)
	}
	if err := s.loadPush(st); err != nil {
		return err
	}
	bc.del(mk)
	bc.del(s.userKey(nil, tUserChat, op.user, uint64(op.chat)))
	if m.mode == modePull {
		bc.del(s.userKey(nil, tPull, op.user, uint64(op.chat)))
	} else if i := slices.Index(st.push, op.user); i >= 0 {
		st.push = slices.Delete(st.push, i, i+1)
		st.removed = append(st.removed, op.user)
	}
	st.rec.members--
	delete(st.roles, op.user)
	if err := s.addChatCount(bc, op.user, -1); err != nil {
		return err
	}
	bc.touch(st, true)
	return nil
}

// Members lists chat's members with ids above after, in id order, at most
// limit of them.
func (s *Store) Members(chat ChatID, after UserID, limit int) ([]Member, error) {
	if limit <= 0 {
		return nil, ErrBadRange
	}
	v, _, err := s.viewChat(chat)
	if err != nil {
		return nil, err
	}
	defer v.release()
	prefix := s.chatKey(nil, tMember, chat)
	it, err := v.newIter(prefix, keyUpper(prefix))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	if after == ^UserID(0) {
		return nil, nil
	}
	var out []Member
	var m memberRecord
	for it.SeekGE(s.chatKey(nil, tMember, chat, uint64(after)+1)); it.Valid() && len(out) < limit; it.Next() {
		if err := m.decode(it.Value()); err != nil {
			return nil, fmt.Errorf("storage: member %x: %w", it.Key(), err)
		}
		out = append(out, Member{User: UserID(lastU64(it.Key())), Role: m.role, Joined: m.joined, Delivered: m.delivered, Read: m.read})
	}
	return out, it.Error()
}

// Member returns user's membership in chat, or ErrNotMember.
func (s *Store) Member(chat ChatID, user UserID) (Member, error) {
	if user == 0 {
		return Member{}, ErrBadID
	}
	view, _, err := s.viewChat(chat)
	if err != nil {
		return Member{}, err
	}
	defer view.release()
	v, closer, err := view.snap.Get(s.chatKey(nil, tMember, chat, uint64(user)))
	if errors.Is(err, pebble.ErrNotFound) {
		return Member{}, ErrNotMember
	}
	if err != nil {
		return Member{}, err
	}
	defer closer.Close()
	var m memberRecord
	if err := m.decode(v); err != nil {
		return Member{}, fmt.Errorf("storage: member %d of chat %d: %w", user, chat, err)
	}
	return Member{User: user, Role: m.role, Joined: m.joined, Delivered: m.delivered, Read: m.read}, nil
}

// UserChat is one of a user's chats.
type UserChat struct {
	Chat ChatID
	Role Role
	// Kind is the chat's kind; 0 for memberships written before it was
	// recorded there (read the chat then).
	Kind ChatKind
}

// UserChats lists user's chats with ids above after, in id order.
func (s *Store) UserChats(user UserID, after ChatID, limit int) ([]UserChat, error) {
	if user == 0 {
		return nil, ErrBadID
	}
	if limit <= 0 {
		return nil, ErrBadRange
	}
	v, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer v.release()
	prefix := s.userKey(nil, tUserChat, user)
	it, err := v.newIter(prefix, keyUpper(prefix))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []UserChat
	if after == ^ChatID(0) {
		return nil, nil
	}
	for it.SeekGE(s.userKey(nil, tUserChat, user, uint64(after)+1)); it.Valid() && len(out) < limit; it.Next() {
		v := it.Value()
		if len(v) < 1 {
			return nil, fmt.Errorf("storage: user chat %x: %w", it.Key(), errCorrupt)
		}
		uc := UserChat{Chat: ChatID(lastU64(it.Key())), Role: Role(v[0])}
		if len(v) >= 3 {
			uc.Kind = ChatKind(v[2])
		}
		out = append(out, uc)
	}
	return out, it.Error()
}
