package tools

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// liveDir is the directory, inside the data directory, of the channels'
// live streams that started and have not ended: one file each,
// "<chat>-<start, Unix µs>.json", made (and synced) before the stream's
// live_started is written and removed once its live_ended is. A node that
// dies leaves them; at its next start recoverLive writes each one's end
// (LOST), so that a channel is never left live for good.
const liveDir = "live"

// liveMark is a live stream's file.
type liveMark struct {
	User   storage.UserID   `json:"user"`
	Device storage.DeviceID `json:"device"`
}

// liveMarkName is the file name of n's stream.
func liveMarkName(n broker.LiveNote) string {
	return strconv.FormatUint(uint64(n.Chat), 10) + "-" + strconv.FormatInt(n.Started.UnixMicro(), 10) + ".json"
}

// markLive makes n's stream's file in dir, durably.
func markLive(dir string, n broker.LiveNote) error {
	b, err := json.Marshal(liveMark{User: n.User, Device: n.Device})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("live streams: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, liveMarkName(n)), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("live streams: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("live streams: mark %s: %w", liveMarkName(n), err)
	}
	return nil
}

// unmarkLive removes n's stream's file from dir.
func unmarkLive(dir string, n broker.LiveNote) error {
	if err := os.Remove(filepath.Join(dir, liveMarkName(n))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("live streams: %w", err)
	}
	return nil
}

// syncDir syncs directory d.
func syncDir(d string) error {
	f, err := os.Open(d)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// recoverLive writes the end (LOST, at now) of every stream a node that
// died left in dir, and removes its file once written. It runs at start,
// before the node serves; a failure is logged and left for the next start.
func recoverLive(dir string, announce func(broker.LiveNote) error, now time.Time, log *slog.Logger) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		log.Error("live streams: recovery", "dir", dir, "err", err)
		return
	}
	for _, e := range ents {
		chat, start, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".json"), "-")
		c, err1 := strconv.ParseUint(chat, 10, 64)
		us, err2 := strconv.ParseInt(start, 10, 64)
		if e.IsDir() || !ok || err1 != nil || err2 != nil || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var m liveMark
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err != nil {
			log.Error("live streams: recovery", "file", e.Name(), "err", err)
			continue
		}
		n := broker.LiveNote{Chat: storage.ChatID(c), User: m.User, Device: m.Device, Started: time.UnixMicro(us),
			Ended: now, Reason: wire.LiveEndReason_LIVE_END_REASON_LOST}
		if err := announce(n); err != nil {
			log.Error("live streams: the end of a stream the node's death cut short not written", "chat", n.Chat, "err", err)
			continue
		}
		log.Warn("live streams: ended a stream the node's death cut short", "chat", n.Chat, "started", n.Started)
		if err := unmarkLive(dir, n); err != nil {
			log.Error("live streams: recovery", "err", err)
		}
	}
}
