package botapi

// The request and answer envelopes of the Bot API's endpoints, in MAX's
// shapes (docs/bots.md). The models they carry are in models.go.

// commandsBody is PATCH /me/commands' request and answer.
type commandsBody struct {
	Commands []BotCommand `json:"commands"`
}

// ChatList is GET /chats' answer. Marker is the next page's, null at the
// end.
type ChatList struct {
	Chats  []Chat `json:"chats"`
	Marker *int64 `json:"marker"`
}

// ChatPatch is PATCH /chats/{chat_id}'s body. The node changes only the
// title; the other fields are MAX's and refused when set.
type ChatPatch struct {
	Title       *string `json:"title"`
	Icon        RawJSON `json:"icon,omitempty"`
	Pin         RawJSON `json:"pin,omitempty"`
	Notify      RawJSON `json:"notify,omitempty"`
	Description RawJSON `json:"description,omitempty"`
}

// ActionRequest is POST /chats/{chat_id}/actions' body.
type ActionRequest struct {
	Action string `json:"action"`
}

// ChatMembersList is the answer of GET /chats/{chat_id}/members and
// .../members/admins. Marker is the next page's, absent at the end.
type ChatMembersList struct {
	Members []ChatMember `json:"members"`
	Marker  *int64       `json:"marker,omitempty"`
}

// UserIDsList is POST /chats/{chat_id}/members' body.
type UserIDsList struct {
	UserIDs []int64 `json:"user_ids"`
}

// AddMembersResult is POST /chats/{chat_id}/members' answer: an action
// result with the users that could not be added.
type AddMembersResult struct {
	Success       bool    `json:"success"`
	Message       string  `json:"message,omitempty"`
	FailedUserIDs []int64 `json:"failed_user_ids,omitempty"`
}

// SendMessageResult is POST /messages' answer.
type SendMessageResult struct {
	Message Message `json:"message"`
}

// MessageList is GET /messages' answer.
type MessageList struct {
	Messages []Message `json:"messages"`
}

// CallbackAnswer is POST /answers' body: a new body for the message the
// button was on and/or a notification to show its presser.
type CallbackAnswer struct {
	Message      *NewMessageBody `json:"message"`
	Notification *string         `json:"notification"`
}

// UploadEndpoint is POST /uploads' answer: where to post the file, and
// the token a message then names it by.
type UploadEndpoint struct {
	URL   string `json:"url"`
	Token string `json:"token,omitempty"`
}

// SubscriptionList is GET /subscriptions' answer; Subscriptions is
// always an array (the SDK maps over it).
type SubscriptionList struct {
	Subscriptions []Subscription `json:"subscriptions"`
}

// SubscriptionRequest is POST /subscriptions' body. Secret, when set, is
// sent back in each delivery's X-Max-Bot-Api-Secret header.
type SubscriptionRequest struct {
	URL         string   `json:"url"`
	Secret      string   `json:"secret,omitempty"`
	UpdateTypes []string `json:"update_types,omitempty"`
	Version     string   `json:"version,omitempty"`
}
