// Package miniapp signs and validates mini-app launch data: the query
// string a client hands a bot's mini-app (a web page) when a user opens it
// from a chat, in the scheme Telegram documents for WebApp initData and MAX
// uses for its mini-apps, so validators written for either accept the
// node's launch data and bot authors can keep the code they have.
//
// # The scheme
//
// Launch data is a URL-encoded query string of fields: query_id, user (a
// JSON object), chat (a JSON object), auth_date (Unix seconds), start_param,
// any others the platform adds, and hash. The hash covers every other
// received field:
//
//	data_check_string = the fields except hash, sorted by key (byte order),
//	                    each as key=value with the value URL-decoded,
//	                    joined by "\n"
//	secret_key        = HMAC_SHA256(key = "WebAppData", msg = bot_token)
//	hash              = hex(HMAC_SHA256(key = secret_key, msg = data_check_string))
//
// Telegram's clients also send a signature field (an Ed25519 signature for
// third-party validation, checked with Telegram's public key). For the HMAC
// hash it is an ordinary received field: it is part of the data-check-string,
// as Telegram's documentation says ("all received fields" except hash).
// Validate does the same and hands it back in LaunchData.Extra; the Ed25519
// check itself is not done here, since the node's launch data has no
// third-party signature.
//
// # Use
//
// The node calls Sign with the bot's token when a user opens the bot's
// mini-app, and the client passes the result to the page. The page sends it
// to its backend unchanged, and the backend calls Validate with the same
// token, a maximum age, and the current time. Validate refuses a string it
// cannot parse or that repeats a key (ErrMalformed), one without a hash
// (ErrNoHash), one whose hash does not match (ErrBadHash, compared in
// constant time), and one whose auth_date is older than the maximum age or
// more than MaxClockSkew in the future (ErrExpired). The hash is checked
// before anything inside the data is trusted.
//
// Sign refuses values that contain a line feed and Extra keys that contain
// "=" or a line feed, or that name a field Sign sets itself: such a field
// could make two different sets of fields share one data-check-string.
// Validate refuses them for the same reason, after the hash.
//
// The package holds no state and starts no goroutines; its functions are
// safe for concurrent use.
package miniapp
