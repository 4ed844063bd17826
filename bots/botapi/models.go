package botapi

import "encoding/json"

// The JSON models of MAX's Bot API, as its official SDK
// (@maxhub/max-bot-api) sends and reads them (docs/research/max-bot-api.md).
// Times are Unix milliseconds. Fields the node has no value for are
// omitted or null as MAX sends them.

// User is a person or a bot.
type User struct {
	UserID           int64   `json:"user_id"`
	FirstName        string  `json:"first_name"`
	LastName         *string `json:"last_name,omitempty"`
	Name             string  `json:"name"`
	Username         *string `json:"username"`
	IsBot            bool    `json:"is_bot"`
	LastActivityTime int64   `json:"last_activity_time"`
}

// BotInfo is GET /me's answer: the bot as a User with its commands.
type BotInfo struct {
	User
	Description *string      `json:"description,omitempty"`
	Commands    []BotCommand `json:"commands,omitempty"`
}

// BotCommand is one command of a bot's menu.
type BotCommand struct {
	Name        string  `json:"name"`
	Description *string `json:"description,omitempty"`
}

// Chat is a chat the bot is in. Type is "dialog", "chat" or "channel";
// Status "active", "removed", "left" or "closed".
type Chat struct {
	ChatID            int64   `json:"chat_id"`
	Type              string  `json:"type"`
	Status            string  `json:"status"`
	Title             *string `json:"title"`
	Icon              *Image  `json:"icon"`
	LastEventTime     int64   `json:"last_event_time"`
	ParticipantsCount int     `json:"participants_count"`
	OwnerID           *int64  `json:"owner_id,omitempty"`
	IsPublic          bool    `json:"is_public"`
	Link              *string `json:"link,omitempty"`
	Description       *string `json:"description,omitempty"`
	DialogWithUser    *User   `json:"dialog_with_user,omitempty"`
	MessagesCount     *int    `json:"messages_count,omitempty"`
}

// Image is an icon's URL.
type Image struct {
	URL string `json:"url"`
}

// ChatMember is a member of a chat.
type ChatMember struct {
	User
	LastAccessTime int64    `json:"last_access_time"`
	IsOwner        bool     `json:"is_owner"`
	IsAdmin        bool     `json:"is_admin"`
	JoinTime       int64    `json:"join_time"`
	Permissions    []string `json:"permissions"`
}

// Recipient is where a message was sent. ChatType is "dialog", "chat"
// or "channel". A dialog's recipient carries chat_id too: the SDK's
// ctx.reply answers to it.
type Recipient struct {
	ChatID   int64  `json:"chat_id"`
	ChatType string `json:"chat_type"`
	UserID   *int64 `json:"user_id"`
}

// Message is a message as the Bot API shows it.
type Message struct {
	Sender    *User        `json:"sender,omitempty"`
	Recipient Recipient    `json:"recipient"`
	Timestamp int64        `json:"timestamp"`
	Link      *LinkedMsg   `json:"link,omitempty"`
	Body      MessageBody  `json:"body"`
	Stat      *MessageStat `json:"stat,omitempty"`
}

// LinkedMsg is the message a message replies to or forwards.
type LinkedMsg struct {
	Type    string      `json:"type"`
	Sender  *User       `json:"sender,omitempty"`
	ChatID  int64       `json:"chat_id,omitempty"`
	Message MessageBody `json:"message"`
}

// MessageStat counts a channel post's views.
type MessageStat struct {
	Views int `json:"views"`
}

// MessageBody is a message's content. Mid names the message across the
// API ("mid.<chat>.<seq>", see MessageID); Seq is its position in its
// chat. Text is "" rather than null: the SDK's command matchers need a
// string.
type MessageBody struct {
	Mid         string       `json:"mid"`
	Seq         int64        `json:"seq"`
	Text        string       `json:"text"`
	Attachments []Attachment `json:"attachments"`
	Markup      []Markup     `json:"markup,omitempty"`
}

// Markup is one span of formatted text.
type Markup struct {
	Type   string `json:"type"`
	From   int    `json:"from"`
	Length int    `json:"length"`
	URL    string `json:"url,omitempty"`
	UserID int64  `json:"user_id,omitempty"`
}

// Attachment is an attachment as messages carry it: Type is "image",
// "video", "audio", "file" or "inline_keyboard". Payload holds, for
// files, url and token (and photo_id for images); for a keyboard, the
// buttons.
type Attachment struct {
	Type     string            `json:"type"`
	Payload  AttachmentPayload `json:"payload"`
	Filename string            `json:"filename,omitempty"`
	Size     int64             `json:"size,omitempty"`
	Width    int               `json:"width,omitempty"`
	Height   int               `json:"height,omitempty"`
	Duration int               `json:"duration,omitempty"`
}

