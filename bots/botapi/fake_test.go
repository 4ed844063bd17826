package botapi

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// fakeBackend is a Backend over fixed data that records each call as a
// line ("Send bot=1 chat=2 user=0 text=hi") and fails with err when set.
type fakeBackend struct {
	mu    sync.Mutex
	calls []string
	err   error // returned by every method but Authenticate when set

	// pollStarted is signalled when Updates starts waiting.
	pollStarted chan struct{}
	// pollOnce answers updates to a poll without a marker only; the
	// others wait for their timeout.
	pollOnce bool
	// hang makes Me wait until its context ends.
	hang    bool
	updates UpdateList
	subs    []Subscription
	failed  []int64
	next    int64
}

const (
	testToken = "tok-1"
	testBot   = int64(42)
)

func (f *fakeBackend) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	return f.err
}

// last returns the last call recorded.
func (f *fakeBackend) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeBackend) Authenticate(token string) (int64, error) {
	switch token {
	case testToken:
		return testBot, nil
	case "tok-2":
		return testBot + 1, nil
	case "tok-broken":
		return 0, fmt.Errorf("store down")
	}
	return 0, ErrUnknownToken
}

func (f *fakeBackend) Me(ctx context.Context, bot int64) (BotInfo, error) {
	u := "echo_bot"
	if f.hang {
		<-ctx.Done()
		return BotInfo{}, ctx.Err()
	}
	return BotInfo{User: User{UserID: bot, FirstName: "Echo", Name: "Echo", Username: &u, IsBot: true}}, f.record("Me bot=%d", bot)
}

func (f *fakeBackend) SetCommands(ctx context.Context, bot int64, cmds []BotCommand) ([]BotCommand, error) {
	names := []string{}
	for _, c := range cmds {
		names = append(names, c.Name)
	}
	return cmds, f.record("SetCommands bot=%d cmds=%v nil=%v", bot, names, cmds == nil)
}

func (f *fakeBackend) Chats(ctx context.Context, bot int64, marker int64, count int) ([]Chat, int64, error) {
	title := "Group"
	return []Chat{{ChatID: 7, Type: "chat", Status: "active", Title: &title}}, f.next, f.record("Chats bot=%d marker=%d count=%d", bot, marker, count)
}

func (f *fakeBackend) Chat(ctx context.Context, bot, chat int64) (Chat, error) {
	return Chat{ChatID: chat, Type: "chat", Status: "active"}, f.record("Chat bot=%d chat=%d", bot, chat)
}

func (f *fakeBackend) EditChat(ctx context.Context, bot, chat int64, title *string) (Chat, error) {
	return Chat{ChatID: chat, Type: "chat", Status: "active", Title: title}, f.record("EditChat bot=%d chat=%d title=%s", bot, chat, *title)
}

func (f *fakeBackend) Members(ctx context.Context, bot, chat int64, users []int64, marker int64, count int) ([]ChatMember, int64, error) {
	return []ChatMember{{User: User{UserID: 5}}}, f.next, f.record("Members bot=%d chat=%d users=%v marker=%d count=%d", bot, chat, users, marker, count)
}

func (f *fakeBackend) Admins(ctx context.Context, bot, chat int64) ([]ChatMember, error) {
	return nil, f.record("Admins bot=%d chat=%d", bot, chat)
}

func (f *fakeBackend) Membership(ctx context.Context, bot, chat int64) (ChatMember, error) {
	return ChatMember{User: User{UserID: bot, IsBot: true}, IsAdmin: true}, f.record("Membership bot=%d chat=%d", bot, chat)
}

func (f *fakeBackend) AddMembers(ctx context.Context, bot, chat int64, users []int64) ([]int64, error) {
	return f.failed, f.record("AddMembers bot=%d chat=%d users=%v", bot, chat, users)
}

func (f *fakeBackend) RemoveMember(ctx context.Context, bot, chat, user int64) error {
	return f.record("RemoveMember bot=%d chat=%d user=%d", bot, chat, user)
}

func (f *fakeBackend) Leave(ctx context.Context, bot, chat int64) error {
	return f.record("Leave bot=%d chat=%d", bot, chat)
}

func (f *fakeBackend) Action(ctx context.Context, bot, chat int64, action string) error {
	return f.record("Action bot=%d chat=%d action=%s", bot, chat, action)
}

func text(b NewMessageBody) string {
	if b.Text == nil {
		return "<nil>"
	}
	return *b.Text
}

func (f *fakeBackend) Send(ctx context.Context, bot, chat, user int64, body NewMessageBody) (Message, error) {
	m := Message{Recipient: Recipient{ChatID: max(chat, 99), ChatType: "chat"}, Timestamp: 1000,
		Body: MessageBody{Mid: "mid.7.1", Seq: 1, Text: text(body)}}
	return m, f.record("Send bot=%d chat=%d user=%d text=%s atts=%d", bot, chat, user, text(body), len(body.Attachments))
}

func (f *fakeBackend) Edit(ctx context.Context, bot int64, mid string, body NewMessageBody) error {
	return f.record("Edit bot=%d mid=%s text=%s", bot, mid, text(body))
}

func (f *fakeBackend) Delete(ctx context.Context, bot int64, mid string) error {
	return f.record("Delete bot=%d mid=%s", bot, mid)
}

func (f *fakeBackend) Message(ctx context.Context, bot int64, mid string) (Message, error) {
	return Message{Body: MessageBody{Mid: mid}}, f.record("Message bot=%d mid=%s", bot, mid)
}

func (f *fakeBackend) Messages(ctx context.Context, bot, chat int64, mids []string, from, to int64, count int) ([]Message, error) {
	return nil, f.record("Messages bot=%d chat=%d mids=%v from=%d to=%d count=%d", bot, chat, mids, from, to, count)
}

func (f *fakeBackend) Answer(ctx context.Context, bot int64, callbackID string, body *NewMessageBody, notification string) error {
	t := "-"
	if body != nil {
		t = text(*body)
	}
	return f.record("Answer bot=%d id=%s text=%s note=%s", bot, callbackID, t, notification)
}

func (f *fakeBackend) NewUpload(ctx context.Context, bot int64, typ string) (string, string, error) {
	return "https://node.example/media/up/abc", "upl-abc", f.record("NewUpload bot=%d type=%s", bot, typ)
}

func (f *fakeBackend) Updates(ctx context.Context, bot int64, marker int64, limit int, types []string, timeout time.Duration) (UpdateList, error) {
	if err := f.record("Updates bot=%d marker=%d limit=%d types=%v timeout=%s", bot, marker, limit, types, timeout); err != nil {
		return UpdateList{}, err
	}
	if f.pollStarted != nil {
		f.pollStarted <- struct{}{}
		<-ctx.Done()
		return UpdateList{}, ctx.Err()
	}
	if f.pollOnce && marker != 0 {
		select {
		case <-ctx.Done():
			return UpdateList{}, ctx.Err()
		case <-time.After(timeout):
			return UpdateList{Marker: marker}, nil
		}
	}
	return f.updates, nil
}

func (f *fakeBackend) Subscriptions(ctx context.Context, bot int64) ([]Subscription, error) {
	return f.subs, f.record("Subscriptions bot=%d", bot)
}

func (f *fakeBackend) Subscribe(ctx context.Context, bot int64, url, secret string, types []string) error {
	return f.record("Subscribe bot=%d url=%s secret=%s types=%v", bot, url, secret, types)
}

func (f *fakeBackend) Unsubscribe(ctx context.Context, bot int64, url string) error {
	return f.record("Unsubscribe bot=%d url=%s", bot, url)
}
