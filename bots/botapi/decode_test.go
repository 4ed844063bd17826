package botapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// wantBadRequest checks that err is a 400 APIError.
func wantBadRequest(t *testing.T, err error) {
	t.Helper()
	e := AsAPIError(err)
	if e == nil || e.Status != http.StatusBadRequest || e.Code == "" || e.Message == "" {
		t.Fatalf("error %v (%T) is not a 400 APIError", err, err)
	}
}

// keyboard returns an inline keyboard attachment of rows × cols callback
// buttons as JSON.
func keyboard(rows, cols int) string {
	row := "[" + strings.TrimSuffix(strings.Repeat(`{"type":"callback","text":"b","payload":"p"},`, cols), ",") + "]"
	return `{"type":"inline_keyboard","payload":{"buttons":[` + strings.TrimSuffix(strings.Repeat(row+",", rows), ",") + `]}}`
}

func TestDecodeNewMessageBody(t *testing.T) {
	ok := []string{
		`{"text":"hi"}`,
		`{"text":"` + strings.Repeat("ё", maxText) + `"}`,
		`{"text":"hi","format":"html","notify":true,"link":{"type":"reply","mid":"mid.7.1"}}`,
		`{"text":"hi","format":""}`,
		`{"attachments":[{"type":"image","payload":{"token":"t1"}}]}`,
		`{"attachments":[{"type":"image","payload":{"url":"https://example.org/a.png"}}]}`,
		`{"attachments":[{"type":"image","payload":{"photos":{"1":{"token":"t"}}}}]}`,
		`{"attachments":[{"type":"file","payload":{"token":"t"}},{"type":"video","payload":{"token":"t"}},{"type":"audio","payload":{"token":"t"}}]}`,
		`{"attachments":[` + keyboard(30, 7) + `]}`,
		`{"text":"x","attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"link","text":"l","url":"http://example.org"},{"type":"request_contact","text":"c"},{"type":"message","text":"m"},{"type":"open_app","text":"a","payload":"start","web_app":"bot","contact_id":5}]]}}]}`,
		`{"text":"x","attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"callback","text":"c","payload":"` + strings.Repeat("p", maxButtonPayload) + `"}]]}}]}`,
	}
	for _, b := range ok {
		if _, err := decodeNewMessageBody([]byte(b), true); err != nil {
			t.Errorf("%.80s: %v", b, err)
		}
	}
	bad := []string{
		``, ` `, `null`, `[]`, `{}`, `{"text":""}`, `{"text":"x"}x`, `{"text":"x",}`, `{"Text2":"x"}`,
		`{"text":"x","link":{"type":"quote","mid":"m"}}`,
		`{"text":"x","link":{"type":"reply","mid":""}}`,
		`{"text":"x","format":"HTML"}`,
		`{"attachments":[{"payload":{"token":"t"}}]}`,
		`{"attachments":[{"type":"location","payload":{}}]}`,
		`{"attachments":[{"type":"image","payload":{}}]}`,
		`{"attachments":[{"type":"image","payload":{"token":"t","url":"https://example.org/a.png"}}]}`,
		`{"attachments":[{"type":"image","payload":{"url":"ftp://example.org/a.png"}}]}`,
		`{"attachments":[{"type":"image","payload":{"token":"a b"}}]}`,
		`{"attachments":[{"type":"file","payload":{}}]}`,
		`{"attachments":[{"type":"file","payload":{"token":"t","url":"https://example.org"}}]}`,
		`{"attachments":[` + keyboard(31, 1) + `]}`,
		`{"attachments":[` + keyboard(1, 8) + `]}`,
		`{"attachments":[` + keyboard(1, 1) + `,` + keyboard(1, 1) + `]}`,
		`{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[]}}]}`,
		`{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[]]}}]}`,
		`{"attachments":[{"type":"inline_keyboard","payload":{"token":"t","buttons":[[{"type":"message","text":"m"}]]}}]}`,
		`{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"callback","text":"c"}]]}}]}`,
		`{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"callback","text":"","payload":"p"}]]}}]}`,
		`{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"callback","text":"c","payload":"p","intent":"angry"}]]}}]}`,
		`{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"message","text":"c","intent":"positive"}]]}}]}`,
		`{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"link","text":"l","url":"https://"}]]}}]}`,
		`{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"link","text":"l","url":"https://u:p@example.org"}]]}}]}`,
		`{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"message","text":"m","url":"https://example.org"}]]}}]}`,
		`{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"request_geo_location","text":"g"}]]}}]}`,
		`{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"open_app","text":"a","payload":"` + strings.Repeat("s", maxStartParam+1) + `"}]]}}]}`,
		`{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"callback","text":"` + strings.Repeat("t", maxButtonText+1) + `","payload":"p"}]]}}]}`,
		`{"attachments":[` + strings.Repeat(`{"type":"file","payload":{"token":"t"}},`, maxAttachments) + `{"type":"file","payload":{"token":"t"}}]}`,
	}
	for _, b := range bad {
		_, err := decodeNewMessageBody([]byte(b), true)
		if err == nil {
			t.Errorf("%.200s: accepted", b)
			continue
		}
		wantBadRequest(t, err)
	}
	// 30 rows of 7 is 210 buttons, the most; an edit may be empty.
	if _, err := decodeNewMessageBody([]byte(`{}`), false); err != nil {
		t.Errorf("empty edit: %v", err)
	}
	_, err := decodeNewMessageBody([]byte(`{"text":"`+strings.Repeat("a", maxText+1)+`"}`), true)
	if e := AsAPIError(err); e == nil || e.Code != "text.too.long" {
		t.Errorf("long text: %v", err)
	}
}

