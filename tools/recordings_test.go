package tools

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// TestServeRecoversRecordings: a recording a killed node left unstopped
// in its data directory (its manifest without a stop time, a track whose
// file never came) is finished when the node starts again: the manifest
// says it stopped and was recovered, the recovery is logged, and the
// recording is announced in its chat as the user who started it.
func TestServeRecoversRecordings(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	st, err := storage.Open(filepath.Join(cfg.Node.DataDir, storeDir), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := st.CreateChat(context.Background(), storage.ChatSpec{Kind: storage.ChatGroup, Creator: 1, Members: []storage.UserID{2}, Title: "g"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cfg.Node.DataDir, recordingsDir, "77", "1")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	started := time.Now().Add(-time.Minute).UTC()
	manifest, err := json.Marshal(map[string]any{
		"call": "77", "chat": ch.ID, "by": 2, "started": started,
		"tracks": []map[string]any{{"participant": "2.1", "track": "audio-0", "kind": "audio", "codec": "opus", "file": "2.1_audio-0.ogg", "added": started}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), manifest, 0o640); err != nil {
		t.Fatal(err)
	}

	var logs lockedBuffer
	n, err := startNode(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var note wire.Service
	if _, err := n.store.ReadLatest(ch.ID, 1, func(r *storage.Record) error {
		if r.Kind != storage.MsgService || r.Sender != 2 || r.Device != storage.DeviceNode {
			t.Errorf("the chat's last record: kind %d from %d/%d, want a service message from 2, the node's device", r.Kind, r.Sender, r.Device)
		}
		return proto.Unmarshal(r.Body, &note)
	}); err != nil {
		t.Fatal(err)
	}
	rec := note.GetCallRecorded()
	if rec.GetCall() != 77 || rec.GetStartedBy() != 2 || !rec.GetRecovered() || len(rec.GetFiles()) != 1 ||
		rec.GetFiles()[0].GetName() != "77/1/2.1_audio-0.ogg" || rec.GetFiles()[0].GetError() == "" {
		t.Fatalf("announcement %v, want call 77's recovered recording, its missing file with an error", &note)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var m struct {
		Stopped   time.Time `json:"stopped"`
		Recovered bool      `json:"recovered"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil || m.Stopped.IsZero() || !m.Recovered {
		t.Fatalf("manifest after the recovery: %s, %v", b, err)
	}
	if !strings.Contains(logs.String(), "recovered a recording") {
		t.Errorf("the recovery is not logged:\n%s", logs.String())
	}
}
