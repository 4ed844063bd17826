package botapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Backend is what the Bot API serves: the node's bots, chats, messages
// and update queues. The node implements it over its broker and store
// (package bots); tests use fakes. Every method gets an authenticated
// bot (from Authenticate) and returns an *APIError for what the bot did
// wrong; any other error is the node's and answered 500.
type Backend interface {
	// Authenticate returns the bot user a token belongs to; an unknown or
	// revoked token is ErrUnknownToken.
	Authenticate(token string) (bot int64, err error)

	Me(ctx context.Context, bot int64) (BotInfo, error)
	// SetCommands replaces the bot's commands (nil deletes them) and
	// returns them.
	SetCommands(ctx context.Context, bot int64, cmds []BotCommand) ([]BotCommand, error)

	// Chats lists the bot's chats after marker (0: from the first), at
	// most count; next is the marker of the following page, 0 at the end.
	Chats(ctx context.Context, bot int64, marker int64, count int) (chats []Chat, next int64, err error)
	Chat(ctx context.Context, bot, chat int64) (Chat, error)
	// EditChat changes a chat's title.
	EditChat(ctx context.Context, bot, chat int64, title *string) (Chat, error)
	// Members lists a chat's members: those in users when it is not
	// empty, else after marker, at most count.
	Members(ctx context.Context, bot, chat int64, users []int64, marker int64, count int) (members []ChatMember, next int64, err error)
	Admins(ctx context.Context, bot, chat int64) ([]ChatMember, error)
	Membership(ctx context.Context, bot, chat int64) (ChatMember, error)
	// AddMembers adds users and returns those it could not add.
	AddMembers(ctx context.Context, bot, chat int64, users []int64) (failed []int64, err error)
	RemoveMember(ctx context.Context, bot, chat, user int64) error
	Leave(ctx context.Context, bot, chat int64) error
	// Action shows action ("typing_on", "sending_photo", ...) to the chat.
	Action(ctx context.Context, bot, chat int64, action string) error

	// Send sends body to chat, or to the direct chat with user when chat
	// is 0, and returns the message as stored. An attachment whose upload
	// is not complete is ErrAttachmentNotReady (the SDK retries).
	Send(ctx context.Context, bot, chat, user int64, body NewMessageBody) (Message, error)
	// Edit replaces the bot's message mid.
	Edit(ctx context.Context, bot int64, mid string, body NewMessageBody) error
	Delete(ctx context.Context, bot int64, mid string) error
	Message(ctx context.Context, bot int64, mid string) (Message, error)
	// Messages reads chat's messages: those in mids when it is not empty,
	// else newest first between from and to (Unix ms, 0: open), at most
	// count.
	Messages(ctx context.Context, bot, chat int64, mids []string, from, to int64, count int) ([]Message, error)
	// Answer answers callback id with a notification to its presser
	// and/or a new body for the message the button was on.
	Answer(ctx context.Context, bot int64, callbackID string, body *NewMessageBody, notification string) error

	// NewUpload starts an upload of typ ("image", "video", "audio",
	// "file"): the URL the bot's SDK posts the file to (no Authorization
	// header: the URL is the credential) and the token its message then
	// names.
	NewUpload(ctx context.Context, bot int64, typ string) (url, token string, err error)

	// Updates returns the bot's updates after marker (0: after the last
	// the bot acknowledged), of types (empty: all), at most limit,
	// waiting up to timeout for the first. Asking with marker M
	// acknowledges every update before M; the answer's Marker is never
	// 0. Updates not acknowledged are delivered again.
	Updates(ctx context.Context, bot int64, marker int64, limit int, types []string, timeout time.Duration) (UpdateList, error)

	Subscriptions(ctx context.Context, bot int64) ([]Subscription, error)
	// Subscribe adds (or replaces, for the same URL) a webhook.
	Subscribe(ctx context.Context, bot int64, url, secret string, types []string) error
	Unsubscribe(ctx context.Context, bot int64, url string) error
}

// APIError is an error the Bot API answers with its HTTP status and MAX's
// error body {"code","message"}.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// Is matches errors of the same status and code, so that errors.Is works
// with the sentinels below whatever the message.
func (e *APIError) Is(target error) bool {
	t, ok := target.(*APIError)
	return ok && t.Status == e.Status && t.Code == e.Code
}

// Errorf returns an APIError like base with a message.
func Errorf(base *APIError, format string, args ...any) *APIError {
	return &APIError{Status: base.Status, Code: base.Code, Message: fmt.Sprintf(format, args...)}
}

// The errors the Bot API answers. Codes follow MAX's where it has one.
var (
	ErrUnknownToken       = &APIError{http.StatusUnauthorized, "verify.token", "Invalid access_token"}
	ErrBadRequest         = &APIError{http.StatusBadRequest, "proto.payload", "bad request"}
	ErrBadJSON            = &APIError{http.StatusBadRequest, "proto.payload", "malformed JSON"}
	ErrTooLong            = &APIError{http.StatusBadRequest, "text.too.long", "text longer than 4000 characters"}
	ErrNotFound           = &APIError{http.StatusNotFound, "not.found", "not found"}
	ErrChatNotFound       = &APIError{http.StatusNotFound, "chat.not.found", "chat not found"}
	ErrForbidden          = &APIError{http.StatusForbidden, "chat.denied", "the bot is not allowed in this chat"}
	ErrMethodNotAllowed   = &APIError{http.StatusMethodNotAllowed, "method.not.allowed", "method not allowed"}
	ErrAttachmentNotReady = &APIError{http.StatusBadRequest, "attachment.not.ready", "the attachment is not processed yet"}
	ErrTooManyRequests    = &APIError{http.StatusTooManyRequests, "too.many.requests", "too many requests"}
	ErrTooLarge           = &APIError{http.StatusRequestEntityTooLarge, "too.large", "request too large"}
	ErrUnavailable        = &APIError{http.StatusServiceUnavailable, "service.unavailable", "the node is shutting down"}
	ErrWebhookURL         = &APIError{http.StatusBadRequest, "webhook.url", "webhook URL refused"}
)

// AsAPIError returns err's APIError, or nil when err is none.
func AsAPIError(err error) *APIError {
	var e *APIError
	if errors.As(err, &e) {
		return e
	}
	return nil
}
