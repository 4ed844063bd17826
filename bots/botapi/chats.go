package botapi

import (
	"context"
)

// The endpoints of the bot itself and of its chats.

// pathID returns the path value name as a positive integer.
func pathID(c *call, name string) (int64, error) {
	return parseID(name, c.r.PathValue(name))
}

// me serves GET /me.
func (s *Server) me(ctx context.Context, c *call) (any, error) {
	return s.o.Backend.Me(ctx, c.bot)
}

// setCommands serves PATCH /me/commands.
func (s *Server) setCommands(ctx context.Context, c *call) (any, error) {
	cmds, err := decodeCommands(c.body)
	if err != nil {
		return nil, err
	}
	cmds, err = s.o.Backend.SetCommands(ctx, c.bot, cmds)
	if err != nil {
		return nil, err
	}
	return commandsBody{Commands: nonNil(cmds)}, nil
}

// chats serves GET /chats?marker&count.
func (s *Server) chats(ctx context.Context, c *call) (any, error) {
	q, err := parseQuery(c.r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	p, err := parsePageQuery(q, defChatsCount)
	if err != nil {
		return nil, err
	}
	chats, next, err := s.o.Backend.Chats(ctx, c.bot, p.Marker, p.Count)
	if err != nil {
		return nil, err
	}
	return ChatList{Chats: nonNil(chats), Marker: marker(next)}, nil
}

// chat serves GET /chats/{chat_id}.
func (s *Server) chat(ctx context.Context, c *call) (any, error) {
	chat, err := pathID(c, "chat_id")
	if err != nil {
		return nil, err
	}
	return s.o.Backend.Chat(ctx, c.bot, chat)
}

// editChat serves PATCH /chats/{chat_id} {title}.
func (s *Server) editChat(ctx context.Context, c *call) (any, error) {
	chat, err := pathID(c, "chat_id")
	if err != nil {
		return nil, err
	}
	title, err := decodeChatPatch(c.body)
	if err != nil {
		return nil, err
	}
	return s.o.Backend.EditChat(ctx, c.bot, chat, &title)
}

// action serves POST /chats/{chat_id}/actions {action}.
func (s *Server) action(ctx context.Context, c *call) (any, error) {
	chat, err := pathID(c, "chat_id")
	if err != nil {
		return nil, err
	}
	a, err := decodeAction(c.body)
	if err != nil {
		return nil, err
	}
	return done(s.o.Backend.Action(ctx, c.bot, chat, a))
}

// members serves GET /chats/{chat_id}/members?user_ids&marker&count.
func (s *Server) members(ctx context.Context, c *call) (any, error) {
	chat, err := pathID(c, "chat_id")
	if err != nil {
		return nil, err
	}
	q, err := parseMembersQuery(c.r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	ms, next, err := s.o.Backend.Members(ctx, c.bot, chat, q.Users, q.Marker, q.Count)
	if err != nil {
		return nil, err
	}
	return ChatMembersList{Members: nonNil(ms), Marker: marker(next)}, nil
}

// addMembers serves POST /chats/{chat_id}/members {user_ids}.
func (s *Server) addMembers(ctx context.Context, c *call) (any, error) {
	chat, err := pathID(c, "chat_id")
	if err != nil {
		return nil, err
	}
	users, err := decodeUserIDs(c.body)
	if err != nil {
		return nil, err
	}
	failed, err := s.o.Backend.AddMembers(ctx, c.bot, chat, users)
	if err != nil {
		return nil, err
	}
	res := AddMembersResult{Success: true, FailedUserIDs: failed}
	if len(failed) > 0 {
		res.Message = "some users could not be added"
	}
	return res, nil
}

// removeMember serves DELETE /chats/{chat_id}/members?user_id&block.
// The node does not block users from chats: block is checked and
// otherwise ignored.
func (s *Server) removeMember(ctx context.Context, c *call) (any, error) {
	chat, err := pathID(c, "chat_id")
	if err != nil {
		return nil, err
	}
	q, err := parseQuery(c.r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	user, err := queryID(q, "user_id")
	if err != nil {
		return nil, err
	}
	if user == 0 {
		return nil, badRequest("user_id is required")
	}
	if _, err := queryBool(q, "block"); err != nil {
		return nil, err
	}
	return done(s.o.Backend.RemoveMember(ctx, c.bot, chat, user))
}

// membership serves GET /chats/{chat_id}/members/me.
func (s *Server) membership(ctx context.Context, c *call) (any, error) {
	chat, err := pathID(c, "chat_id")
	if err != nil {
		return nil, err
	}
	return s.o.Backend.Membership(ctx, c.bot, chat)
}

// leave serves DELETE /chats/{chat_id}/members/me.
func (s *Server) leave(ctx context.Context, c *call) (any, error) {
	chat, err := pathID(c, "chat_id")
	if err != nil {
		return nil, err
	}
	return done(s.o.Backend.Leave(ctx, c.bot, chat))
}

// admins serves GET /chats/{chat_id}/members/admins.
func (s *Server) admins(ctx context.Context, c *call) (any, error) {
	chat, err := pathID(c, "chat_id")
	if err != nil {
		return nil, err
	}
	ms, err := s.o.Backend.Admins(ctx, c.bot, chat)
	if err != nil {
		return nil, err
	}
	return ChatMembersList{Members: nonNil(ms)}, nil
}

// done is an action's answer: {"success":true}, or err.
func done(err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return SimpleResult{Success: true}, nil
}

// nonNil returns s, or an empty slice for nil, so that lists are
// written as [] and never null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// marker returns a next-page marker as JSON wants it: null for 0.
func marker(next int64) *int64 {
	if next == 0 {
		return nil
	}
	return &next
}
