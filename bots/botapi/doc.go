// Package botapi serves the Bot API, compatible with MAX's
// (docs/bots.md): the HTTP paths, JSON bodies, errors and long polling
// that MAX's official SDK (@maxhub/max-bot-api) uses, so that an existing
// bot works against the node by changing only its base URL
// (docs/research/max-bot-api.md records what the SDK sends and reads).
//
// # Model
//
// Server turns HTTP requests into calls of a Backend, which owns the
// node's bots, chats, messages and update queues (package bots implements
// it over the broker and the store). Server owns what is HTTP: routing
// (MAX's paths at the root of the public listener, registered on the
// node's mux with Register), authentication (the raw token in the
// Authorization header), a token-bucket rate limit per bot, decoding and
// validating every query and body before Backend sees it, and writing
// answers and errors in MAX's shapes: only status 200 is success, actions
// answer {"success":true}, errors are {"code","message"}.
//
// Decoders are pure functions of bytes or query strings (decode.go,
// query.go), bounded by Options.MaxBody, and fuzzed.
//
// # Goroutines and locks
//
// Server starts no goroutines: each request runs on its net/http
// goroutine. GET /updates blocks in Backend.Updates for up to the poll's
// timeout; it returns early when the client goes away or Close is called.
// The only lock is the rate limiter's (limiter.go), held for a map lookup
// and a token-bucket update.
package botapi
