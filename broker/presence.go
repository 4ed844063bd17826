package broker

import (
	"errors"
	"fmt"

	"github.com/gonets/gonets/storage"
)

// userChatsPage is how many of a user's chats a registration reads per
// store call.
const userChatsPage = 1000

// register adds s to the registry and, when it is its user's first
// session, joins the user to the chat index entry of every chat it is in.
// It returns the sessions s displaces.
//
// Coming online, going offline and the index updates that follow a
// membership commit are serialised per user (the registry shard's
// presence lock), and the user's chats are read after the user is
// registered: a commit either is in that read, or its update finds the
// user online and joins it. Either way the index holds exactly the
// committed chats of every online user.
func (b *Broker) register(s *Session) (evicted []*Session, err error) {
	sh := b.reg.shard(s.user)
	sh.presence.Lock()
	defer sh.presence.Unlock()
	ue, evicted, first := b.reg.add(s, b.opts.MaxSessionsPerUser, b.newLimiter)
	s.limiter = ue.limiter
	if !first {
		return evicted, nil
	}
	for after := storage.ChatID(0); ; {
		page, err := b.st.UserChats(s.user, after, userChatsPage)
		if err != nil {
			b.leaveAllLocked(s.user, ue)
			b.reg.remove(s, b.opts.Now())
			return nil, fmt.Errorf("broker: read the chats of user %d: %w", s.user, err)
		}
		for _, uc := range page {
			ue.chats = append(ue.chats, b.chats.join(uc.Chat, s.user, uc.Role, uc.Kind))
		}
		if len(page) < userChatsPage {
			return evicted, nil
		}
		after = page[len(page)-1].Chat
	}
}

// unregister removes s from the registry and, with its user's last
// session, the user from the chat index.
func (b *Broker) unregister(s *Session) {
	sh := b.reg.shard(s.user)
	sh.presence.Lock()
	defer sh.presence.Unlock()
	if ue := b.reg.remove(s, b.opts.Now()); ue != nil {
		b.leaveAllLocked(s.user, ue)
	}
}

// leaveAllLocked takes user out of every index entry it joined.
func (b *Broker) leaveAllLocked(user storage.UserID, ue *userEntry) {
	for _, e := range ue.chats {
		b.chats.leave(e, user)
	}
	ue.chats = nil
}

// memberJoined updates the index after a commit added user to chat: an
// online user becomes one of the chat's online members.
func (b *Broker) memberJoined(chat storage.ChatID, user storage.UserID, role storage.Role, kind storage.ChatKind) {
	b.memberChanged(chat, user, true, role, kind)
}

// memberLeft updates the index after a commit removed user from chat, or
// the store found user no longer in it.
func (b *Broker) memberLeft(chat storage.ChatID, user storage.UserID) {
	b.memberChanged(chat, user, false, 0, 0)
}

// memberChanged brings the index in line with user's membership of chat
// after a commit changed it. Two changes of one membership commit in one
// order and may come here in the other (an admin adds a user as the user
// leaves), so the index takes the membership the store holds now, read
// under the presence lock: the last update to run reads what the last
// commit wrote. What the caller committed (in, role) stands only when the
// store cannot be read.
func (b *Broker) memberChanged(chat storage.ChatID, user storage.UserID, in bool, role storage.Role, kind storage.ChatKind) {
	sh := b.reg.shard(user)
	sh.presence.Lock()
	defer sh.presence.Unlock()
	ue := b.reg.online(user)
	if ue == nil {
		return
	}
	switch m, err := b.st.Member(chat, user); {
	case err == nil:
		in, role = true, m.Role
	case errors.Is(err, storage.ErrNotMember), errors.Is(err, storage.ErrUnknownChat):
		in = false
	}
	if in {
		// kind may be 0 here (a caller that only saw a removal): the
		// access check reads it then.
		e := b.chats.join(chat, user, role, kind)
		for _, x := range ue.chats {
			if x == e {
				return // joined already (its role was updated)
			}
		}
		ue.chats = append(ue.chats, e)
		return
	}
	for i, e := range ue.chats {
		if e.id == chat {
			b.chats.leave(e, user)
			last := len(ue.chats) - 1
			ue.chats[i], ue.chats[last] = ue.chats[last], nil
			ue.chats = ue.chats[:last]
			return
		}
	}
}
