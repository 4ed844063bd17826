package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// parseCPUs reads a CPU list such as "0", "0-1" or "0,2-3".
func parseCPUs(list string) (unix.CPUSet, error) {
	var set unix.CPUSet
	for part := range strings.SplitSeq(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return set, fmt.Errorf("cpus %q: %w", list, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return set, fmt.Errorf("cpus %q: %w", list, err)
			}
		}
		if a < 0 || b < a || b >= 1024 {
			return set, fmt.Errorf("cpus %q: bad range", list)
		}
		for c := a; c <= b; c++ {
			set.Set(c)
		}
	}
	return set, nil
}

// pinProcess restricts every thread of this process to the CPUs in list.
// Threads the runtime starts later are cloned from pinned ones and inherit
// the mask.
func pinProcess(list string) error {
	set, err := parseCPUs(list)
	if err != nil {
		return err
	}
	// A second pass catches a thread started during the first.
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("pin: %w", err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil {
				return fmt.Errorf("pin thread %d to %s: %w", tid, list, err)
			}
		}
	}
	return nil
}
