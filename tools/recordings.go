package tools

import (
	"path/filepath"

	"github.com/gonets/gonets/callsfu"
)

// recordingsDir is the calls' recordings directory inside the data
// directory: <data>/recordings/<call>/<n>/, one directory per recording
// (see callsfu.SFU.StartRecording).
const recordingsDir = "recordings"

// recoverRecordings finishes the recordings a node that died while
// recording left (callsfu.RecoverRecordings: each file is cut after its
// last complete frame and its header brought up to date, so that it
// plays), logs each, and announces in its chat each recording never
// announced (callsfu.Unannounced: those just finished, and those whose
// announcement a crash cut off or the store refused), marking each so
// once it is. It runs at start, before the node serves; a failure is
// logged and the node starts all the same.
func (n *node) recoverRecordings() {
	dir := filepath.Join(n.dataDir, recordingsDir)
	sums, err := callsfu.RecoverRecordings(dir)
	if err != nil {
		n.log.Error("recordings: recovery", "dir", dir, "err", err)
	}
	for _, sum := range sums {
		n.log.Warn("recordings: recovered a recording the node's death cut short", "dir", filepath.Join(dir, filepath.FromSlash(sum.Dir)),
			"call", sum.Call, "chat", sum.Chat, "files", len(sum.Files), "bytes", sum.Bytes(), "duration", sum.Stopped.Sub(sum.Started))
	}
	pending, err := callsfu.Unannounced(dir)
	if err != nil {
		n.log.Error("recordings: unannounced", "dir", dir, "err", err)
	}
	for _, sum := range pending {
		if err := n.broker.AnnounceRecording(sum.Broker()); err != nil {
			n.log.Error("recordings: recording not announced", "dir", sum.Dir, "err", err)
			continue
		}
		if err := callsfu.MarkAnnounced(dir, sum.Dir); err != nil {
			n.log.Error("recordings: recording announced, not marked so", "dir", sum.Dir, "err", err)
		}
	}
}
