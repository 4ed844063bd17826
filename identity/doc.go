// Package identity holds accounts and what proves them: phone numbers
// (normalised to E.164 and checked against the national numbering plan, so
// that virtual-operator ranges are refused), one-time codes sent by SMS
// through an adapter, the rate limits that bound every attempt, and the
// accounts' devices and refresh tokens. The session token itself stays the
// token package's format; identity decides who gets one.
//
// Service ties them into the login the broker serves before a session's
// Hello: Start (number checks, limits, a code by SMS), Verify (the account
// and a new device with its tokens) and Refresh.
//
// Outside systems are reached through small interfaces with one real client
// each and a simulator for tests and the demo (design.md, "Outside
// systems"): SMS gateways through Sender.
package identity
