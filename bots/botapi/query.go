package botapi

import (
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Query parameters. The SDK drops falsy values (0, false, ""), so an
// absent number means its default; a parameter given twice is refused.

// parseQuery parses a raw query string, refusing a malformed one.
func parseQuery(raw string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, badRequest("malformed query string")
	}
	return q, nil
}

// queryOne returns the value of name ("" when absent), refusing it
// twice.
func queryOne(q url.Values, name string) (string, error) {
	v := q[name]
	switch len(v) {
	case 0:
		return "", nil
	case 1:
		return v[0], nil
	}
	return "", badRequest("%s is given twice", name)
}

// queryID returns name as a positive integer, 0 when absent.
func queryID(q url.Values, name string) (int64, error) {
	s, err := queryOne(q, name)
	if err != nil || s == "" {
		return 0, err
	}
	return parseID(name, s)
}

// parseID parses an id: a positive decimal integer.
func parseID(name, s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || s[0] == '+' {
		return 0, badRequest("%s must be a positive integer", name)
	}
	return id, nil
}

// queryInt returns name as an integer in [lo, hi], def when absent.
func queryInt(q url.Values, name string, def, lo, hi int64) (int64, error) {
	s, err := queryOne(q, name)
	if err != nil || s == "" {
		return def, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi || s[0] == '+' {
		return 0, badRequest("%s must be an integer from %d to %d", name, lo, hi)
	}
	return n, nil
}

// queryBool returns name as a boolean, false when absent.
func queryBool(q url.Values, name string) (bool, error) {
	s, err := queryOne(q, name)
	if err != nil || s == "" {
		return false, err
	}
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, badRequest("%s must be true or false", name)
}

// queryList returns name's comma-separated values, at most max, nil
// when absent; empty items are refused.
func queryList(q url.Values, name string, max int) ([]string, error) {
	s, err := queryOne(q, name)
	if err != nil || s == "" {
		return nil, err
	}
	if strings.Count(s, ",") >= max {
		return nil, badRequest("%s has at most %d items", name, max)
	}
	items := strings.Split(s, ",")
	for _, it := range items {
		if it == "" {
			return nil, badRequest("%s has an empty item", name)
		}
	}
	return items, nil
}

// queryIDs returns name's comma-separated ids, at most max, without
// repeats.
func queryIDs(q url.Values, name string, max int) ([]int64, error) {
	items, err := queryList(q, name, max)
	if err != nil || items == nil {
		return nil, err
	}
	ids := make([]int64, len(items))
	for i, it := range items {
		if ids[i], err = parseID(name, it); err != nil {
			return nil, err
		}
	}
	return dedupe(ids), nil
}

// queryMid returns name as a message id, "" when absent.
func queryMid(q url.Values, name string) (string, error) {
	s, err := queryOne(q, name)
	if err != nil || s == "" {
		return "", err
	}
	if !validMid(s) {
		return "", badRequest("%s is not a message id", name)
	}
	return s, nil
}

// Limits and defaults of the paged lists, MAX's.
const (
	maxCount          = 100  // items of a page of chats, members or messages
	defChatsCount     = 50   // GET /chats
	defMembersCount   = 20   // GET /chats/{chat_id}/members
	defMessagesCount  = 50   // GET /messages
	maxMessageIDs     = 100  // message_ids of GET /messages
	maxUpdatesLimit   = 1000 // GET /updates' limit
	defUpdatesLimit   = 100
	maxCallbackIDSize = 256 // bytes of a callback id
)

// pageQuery is the query of GET /chats: a marker (0: the first page)
// and a count.
type pageQuery struct {
	Marker int64
	Count  int
}

// parsePageQuery parses a paged list's marker and count.
func parsePageQuery(q url.Values, defCount int64) (pageQuery, error) {
	var p pageQuery
	marker, err := queryInt(q, "marker", 0, 0, 1<<62)
	if err != nil {
		return p, err
	}
	count, err := queryInt(q, "count", defCount, 1, maxCount)
	if err != nil {
		return p, err
	}
	return pageQuery{Marker: marker, Count: int(count)}, nil
}

// membersQuery is the query of GET /chats/{chat_id}/members.
type membersQuery struct {
	Users []int64
	pageQuery
}

// parseMembersQuery parses GET /chats/{chat_id}/members' query.
func parseMembersQuery(raw string) (membersQuery, error) {
	var m membersQuery
	q, err := parseQuery(raw)
	if err != nil {
		return m, err
	}
	if m.Users, err = queryIDs(q, "user_ids", maxUserIDs); err != nil {
		return m, err
	}
	m.pageQuery, err = parsePageQuery(q, defMembersCount)
	return m, err
}

// messagesQuery is the query of GET /messages: a chat's messages, by id
// or newest first between From and To (Unix ms, 0: open).
type messagesQuery struct {
	Chat     int64
	Mids     []string
	From, To int64
	Count    int
}

// parseMessagesQuery parses GET /messages' query.
func parseMessagesQuery(raw string) (messagesQuery, error) {
	var m messagesQuery
	q, err := parseQuery(raw)
	if err != nil {
		return m, err
	}
	if m.Chat, err = queryID(q, "chat_id"); err != nil {
		return m, err
	}
	mids, err := queryList(q, "message_ids", maxMessageIDs)
	if err != nil {
		return m, err
	}
	for _, mid := range mids {
		if !validMid(mid) {
			return m, badRequest("message_ids has an item that is not a message id")
		}
	}
	m.Mids = dedupe(mids)
	if m.Chat == 0 && len(m.Mids) == 0 {
		return m, badRequest("chat_id or message_ids is required")
	}
	if m.From, err = queryInt(q, "from", 0, 0, 1<<62); err != nil {
		return m, err
	}
	if m.To, err = queryInt(q, "to", 0, 0, 1<<62); err != nil {
		return m, err
	}
	count, err := queryInt(q, "count", defMessagesCount, 1, maxCount)
	m.Count = int(count)
	return m, err
}

// recipientQuery is the query of POST /messages: a chat or a user (their
// direct chat with the bot), one of the two.
type recipientQuery struct {
	Chat, User         int64
	DisableLinkPreview bool
}

// parseRecipientQuery parses POST /messages' query.
func parseRecipientQuery(raw string) (recipientQuery, error) {
	var r recipientQuery
	q, err := parseQuery(raw)
	if err != nil {
		return r, err
	}
	if r.Chat, err = queryID(q, "chat_id"); err != nil {
		return r, err
	}
	if r.User, err = queryID(q, "user_id"); err != nil {
		return r, err
	}
	if (r.Chat == 0) == (r.User == 0) {
		return r, badRequest("one of chat_id and user_id is required")
	}
	r.DisableLinkPreview, err = queryBool(q, "disable_link_preview")
	return r, err
}

// updatesQuery is the query of GET /updates.
type updatesQuery struct {
	Marker  int64
	Limit   int
	Timeout time.Duration
	Types   []string
}

// parseUpdatesQuery parses GET /updates' query: marker (absent: after
// the last acknowledged), limit (1 to 1000, default 100), timeout in
// seconds (0 to maxTimeout, default def) and types.
func parseUpdatesQuery(raw string, def, maxTimeout time.Duration) (updatesQuery, error) {
	var u updatesQuery
	q, err := parseQuery(raw)
	if err != nil {
		return u, err
	}
	if u.Marker, err = queryInt(q, "marker", 0, 0, 1<<62); err != nil {
		return u, err
	}
	limit, err := queryInt(q, "limit", defUpdatesLimit, 1, maxUpdatesLimit)
	if err != nil {
		return u, err
	}
	u.Limit = int(limit)
	secs, err := queryInt(q, "timeout", -1, 0, int64(maxTimeout/time.Second))
	if err != nil {
		return u, err
	}
	u.Timeout = def
	if secs >= 0 {
		u.Timeout = time.Duration(secs) * time.Second
	}
	types, err := queryList(q, "types", maxUpdateTypes)
	if err != nil {
		return u, err
	}
	u.Types, err = checkUpdateTypes(types)
	return u, err
}
