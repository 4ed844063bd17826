// Package status follows the statuses of a user's applications to the state
// services ("life situations": a passport, a benefit, a registration) and
// posts each new one, once, as a message in the user's "Госуслуги" service
// chat.
//
// # Source
//
// Source reads a person's applications from the state-service side. The
// real client, HTTPSource, speaks this polling API (statussim serves the
// same API for tests and the demo):
//
//	GET {base}/v1/persons/{oid}/applications?snils={snils}
//	{AuthHeader}: {AuthValue}
//
// {oid} is the person's ESIA object id (path-escaped), {snils} their SNILS
// as the linked account holds it (the query parameter is left out when it
// is unknown). Answers:
//
//	200 {"applications":[{"order_id":"…","service":"…","statuses":[
//	      {"code":"…","title":"…","at":"2026-01-02T15:04:05+03:00","final":false}]}]}
//	404 the person has no applications
//	4xx the request is refused (bad credentials, unknown person): not retried
//	5xx, 429, network errors: retried with backoff (the call is a GET); a
//	    429's Retry-After, in seconds or an HTTP date, is waited for, capped
//	    at HTTPOptions.BackoffMax
//
// Statuses are listed in the order they happened; "at" is RFC 3339 and
// required; "final" marks a status after which the application does not
// change. Unknown fields are ignored. An answer is refused whole
// (ErrInvalidResponse) when it is over MaxResponse bytes, has more than
// MaxApplications applications or MaxStatuses statuses in one, repeats an
// order_id, or a field breaks the limits Validate checks (order_id
// non-empty, at most MaxOrderID bytes; code non-empty, at most MaxCode;
// service and title at most MaxService and MaxTitle; valid UTF-8 without
// control characters except newlines and tabs in titles).
//
// # Poller
//
// Poller polls every user with a linked account about once an Interval and
// posts what is new through the Post callback; the node owns the chat
// itself. Run is a dispatcher loop, in its caller's goroutine, that lists
// the linked users (Users) at start and each Interval, keeps one schedule
// entry per linked user (the user id, their Person, the next due time and
// the failure count: the schedule is bounded by the number of linked users;
// users no longer listed are dropped after a complete listing), and starts
// at most Concurrency poll goroutines, which it waits for before it
// returns. New users are spread at random over the first Interval; after a
// poll a user is due again after Interval ± Jitter, after a failed one
// after Interval doubled per consecutive failure, capped at BackoffMax. A
// failed Post counts as a failed poll. A newly linked user's first poll
// posts their whole history, oldest first.
//
// # Posting once
//
// A cursor per (user, application) in the KV records the statuses already
// posted as digests of code, time and title, so a source that returns the
// history in another order, or sends an old status again, posts nothing
// twice, and a status that is new anywhere in the history is posted. A
// cursor keeps the last MaxSeen statuses of an application; the times of
// those it has forgotten become a floor, and a status unknown to the cursor
// but at or before the floor counts as posted. The source shows at most
// MaxStatuses statuses of an application at once, so only a source that
// rewrote an application's history several times over could meet the floor.
// A status whose title or time the source corrects is a new status.
//
// New statuses of a poll are posted in time order, each Post followed by
// the cursor's update. A crash, or a failed KV write, between the two posts
// the status again at the next poll with the same Event.MsgID, derived from
// the user, the order and the status: the node posts with it as the
// client message id and the store answers a repeated one, within its
// dedupe window (a day by default; the next poll is minutes away), with the
// message it already holds, so the chat shows the status once. MsgIDs are
// hashes, not increasing numbers: the store looks each one up. A failed Post
// stops the poll; that status and the later ones are posted at a later
// poll.
//
// Exactly once has two limits, both intended. A re-post after a crash is
// deduplicated by the store only within its dedupe window (24 h by
// default): a node down longer than that between a Post and its cursor's
// write posts that status twice. And a user who unlinks their account and
// links it again gets their application history posted again, with the
// same MsgIDs: the cursors are personal data and are erased with the link,
// so nothing remembers what was posted before.
//
// # Forgetting
//
// Cursor keys hold the user id and a hash of the order id, not the order id
// itself; values hold digests and times only. Cursors are dropped by Forget
// when the user unlinks their account, not when the source stops listing an
// application (it may list it again).
//
// A poll may be under way when the user unlinks, or about to start with a
// person read before: PollNow's, or Run's with the person from an earlier
// listing. The poller counts Forget calls; a poll notes the count when its
// person was read (PollNow: when it is called; Run's: when the listing
// began), and Forget, before it waits for the user's lock, marks the user
// with the new count while polls are in flight (a mark goes once no poll
// in flight read its person before it). A poll that holds the user's lock checks
// the mark before the Source call, before each Post and before each
// cursor write, and a poll of a forgotten user stops there: it calls the
// Source (which would send the person's SNILS) no more, posts no more and
// writes no cursor once the Forget began, even when the Forget's context
// ends before it gets the lock (it then returns the error and the cursors
// written before stay until a Forget completes). A Post already in flight
// is not taken back. A PollNow called after Forget began is a poll of a
// newly linked user: the node calls PollNow only after linking.
//
// # Locks
//
// Poller.mu guards the schedule and is a leaf: nothing is called with it
// held; it also guards the Forget count and marks. Polls of one user
// (Run's, PollNow's) and Forget take the user's lock, outside mu, so they
// never run at once for one user; a poll holding it takes mu briefly to
// read the user's mark.
package status
