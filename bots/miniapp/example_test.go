package miniapp_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/gonets/gonets/bots/miniapp"
)

// A bot's backend checks the launch data its mini-app page sent (for
// example in an Authorization header) before trusting the user in it.
func ExampleValidate() {
	const botToken = "123456789:AAE-example-token"
	now := time.Now()

	// The node signs the launch data when the user opens the mini-app;
	// here the example signs it itself.
	initData, err := miniapp.Sign(botToken, miniapp.LaunchData{
		QueryID:    "AAHdF6IQAAAAAN0XohDhrOrc",
		User:       miniapp.User{ID: 42, FirstName: "Anna", LanguageCode: "ru"},
		AuthDate:   now.Add(-time.Minute),
		StartParam: "order_1001",
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	d, err := miniapp.Validate(initData, botToken, 24*time.Hour, now)
	switch {
	case errors.Is(err, miniapp.ErrExpired):
		fmt.Println("stale launch data: ask the user to reopen the mini-app")
	case err != nil:
		fmt.Println("refused:", err)
	default:
		fmt.Println(d.User.ID, d.User.FirstName, d.StartParam)
	}

	_, err = miniapp.Validate(initData, "another bot's token", 24*time.Hour, now)
	fmt.Println(err)
	// Output:
	// 42 Anna order_1001
	// miniapp: launch data hash does not match
}
