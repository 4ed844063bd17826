package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gonets/gonets/bench/result"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat times.
const clockTicks = 100

// cpuTime returns a process's user plus system CPU time ("self" for this
// one), to the nanosecond: from its CPU-time clock (the scheduler's
// runtime of all its threads, those that exited included), or, where
// that clock cannot be read, from /proc in clock ticks (10 ms), too
// coarse for a quiet window.
func cpuTime(pid string) (time.Duration, error) {
	clock := int32(unix.CLOCK_PROCESS_CPUTIME_ID)
	if pid != "self" {
		n, err := strconv.Atoi(pid)
		if err != nil {
			return 0, fmt.Errorf("bench: pid %q: %w", pid, err)
		}
		clock = int32(^n<<3 | cpuClockSched) // the kernel's MAKE_PROCESS_CPUCLOCK
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err == nil {
		return time.Duration(ts.Nano()), nil
	}
	return statCPUTime(pid)
}

// cpuClockSched is the kernel's CPUCLOCK_SCHED: a process's CPU clock
// that counts its threads' scheduled runtime.
const cpuClockSched = 2

// statCPUTime returns a process's user plus system time from
// /proc/PID/stat, in clock ticks.
func statCPUTime(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it are fixed.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: /proc/%s/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: /proc/%s/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: /proc/%s/stat: bad times", pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// memory returns a process's resident set and its peak, in bytes.
func memory(pid string) (rss, peak int64, err error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return rss, peak, sc.Err()
}

// procMeter measures a process's CPU over a window.
type procMeter struct {
	pid   string
	cpu0  time.Duration
	wall0 time.Time
	cpus  string
}

func startMeter(pid, cpus string) *procMeter {
	c, _ := cpuTime(pid)
	return &procMeter{pid: pid, cpu0: c, wall0: time.Now(), cpus: cpus}
}

// read returns the process's use since the meter started.
func (m *procMeter) read() *result.Process {
	c, err := cpuTime(m.pid)
	if err != nil {
		return nil
	}
	rss, peak, _ := memory(m.pid)
	wall := time.Since(m.wall0).Seconds()
	p := &result.Process{CPUSeconds: (c - m.cpu0).Seconds(), RSSBytes: rss, MaxRSSBytes: peak, CPUs: m.cpus}
	if m.pid != "self" {
		p.PID, _ = strconv.Atoi(m.pid)
	} else {
		p.PID = os.Getpid()
	}
	if wall > 0 {
		p.CPUPercent = 100 * p.CPUSeconds / wall
	}
	return p
}

// generatorMeters starts a meter on every process of the load generator:
// this one, and each part's worker process.
func generatorMeters(parts []part, cpus string) []*procMeter {
	meters := []*procMeter{startMeter("self", cpus)}
	for _, p := range parts {
		if pid := p.pid(); pid != "self" {
			meters = append(meters, startMeter(pid, cpus))
		}
	}
	return meters
}

// sumProcesses reads the meters of the load generator's processes: one
// as it is, several summed (CPU, resident set, and peaks, each process's
// at its own time). Procs counts the worker processes, those beside this
// one.
func sumProcesses(meters []*procMeter) *result.Process {
	if len(meters) == 1 {
		return meters[0].read()
	}
	sum := &result.Process{PID: os.Getpid(), Procs: len(meters) - 1, CPUs: meters[0].cpus}
	for _, m := range meters {
		p := m.read()
		if p == nil {
			continue // exited: its figures are gone
		}
		sum.CPUSeconds += p.CPUSeconds
		sum.CPUPercent += p.CPUPercent
		sum.RSSBytes += p.RSSBytes
		sum.MaxRSSBytes += p.MaxRSSBytes
	}
	return sum
}

// machine describes this machine and build.
func machine() result.Machine {
	m := result.Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemBytes = kb << 10
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		m.Version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				m.Commit = s.Value
			}
			if s.Key == "vcs.modified" && s.Value == "true" && m.Commit != "" {
				m.Commit += "-dirty"
			}
		}
	}
	if m.Commit == "" {
		// Built without VCS stamping (go run, -buildvcs=false): ask git
		// about the working directory, which is the source when run from
		// the repository.
		if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
			m.Commit = strings.TrimSpace(string(out))
			if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
				m.Commit += "-dirty"
			}
		}
	}
	return m
}

// parseCPUs parses a CPU list like "0", "0-1" or "0,2-3".
func parseCPUs(list string) (unix.CPUSet, error) {
	var set unix.CPUSet
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		if err != nil {
			return set, fmt.Errorf("bench: cpu list %q: %w", list, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil {
				return set, fmt.Errorf("bench: cpu list %q: %w", list, err)
			}
		}
		if a < 0 || b < a || b >= runtime.NumCPU() {
			return set, fmt.Errorf("bench: cpu list %q: outside 0-%d", list, runtime.NumCPU()-1)
		}
		for c := a; c <= b; c++ {
			set.Set(c)
		}
	}
	return set, nil
}

// pin binds every thread of process pid ("self" for this one) to cpus;
// threads created later inherit the binding.
func pin(pid, cpus string) error {
	set, err := parseCPUs(cpus)
	if err != nil {
		return err
	}
	tasks, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("bench: pin thread %d to %s: %w", tid, cpus, err)
		}
	}
	return nil
}

// overlap reports whether two CPU lists share a CPU; an empty list is
// every CPU.
func overlap(a, b string) bool {
	if a == "" || b == "" {
		return true
	}
	sa, err1 := parseCPUs(a)
	sb, err2 := parseCPUs(b)
	if err1 != nil || err2 != nil {
		return true
	}
	for c := range runtime.NumCPU() {
		if sa.IsSet(c) && sb.IsSet(c) {
			return true
		}
	}
	return false
}

// cpuTicker reads a process's CPU second by second, for the live line.
type cpuTicker struct {
	pid  string // "" for a running node: nothing to read
	last time.Duration
	at   time.Time
}

func newCPUTicker(pid string) *cpuTicker {
	c := &cpuTicker{pid: pid, at: time.Now()}
	if pid != "" {
		c.last, _ = cpuTime(pid)
	}
	return c
}

// live returns the node's CPU since the last call, and per delivery
// with delivered deliveries in that time, for the live line: "" without
// a node.
func (c *cpuTicker) live(delivered float64) string {
	if c.pid == "" {
		return ""
	}
	cpu, err := cpuTime(c.pid)
	now := time.Now()
	used, wall := cpu-c.last, now.Sub(c.at)
	c.last, c.at = cpu, now
	if err != nil || wall <= 0 {
		return ""
	}
	s := fmt.Sprintf("  node %3.0f%%", 100*used.Seconds()/wall.Seconds())
	if delivered > 0 {
		s += fmt.Sprintf(" %5.0f µs/delivery", float64(used.Microseconds())/delivered)
	}
	return s
}

// machineCPU returns the whole machine's busy time (user, nice and
// system over all CPUs) and the time the hypervisor stole, from
// /proc/stat.
func machineCPU() (busy, steal time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("bench: /proc/stat: unexpected first line %q", line)
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("bench: /proc/stat: %w", err)
		}
	}
	tick := time.Second / clockTicks
	return time.Duration(v[0]+v[1]+v[2]) * tick, time.Duration(v[7]) * tick, nil
}
