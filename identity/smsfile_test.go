package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestFileSenderConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sms-outbox.jsonl")
	s, err := NewFileSender(FileSenderOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				// Quotes, newlines and non-ASCII must survive the round trip.
				m := SMS{To: fmt.Sprintf("+7916%07d", w), Text: fmt.Sprintf("code %d-%d \"q\"\nline2 кириллица", w, i)}
				if err := s.Send(context.Background(), m); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(raw, []byte{'\n'}), []byte{'\n'})
	if len(lines) != workers*each {
		t.Fatalf("%d lines, want %d", len(lines), workers*each)
	}
	for i, l := range lines {
		var m map[string]string
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("line %d %q: %v", i+1, l, err)
		}
		if len(m) != 3 || m["to"] == "" || m["text"] == "" {
			t.Fatalf("line %d has fields %v, want to, text, at", i+1, m)
		}
		if _, err := time.Parse(time.RFC3339Nano, m["at"]); err != nil {
			t.Fatalf("line %d: at %q: %v", i+1, m["at"], err)
		}
	}

	got, err := ReadOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != workers*each {
		t.Fatalf("ReadOutbox: %d lines, want %d", len(got), workers*each)
	}
	next := make(map[string]int) // each worker's lines appear in its order
	for _, l := range got {
		var w, i int
		if _, err := fmt.Sscanf(l.Text, "code %d-%d", &w, &i); err != nil {
			t.Fatalf("text %q: %v", l.Text, err)
		}
		if l.To != fmt.Sprintf("+7916%07d", w) || i != next[l.To] {
			t.Fatalf("line %+v out of order (want index %d)", l, next[l.To])
		}
		next[l.To]++
	}
	if st := s.Stats(); st.Sent != workers*each || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestFileSenderRefusesBadInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s, err := NewFileSender(FileSenderOptions{Path: path, MaxLine: 200, Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, m := range []SMS{
		{To: "79161234567", Text: "x"},
		{To: "+0916123456", Text: "x"},
		{To: "+7916abc4567", Text: "x"},
		{To: "+7916", Text: "x"},
		{To: "+79161234567", Text: ""},
		{To: "+79161234567", Text: string(make([]byte, MaxSMSText+1))},
		{To: "+79161234567", Text: string(bytes.Repeat([]byte("a"), 190))}, // over MaxLine
	} {
		if err := s.Send(context.Background(), m); !errors.Is(err, ErrSMSInvalid) {
			t.Errorf("Send(%.20q): %v, want ErrSMSInvalid", m.To, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Send(ctx, SMS{To: "+79161234567", Text: "x"}); !errors.Is(err, ErrSMSUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a done ctx: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("outbox after bad input: %v, %v; want empty", fi, err)
	}
	if err := s.Send(context.Background(), SMS{To: "+79161234567", Text: "ok"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), SMS{To: "+79161234567", Text: "late"}); !errors.Is(err, ErrSenderClosed) || !errors.Is(err, ErrSMSUnavailable) {
		t.Fatalf("Send after Close: %v, want ErrSenderClosed and (Sender's contract) ErrSMSUnavailable", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if st := s.Stats(); st.Sent != 1 || st.Failed != 9 {
		t.Fatalf("stats %+v, want 1 sent, 9 failed", st)
	}
	got, err := ReadOutbox(path)
	if err != nil || len(got) != 1 || got[0].Text != "ok" {
		t.Fatalf("ReadOutbox = %+v, %v", got, err)
	}
}

func TestNewFileSenderOptions(t *testing.T) {
	for _, o := range []FileSenderOptions{
		{},
		{Path: filepath.Join(t.TempDir(), "x"), MaxLine: -1},
		{Path: filepath.Join(t.TempDir(), "x"), MaxLine: maxOutboxReadLine + 1},
	} {
		if _, err := NewFileSender(o); !errors.Is(err, ErrSMSConfig) {
			t.Errorf("NewFileSender(%+v): %v, want ErrSMSConfig", o, err)
		}
	}
	if _, err := NewFileSender(FileSenderOptions{Path: filepath.Join(t.TempDir(), "no", "dir")}); err == nil {
		t.Error("NewFileSender in a missing directory succeeded")
	}
}

func TestReadOutbox(t *testing.T) {
	dir := t.TempDir()
	good := `{"to":"+79161234567","text":"123456","at":"2026-01-02T03:04:05.123456789Z"}`
	f := func(name, content string, want int, wantErr error) {
		t.Helper()
		path := filepath.Join(dir, name)
		if content != "" {
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		got, err := ReadOutbox(path)
		if !errors.Is(err, wantErr) || (wantErr == nil && err != nil) {
			t.Fatalf("%s: err %v, want %v", name, err, wantErr)
		}
		if wantErr == nil && len(got) != want {
			t.Fatalf("%s: %d lines, want %d", name, len(got), want)
		}
	}
	f("missing", "", 0, nil)
	f("two", good+"\n"+good+"\n", 2, nil)
	f("torn", good+"\n"+good[:30], 1, nil)
	f("corrupt", good+"\nnot json\n"+good+"\n", 0, ErrOutboxCorrupt)
	f("no-to", `{"text":"x","at":"2026-01-02T03:04:05Z"}`+"\n", 0, ErrOutboxCorrupt)

	got, err := ReadOutbox(filepath.Join(dir, "two"))
	if err != nil {
		t.Fatal(err)
	}
	want := OutboxLine{To: "+79161234567", Text: "123456", At: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)}
	if got[0].To != want.To || got[0].Text != want.Text || !got[0].At.Equal(want.At) {
		t.Fatalf("line %+v, want %+v", got[0], want)
	}
}

func BenchmarkFileSenderSend(b *testing.B) {
	s, err := NewFileSender(FileSenderOptions{Path: filepath.Join(b.TempDir(), "out.jsonl")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m := SMS{To: "+79161234567", Text: "Your Gonets code: 123456"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Send(context.Background(), m); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