func TestDecodeSubscription(t *testing.T) {
	s, err := decodeSubscription([]byte(`{"url":"https://bot.example/hook","secret":"abc_DEF-9","update_types":["message_created","message_created","bot_started"]}`))
	if err != nil || s.URL != "https://bot.example/hook" || s.Secret != "abc_DEF-9" || len(s.UpdateTypes) != 2 {
		t.Errorf("got %+v, %v", s, err)
	}
	if s, err := decodeSubscription([]byte(`{"url":"https://bot.example/hook","update_types":[]}`)); err != nil || s.UpdateTypes != nil {
		t.Errorf("no types: %+v, %v", s, err)
	}
	for _, b := range []string{
		`{}`, `{"url":""}`, `{"url":"http://bot.example/"}`, `{"url":"https:///x"}`, `{"url":"bot.example"}`,
		`{"url":"https://bot.example/","secret":"abc"}`, `{"url":"https://bot.example/","secret":"abc\r\nX: y"}`,
		`{"url":"https://bot.example/","secret":"` + strings.Repeat("s", maxSecret+1) + `"}`,
		`{"url":"https://bot.example/","update_types":["Bad"]}`, `{"url":"https://bot.example/","update_types":[""]}`,
		`{"url":"https://bot.example/","extra":1}`,
	} {
		if _, err := decodeSubscription([]byte(b)); AsAPIError(err) == nil || AsAPIError(err).Status != 400 {
			t.Errorf("%s: %v", b, err)
		}
	}
}

func TestDecodeOthers(t *testing.T) {
	if cmds, err := decodeCommands([]byte(`{"commands":[{"name":"start"}]}`)); err != nil || len(cmds) != 1 {
		t.Errorf("commands: %v %v", cmds, err)
	}
	if _, err := decodeCommands([]byte(`{"commands":[{"name":"a"},{"name":"a"}]}`)); err == nil {
		t.Error("repeated command accepted")
	}
	if a, err := decodeAction([]byte(`{"action":"sending_file"}`)); err != nil || a != "sending_file" {
		t.Errorf("action: %q %v", a, err)
	}
	if ids, err := decodeUserIDs([]byte(`{"user_ids":[1,2,1]}`)); err != nil || len(ids) != 2 {
		t.Errorf("user ids: %v %v", ids, err)
	}
	if _, err := decodeUserIDs([]byte(`{"user_ids":[1.5]}`)); err == nil {
		t.Error("a fractional id accepted")
	}
	if title, err := decodeChatPatch([]byte(`{"title":"Книжный клуб"}`)); err != nil || title != "Книжный клуб" {
		t.Errorf("title: %q %v", title, err)
	}
	if _, err := decodeCallbackAnswer([]byte(`{"notification":"` + strings.Repeat("n", maxNotification+1) + `"}`)); AsAPIError(err) == nil {
		t.Error("a long notification accepted")
	}
}

// FuzzDecodeNewMessageBody checks that whatever a bot sends is accepted
// within the limits or refused with a 400, never a panic.
func FuzzDecodeNewMessageBody(f *testing.F) {
	for _, s := range []string{
		`{"text":"hi"}`, `{"text":"hi","format":"markdown","notify":false,"link":{"type":"reply","mid":"mid.1.2"}}`,
		`{"attachments":[{"type":"image","payload":{"photos":{"1":{"token":"t"}}}}]}`,
		`{"attachments":[{"type":"file","payload":{"token":"t"}}]}`,
		`{"attachments":[` + keyboard(2, 3) + `]}`,
		`{"attachments":[{"type":"inline_keyboard","payload":{"buttons":[[{"type":"link","text":"l","url":"https://example.org"}]]}}]}`,
		`{"text":null}`, `{"text":"\u0000"}`, `{"text":"\xff"}`, `[[[[[[`, `{"attachments":null}`,
	} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, b []byte, send bool) {
		m, err := decodeNewMessageBody(b, send)
		if err != nil {
			wantBadRequest(t, err)
			return
		}
		if m.Text != nil && utf8.RuneCountInString(*m.Text) > maxText {
			t.Fatalf("text of %d characters accepted", utf8.RuneCountInString(*m.Text))
		}
		for _, a := range m.Attachments {
			if a.Type == "inline_keyboard" {
				n := 0
				for _, row := range a.Payload.Buttons {
					n += len(row)
				}
				if len(a.Payload.Buttons) > maxRows || n > maxButtons {
					t.Fatalf("keyboard of %d rows, %d buttons accepted", len(a.Payload.Buttons), n)
				}
			}
		}
		// What was accepted is accepted again as the node writes it.
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeNewMessageBody(out, send); err != nil {
			t.Fatalf("re-encoded %s refused: %v", out, err)
		}
	})
}

// FuzzDecodeSubscription checks POST /subscriptions' decoder.
func FuzzDecodeSubscription(f *testing.F) {
	for _, s := range []string{
		`{"url":"https://bot.example/hook","secret":"s3cr3t","update_types":["message_created"]}`,
		`{"url":"https://bot.example/hook"}`, `{"url":"http://x"}`, `{"url":"https://[::1]:8443/h","version":"0.0.1"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSubscription(b)
		if err != nil {
			wantBadRequest(t, err)
			return
		}
		if !strings.HasPrefix(strings.ToLower(s.URL), "https://") || (s.Secret != "" && !validSecret(s.Secret)) {
			t.Fatalf("accepted %+v", s)
		}
		if strings.ContainsAny(s.Secret, "\r\n: ") {
			t.Fatalf("secret %q cannot go in a header", s.Secret)
		}
		for _, typ := range s.UpdateTypes {
			if !validUpdateType(typ) {
				t.Fatalf("type %q accepted", typ)
			}
		}
	})
}
