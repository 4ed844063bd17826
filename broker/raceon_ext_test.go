//go:build race

package broker_test

// raceOn reports a -race build.
const raceOn = true
