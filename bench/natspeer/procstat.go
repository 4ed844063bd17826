package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/gonets/gonets/bench/result"
	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procSample is what /proc says about a process at one moment.
type procSample struct {
	at         time.Time
	cpuSeconds float64
	rss, hwm   int64 // bytes
}

// readProc reads /proc/PID/stat and /proc/PID/status. pid 0 means this
// process.
func readProc(pid int) (procSample, error) {
	dir := "/proc/self"
	if pid != 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s, fmt.Errorf("procstat: %w", err)
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. utime and stime are fields 14 and 15 of the line, so
	// 12 and 13 after the state field.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("procstat: %s/stat: no command name", dir)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return s, fmt.Errorf("procstat: %s/stat: %d fields", dir, len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("procstat: %s/stat: bad utime or stime", dir)
	}
	s.cpuSeconds = float64(utime+stime) / clockTicks
	if ns, ok := cpuClock(pid); ok {
		s.cpuSeconds = float64(ns) / 1e9 // the same time, to the nanosecond
	}

	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return s, fmt.Errorf("procstat: %w", err)
	}
	s.rss = statusKB(status, "VmRSS:")
	s.hwm = statusKB(status, "VmHWM:")
	return s, nil
}

// cpuClock reads a process's CPU-time clock (pid 0: this one): the
// scheduler's runtime of all its threads, those that exited included,
// in nanoseconds, where /proc/PID/stat counts 10 ms ticks. gonets bench
// reads its node the same way.
func cpuClock(pid int) (int64, bool) {
	clock := int32(unix.CLOCK_PROCESS_CPUTIME_ID)
	if pid != 0 {
		clock = int32(^pid<<3 | 2) // the kernel's MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0, false
	}
	return ts.Nano(), true
}

// statusKB returns a "Name: N kB" line of a status or meminfo file in bytes
// (0 when the line is missing).
func statusKB(b []byte, name string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		f := strings.Fields(line[len(name):])
		if len(f) == 0 {
			return 0
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		return kb * 1024
	}
	return 0
}

// machineSample is the whole machine's CPU time from /proc/stat.
type machineSample struct {
	at time.Time
	// busy is user, nice and system time over all CPUs; steal is time the
	// hypervisor ran something else; both in seconds.
	busy, steal float64
}

// readMachine reads the aggregate "cpu" line of /proc/stat.
func readMachine() (machineSample, error) {
	m := machineSample{at: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return m, fmt.Errorf("procstat: %w", err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	// cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return m, fmt.Errorf("procstat: /proc/stat: unexpected first line %q", line)
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return m, fmt.Errorf("procstat: /proc/stat: %w", err)
		}
	}
	m.busy = float64(v[0]+v[1]+v[2]) / clockTicks
	m.steal = float64(v[7]) / clockTicks
	return m, nil
}

// usage turns two samples of one process into the result's Process: CPU
// over the interval between them, memory at the later one.
func usage(pid int, from, to procSample, cpus string) *result.Process {
	p := &result.Process{
		PID:         pid,
		CPUSeconds:  to.cpuSeconds - from.cpuSeconds,
		RSSBytes:    to.rss,
		MaxRSSBytes: to.hwm,
		CPUs:        cpus,
	}
	if wall := to.at.Sub(from.at).Seconds(); wall > 0 {
		p.CPUPercent = 100 * p.CPUSeconds / wall
	}
	return p
}

// machine describes this host for the result.
func machine() result.Machine {
	m := result.Machine{
		OS:        runtime.GOOS,
		Arch:      runtime.GOARCH,
		CPUs:      runtime.NumCPU(),
		GoVersion: runtime.Version(),
	}
	m.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemBytes = statusKB(b, "MemTotal:")
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}