// AttachmentPayload is an Attachment's payload.
type AttachmentPayload struct {
	PhotoID int64      `json:"photo_id,omitempty"`
	Token   string     `json:"token,omitempty"`
	URL     string     `json:"url,omitempty"`
	Buttons [][]Button `json:"buttons,omitempty"`
}

// Button is a keyboard button: Type "callback" (Payload), "link" (URL),
// "request_contact", "open_app" (Payload as its start parameter) or
// "message". Intent ("default", "positive", "negative") colours a
// callback button; WebApp and ContactID are what MAX's SDK may send with
// open_app (the bot whose mini-app opens).
type Button struct {
	Type      string `json:"type"`
	Text      string `json:"text"`
	Payload   string `json:"payload,omitempty"`
	URL       string `json:"url,omitempty"`
	Intent    string `json:"intent,omitempty"`
	WebApp    string `json:"web_app,omitempty"`
	ContactID int64  `json:"contact_id,omitempty"`
}

// NewMessageBody is what a bot sends or edits. Format is "markdown",
// "html" or empty (plain). Notify defaults to true.
type NewMessageBody struct {
	Text        *string             `json:"text"`
	Attachments []AttachmentRequest `json:"attachments"`
	Link        *NewMessageLink     `json:"link"`
	Notify      *bool               `json:"notify"`
	Format      *string             `json:"format"`
}

// NewMessageLink makes a new message a reply to (or forward of) Mid.
type NewMessageLink struct {
	Type string `json:"type"`
	Mid  string `json:"mid"`
}

// AttachmentRequest is an attachment a bot sends: Type "image", "video",
// "audio", "file" with a Payload holding the token of an upload (or,
// for images, Photos from an upload's answer), or "inline_keyboard"
// with buttons.
type AttachmentRequest struct {
	Type    string                   `json:"type"`
	Payload AttachmentRequestPayload `json:"payload"`
}

// AttachmentRequestPayload is an AttachmentRequest's payload.
type AttachmentRequestPayload struct {
	Token   string                    `json:"token,omitempty"`
	URL     string                    `json:"url,omitempty"`
	Photos  map[string]PhotoTokenJSON `json:"photos,omitempty"`
	Buttons [][]Button                `json:"buttons,omitempty"`
}

// PhotoTokenJSON is one entry of an image upload's photos.
type PhotoTokenJSON struct {
	Token string `json:"token"`
}

// Callback is a pressed button as message_callback carries it.
type Callback struct {
	Timestamp  int64  `json:"timestamp"`
	CallbackID string `json:"callback_id"`
	Payload    string `json:"payload,omitempty"`
	User       User   `json:"user"`
}

// Update is one event for a bot. UpdateType names it; the fields set are
// those of its type (docs/bots.md lists them).
type Update struct {
	UpdateType string   `json:"update_type"`
	Timestamp  int64    `json:"timestamp"`
	Message    *Message `json:"message,omitempty"`
	// message_removed
	MessageID string `json:"message_id,omitempty"`
	// message_callback
	Callback *Callback `json:"callback,omitempty"`
	// chat events: bot_started, bot_added, bot_removed, user_added,
	// user_removed, chat_title_changed, message_removed.
	ChatID    int64   `json:"chat_id,omitempty"`
	User      *User   `json:"user,omitempty"`
	UserID    int64   `json:"user_id,omitempty"`
	InviterID *int64  `json:"inviter_id,omitempty"`
	AdminID   *int64  `json:"admin_id,omitempty"`
	IsChannel *bool   `json:"is_channel,omitempty"`
	Title     string  `json:"title,omitempty"`
	Payload   *string `json:"payload,omitempty"`
}

// UpdateTypes are the update types the node produces.
var UpdateTypes = []string{
	"message_created", "message_edited", "message_removed", "message_callback",
	"bot_started", "bot_added", "bot_removed", "user_added", "user_removed",
	"chat_title_changed",
}

// UpdateList is GET /updates' answer. Marker is never 0: the SDK drops
// a falsy marker and would start over.
type UpdateList struct {
	Updates []Update `json:"updates"`
	Marker  int64    `json:"marker"`
}

// Subscription is a webhook.
type Subscription struct {
	URL         string   `json:"url"`
	Time        int64    `json:"time"`
	UpdateTypes []string `json:"update_types"`
	Version     string   `json:"version,omitempty"`
}

// SimpleResult is an action's answer.
type SimpleResult struct {
	Success bool   `json:"success"`
	Message string `json:"message,omitempty"`
}

// Error is the body of every error answer, with the HTTP status.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// RawJSON keeps a value's JSON as the client sent it.
type RawJSON = json.RawMessage
