// Package webhook delivers the updates of the node's bots to their
// webhooks, as MAX's Bot API does for bots that subscribed with
// POST /subscriptions.
//
// # Subscriptions
//
// A Store keeps each bot's subscriptions (URL, optional secret, the
// update types it takes, the time it was made) in a durable identity.KV,
// one record per bot, with a copy in memory that every read uses. A bot
// has at most five; adding a URL it already has replaces that
// subscription. While a bot has any, its updates go to its webhooks and
// the Bot API refuses it long polling (Store.Active), as MAX does.
//
// # URL policy
//
// A webhook URL is https (http only when allowed), at most 2,048 bytes,
// without user info. Its host must not be, or resolve to, a loopback,
// private (RFC 1918, fc00::/7), link-local, unspecified, multicast,
// carrier-grade NAT (100.64.0.0/10) or other reserved address, unless
// allowed: IPv4-mapped, NAT64 (64:ff9b::/96), 6to4 (2002::/16) and
// Teredo (2001::/32) addresses are checked as the IPv4 addresses they
// carry, and local-use NAT64 addresses (64:ff9b:1::/48) are refused,
// since where they carry one is the operator's choice. The Store checks when a URL is added, resolving
// its host with a timeout; the Deliverer's dialer checks again every
// address it dials, after resolution, so a name that changes what it
// resolves to (DNS rebinding) cannot reach a refused address. Redirects
// are never followed, for the same reason. Refusals are
// botapi.ErrWebhookURL with a message that says why.
//
// # Delivery
//
// Deliverer.Run runs a goroutine per bot with subscriptions, started
// and ended as the Store changes (the Store tells the running
// Deliverer). Each reads a batch of the bot's updates from the Source
// (up to 100, waiting up to 30 s) and posts it to each subscription at
// once, in order for each: every update that the subscription's types
// take, as JSON, with the secret in the X-Max-Bot-Api-Secret header. It
// retries a failure (a network error, a timeout, a redirect, a status
// other than 2xx) with a backoff from 1 s doubling up to MaxBackoff,
// jittered, honouring a Retry-After up to the same cap. An update still
// failing GiveUpAfter after its first attempt is dropped for that
// webhook and counted, and the next one goes. A webhook that fails does
// not hold the bot's other webhooks back beyond the batch. When each
// webhook still subscribed has each update of a batch delivered or
// dropped, the batch is acknowledged by reading the next one with its
// marker. Updates are
// thus delivered at least once and in order per webhook: a batch not
// acknowledged when the node stops is delivered again after a restart.
// A batch abandoned because the bot unsubscribed is not acknowledged
// either: the next read starts again from the last acknowledged update,
// so long polling (or a new subscription) reads it again. An
// unsubscribe cancels the request in flight.
//
// A webhook that had an update dropped is given up on: its next
// updates are dropped at once, without a request, but for one attempt
// (a probe) at most every MaxBackoff; once a probe is answered 2xx,
// delivery goes on as before. A webhook failing for DisableAfter (24 h
// by default) from its first failure since it last answered 2xx is
// unsubscribed: its subscription is removed from the Store, logged with
// its host and counted, as MAX does. That time counts from when the
// running Deliverer saw the failure, not across restarts.
//
// MaxConcurrent caps the requests in flight, all bots together; a bot
// waiting between attempts holds none. Response bodies are read up to
// 4 KiB and closed.
//
// # Use
//
// The node makes one Store over a table of its store and one
// Deliverer over the Store and its botapi.Backend (the Source), and runs
// Run for the node's life. Its Backend's Subscriptions, Subscribe and
// Unsubscribe are Store.List, Store.Add and Store.Remove, and a deleted
// bot's subscriptions go with Store.RemoveAll; nothing else is needed,
// the Store tells the Deliverer. A bot's long polling is
// refused while Store.Active, in the Backend's Updates that GET /updates
// calls; the Deliverer's Source must then be a reader of the same
// queue that does not refuse.
//
// # Goroutines and locks
//
// Run owns the bots' goroutines and waits for them before it returns;
// each owns the goroutines that deliver one batch to its several
// webhooks, and each attempt owns one that cancels its request if the
// subscription is removed. Locks are held briefly and never across
// network I/O: Deliverer.mu is taken before Store.mu and botLoop.mu,
// which take no other. Store.wmu serialises the Store's writers across
// the KV's write, and is taken before Store.mu, which every read takes
// and no write holds across I/O. The Store calls the Deliverer's Notify
// outside its locks.
package webhook
