//go:build race

package broker

// raceEnabled reports a -race build, whose instrumentation allocates.
const raceEnabled = true
