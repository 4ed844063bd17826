package tools

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimitHandler(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	h := newLimitHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), func() time.Time { return now })
	log := slog.New(h).With("component", "storage")
	for range 100 {
		log.Error("disk full", "file", "000001.sst")
		slog.New(h).Error("disk full") // the same message through another With
		log.Debug("chatty")
	}
	log.Warn("other")
	count := func(msg string) int {
		return strings.Count(buf.String(), "msg=\""+msg+"\"") + strings.Count(buf.String(), "msg="+msg+" ")
	}
	if n := count("disk full"); n != logLimitBurst {
		t.Errorf("%d lines of a repeated message, want %d:\n%s", n, logLimitBurst, buf.String())
	}
	if n := count("chatty"); n != 100 {
		t.Errorf("%d debug lines, want all 100", n)
	}
	if n := count("other"); n != 1 {
		t.Errorf("%d lines of another message, want 1", n)
	}
	buf.Reset()
	now = now.Add(logLimitInterval)
	log.Error("disk full")
	if !strings.Contains(buf.String(), "suppressed=190") {
		t.Errorf("first line after the interval: %q, want suppressed=190", buf.String())
	}
}
