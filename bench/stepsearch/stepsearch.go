// Package stepsearch finds the highest offered rate at which a load step
// passes its goals, for `gonets bench chat` and its NATS peer alike, so
// that both search the same way.
//
// The search starts low and climbs, so that no step runs behind an
// overloaded one: a step far beyond capacity leaves backlog (queued
// sends, catch-up reads, compactions) that would fail the steps after it
// for reasons of its own. It multiplies the rate by Factor until a step
// misses (or, when the first step misses, divides until one passes),
// then halves the bracket between the highest pass and the lowest miss
// Refine times, geometrically.
package stepsearch

import (
	"errors"
	"math"
)

// Options shape a search.
type Options struct {
	Start    float64 // the first rate
	Factor   float64 // > 1: the rate's step while bracketing
	Min      float64 // the lowest rate tried on the way down
	MaxSteps int     // at most this many steps in all
	Refine   int     // bisections of the bracket once found
}

// Run calls try for each step's rate, in order, and returns the highest
// rate that passed, or 0 when none did. An error from try ends the search
// and is returned.
func Run(o Options, try func(rate float64) (passed bool, err error)) (best float64, err error) {
	if o.Start <= 0 || o.Factor <= 1 || o.MaxSteps <= 0 {
		return 0, errors.New("stepsearch: needs a positive start, a factor above 1 and at least one step")
	}
	steps := 0
	step := func(rate float64) (bool, error) {
		steps++
		return try(rate)
	}
	var lo, hi float64 // the highest pass and the lowest miss so far
	for rate := o.Start; steps < o.MaxSteps; {
		ok, err := step(rate)
		if err != nil {
			return lo, err
		}
		if ok {
			lo = rate
			if hi > 0 {
				break
			}
			rate *= o.Factor
			continue
		}
		hi = rate
		if lo > 0 {
			break
		}
		if rate /= o.Factor; rate < o.Min {
			break
		}
	}
	for range o.Refine {
		if lo == 0 || hi == 0 || steps >= o.MaxSteps {
			break
		}
		mid := math.Sqrt(lo * hi)
		ok, err := step(mid)
		if err != nil {
			return lo, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}
