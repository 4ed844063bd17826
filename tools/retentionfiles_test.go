package tools

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/storage"
)

// TestServeRetentionReleasesFiles: a node whose retention removes a
// message with an attachment gives the file's reference back, so that the
// media store collects it after its grace period; the file of a message
// still kept stays referenced.
func TestServeRetentionReleasesFiles(t *testing.T) {
	cfg := testConfig(t)
	cfg.Storage.Retention.Group.MaxCount = 2
	cfg.Storage.SweepInterval = duration(50 * time.Millisecond)
	s := startStreamNode(t, cfg)
	defer s.stop()
	ch, err := s.n.store.CreateChat(context.Background(), storage.ChatSpec{Kind: storage.ChatGroup, Creator: 1, Members: []storage.UserID{2}})
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"send", "--server", s.n.quicLn.Addr().String(), "--token", s.token(1), "--fingerprint", s.n.fingerprint, "--chat", jsonNumber(uint64(ch.ID))}
	sendFile := func(name, body string) string {
		t.Helper()
		code, out, errOut := run(append(args, "--file", tempFile(t, name, []byte(body)))...)
		if code != 0 {
			t.Fatalf("send --file: exit %d: %s", code, errOut)
		}
		var a ackLine
		if err := json.NewDecoder(strings.NewReader(out)).Decode(&a); err != nil || len(a.Attachments) != 1 {
			t.Fatalf("send printed %q: %v", out, err)
		}
		return a.Attachments[0].SHA256
	}
	refs := func(sha string) int64 {
		n, err := s.n.media.store.Refs(sha)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	gone, kept := sendFile("gone.txt", "swept by retention\n"), sendFile("kept.txt", "still in the chat\n")
	if refs(gone) != 1 || refs(kept) != 1 {
		t.Fatalf("refs after the sends: %d, %d", refs(gone), refs(kept))
	}
	if code, _, errOut := run(append(args, "a", "text")...); code != 0 {
		t.Fatalf("send: exit %d: %s", code, errOut)
	}
	// Seqs 1..3 with two kept: the first message leaves, and its file's
	// reference with it.
	waitUntil(t, "the swept message's file released", func() bool { return refs(gone) == 0 })
	if c, err := s.n.store.Chat(ch.ID); err != nil || c.Floor != 2 {
		t.Fatalf("chat floor %d (%v), want 2", c.Floor, err)
	}
	if n := refs(kept); n != 1 {
		t.Fatalf("the kept message's file has %d references, want 1", n)
	}
}
