package botapi

import (
	"testing"
	"time"
)

func TestParseUpdatesQuery(t *testing.T) {
	u, err := parseUpdatesQuery("marker=5&limit=1000&timeout=90&types=a,b,a", 30*time.Second, 90*time.Second)
	if err != nil || u.Marker != 5 || u.Limit != 1000 || u.Timeout != 90*time.Second || len(u.Types) != 2 {
		t.Errorf("got %+v, %v", u, err)
	}
	u, err = parseUpdatesQuery("", 30*time.Second, 90*time.Second)
	if err != nil || u.Marker != 0 || u.Limit != 100 || u.Timeout != 30*time.Second || u.Types != nil {
		t.Errorf("defaults: %+v, %v", u, err)
	}
	for _, raw := range []string{"limit=0", "limit=-1", "limit=+5", "timeout=-1", "timeout=91", "marker=-1", "types=,", "types=a,,b", "marker=1&marker=2", "limit=1e3", "%"} {
		if _, err := parseUpdatesQuery(raw, 30*time.Second, 90*time.Second); err == nil {
			t.Errorf("%q accepted", raw)
		}
	}
}

func TestParseMessagesQuery(t *testing.T) {
	m, err := parseMessagesQuery("chat_id=7&message_ids=mid.1,mid.2,mid.1&from=1&to=2&count=100")
	if err != nil || m.Chat != 7 || len(m.Mids) != 2 || m.From != 1 || m.To != 2 || m.Count != 100 {
		t.Errorf("got %+v, %v", m, err)
	}
	for _, raw := range []string{"", "count=5", "chat_id=7&count=0", "chat_id=7&from=-1", "chat_id=-7", "message_ids=a%20b"} {
		if _, err := parseMessagesQuery(raw); err == nil {
			t.Errorf("%q accepted", raw)
		}
	}
}

func TestParseRecipientQuery(t *testing.T) {
	if r, err := parseRecipientQuery("user_id=5&disable_link_preview=true"); err != nil || r.User != 5 || r.Chat != 0 || !r.DisableLinkPreview {
		t.Errorf("got %+v, %v", r, err)
	}
	for _, raw := range []string{"", "chat_id=1&user_id=2", "chat_id=x", "user_id=0", "chat_id=1&disable_link_preview=yes"} {
		if _, err := parseRecipientQuery(raw); err == nil {
			t.Errorf("%q accepted", raw)
		}
	}
}

// FuzzQueryUpdates checks GET /updates' query parser.
func FuzzQueryUpdates(f *testing.F) {
	for _, s := range []string{"", "marker=5&limit=10&timeout=0&types=message_created,bot_started", "limit=1001", "timeout=90", "types=%2C", "marker=9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := parseUpdatesQuery(raw, 30*time.Second, 90*time.Second)
		if err != nil {
			wantBadRequest(t, err)
			return
		}
		if u.Marker < 0 || u.Limit < 1 || u.Limit > maxUpdatesLimit || u.Timeout < 0 || u.Timeout > 90*time.Second || len(u.Types) > maxUpdateTypes {
			t.Fatalf("accepted %+v", u)
		}
		for _, typ := range u.Types {
			if !validUpdateType(typ) {
				t.Fatalf("type %q accepted", typ)
			}
		}
	})
}

// FuzzQueryMessages checks GET /messages' query parser.
func FuzzQueryMessages(f *testing.F) {
	for _, s := range []string{"chat_id=7", "message_ids=mid.1,mid.2", "chat_id=7&from=1&to=2&count=3", "chat_id=0", "count=101"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		m, err := parseMessagesQuery(raw)
		if err != nil {
			wantBadRequest(t, err)
			return
		}
		if m.Chat < 0 || (m.Chat == 0 && len(m.Mids) == 0) || m.Count < 1 || m.Count > maxCount || m.From < 0 || m.To < 0 || len(m.Mids) > maxMessageIDs {
			t.Fatalf("accepted %+v", m)
		}
		for _, mid := range m.Mids {
			if !validMid(mid) {
				t.Fatalf("mid %q accepted", mid)
			}
		}
	})
}

// FuzzQueryMembers checks GET /chats/{chat_id}/members' query parser.
func FuzzQueryMembers(f *testing.F) {
	for _, s := range []string{"", "user_ids=1,2", "marker=3&count=100", "user_ids=0", "count=0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		m, err := parseMembersQuery(raw)
		if err != nil {
			wantBadRequest(t, err)
			return
		}
		if m.Marker < 0 || m.Count < 1 || m.Count > maxCount || len(m.Users) > maxUserIDs {
			t.Fatalf("accepted %+v", m)
		}
		for _, id := range m.Users {
			if id <= 0 {
				t.Fatalf("user %d accepted", id)
			}
		}
	})
}

// FuzzQueryRecipient checks POST /messages' query parser.
func FuzzQueryRecipient(f *testing.F) {
	for _, s := range []string{"chat_id=7", "user_id=5&disable_link_preview=true", "chat_id=1&user_id=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r, err := parseRecipientQuery(raw)
		if err != nil {
			wantBadRequest(t, err)
			return
		}
		if r.Chat < 0 || r.User < 0 || (r.Chat == 0) == (r.User == 0) {
			t.Fatalf("accepted %+v", r)
		}
	})
}
