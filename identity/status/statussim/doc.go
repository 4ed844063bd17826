// Package statussim simulates the state-service side of status: it keeps
// people's applications in memory and serves them through the polling API
// documented in package status, as an http.Handler, and in process as a
// status.Source. Tests and the demo add statuses as the state services
// would and tell it to fail.
package statussim
