package miniapp

import "errors"

var (
	// ErrMalformed reports launch data that cannot be parsed: a bad
	// URL escape, a field without "=", a repeated key, a missing or
	// non-numeric auth_date, a user or chat that is not the expected
	// JSON, or (from Sign) a field that cannot be signed unambiguously.
	ErrMalformed = errors.New("miniapp: malformed launch data")
	// ErrNoHash reports launch data without a hash field.
	ErrNoHash = errors.New("miniapp: launch data has no hash")
	// ErrBadHash reports a hash that does not match the data and the bot
	// token: the data was changed, or was signed for another bot.
	ErrBadHash = errors.New("miniapp: launch data hash does not match")
	// ErrExpired reports an auth_date outside the accepted window: older
	// than the maximum age, or further in the future than MaxClockSkew.
	ErrExpired = errors.New("miniapp: launch data expired")
)
