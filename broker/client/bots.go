package client

import (
	"context"

	"github.com/gonets/gonets/broker/wire"
)

// CallbackAnswer is a bot's answer to a button the user pressed: a
// notification to show (may be empty). A change to the message comes as
// an edit.
type CallbackAnswer struct {
	Chat, Seq    uint64
	ID           string
	Notification string
}

// PressButton presses the callback button with payload of a bot's
// message chat/seq. It returns once the bot's update queue has the press;
// the bot's answer comes later as an EventCallbackAnswer. NO_BUTTON when
// the message has no such button or is not a bot's. Not repeated after a
// lost connection (a repeat would be a second press).
func (c *Client) PressButton(ctx context.Context, chat, seq uint64, payload string) error {
	_, err := c.call(ctx, &wire.Frame{Body: &wire.Frame_Callback{Callback: &wire.Callback{Chat: chat, Seq: seq, Payload: payload}}}, false)
	return err
}

// OpenMiniApp asks for the launch data of bot's mini-app, opened from
// chat (0: from the bot's profile) with a start parameter: the app's URL
// and the signed init data to hand it. NO_MINI_APP when the bot declares
// none.
func (c *Client) OpenMiniApp(ctx context.Context, bot, chat uint64, start string) (url, initData string, err error) {
	resp, err := c.call(ctx, &wire.Frame{Body: &wire.Frame_MiniAppOpen{MiniAppOpen: &wire.MiniAppOpen{Bot: bot, Chat: chat, StartParam: start}}}, true)
	if err != nil {
		return "", "", err
	}
	l := resp.GetMiniAppLaunch()
	if l == nil {
		return "", "", unexpected("MiniAppLaunch", resp)
	}
	return l.GetUrl(), l.GetInitData(), nil
}

// SetTitle renames a group (any member may) or a channel (its owner and
// admins); the chat gets a title_changed service record.
func (c *Client) SetTitle(ctx context.Context, chat uint64, title string) error {
	_, err := c.call(ctx, &wire.Frame{Body: &wire.Frame_SetTitle{SetTitle: &wire.SetTitle{Chat: chat, Title: title}}}, true)
	return err
}
