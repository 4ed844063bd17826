package webhook

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/bots/botapi"
	"github.com/gonets/gonets/identity"
)

func TestStoreAddListRemove(t *testing.T) {
	kv := identity.NewMemKV()
	now := time.UnixMilli(1_700_000_000_000)
	s, err := NewStore(kv, StoreOptions{AllowPrivate: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if s.Active(1) || len(s.List(1)) != 0 || len(s.Bots()) != 0 {
		t.Fatal("a new store is not empty")
	}
	if err := s.Add(ctx, 1, "https://a.example/hook", "s1", []string{"message_created", "bot_started", "message_created"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, 1, "https://b.example/hook", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, 2, "https://c.example/", "", nil); err != nil {
		t.Fatal(err)
	}
	// The same URL replaces.
	now = now.Add(time.Second)
	if err := s.Add(ctx, 1, "https://a.example/hook", "s2", []string{"message_edited"}); err != nil {
		t.Fatal(err)
	}
	got := s.List(1)
	if len(got) != 2 || got[0].URL != "https://a.example/hook" || got[1].URL != "https://b.example/hook" {
		t.Fatalf("List(1) = %+v", got)
	}
	if got[0].Time != now.UnixMilli() || fmt.Sprint(got[0].UpdateTypes) != "[message_edited]" {
		t.Fatalf("replaced subscription = %+v", got[0])
	}
	if got[1].UpdateTypes == nil {
		t.Fatal("update_types is null; want []")
	}
	if r, _ := s.lookup(1, "https://a.example/hook"); r.Secret != "s2" {
		t.Fatalf("secret = %q, want s2", r.Secret)
	}
	if b := s.Bots(); fmt.Sprint(b) != "[1 2]" {
		t.Fatalf("Bots = %v", b)
	}

	// Kept across a restart.
	s2 := newTestStore(t, kv)
	if fmt.Sprint(s2.List(1)) != fmt.Sprint(s.List(1)) || fmt.Sprint(s2.Bots()) != "[1 2]" {
		t.Fatalf("after reload: %+v, bots %v", s2.List(1), s2.Bots())
	}

	if err := s.Remove(1, "https://a.example/hook"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(1, "https://nowhere.example/"); err != nil {
		t.Fatalf("removing a missing URL: %v", err)
	}
	if err := s.Remove(2, "https://c.example/"); err != nil {
		t.Fatal(err)
	}
	if s.Active(2) || !s.Active(1) || fmt.Sprint(s.Bots()) != "[1]" {
		t.Fatalf("after removals: bots %v", s.Bots())
	}
	s3 := newTestStore(t, kv)
	if fmt.Sprint(s3.Bots()) != "[1]" || len(s3.List(1)) != 1 {
		t.Fatalf("after removals and reload: bots %v, %+v", s3.Bots(), s3.List(1))
	}
	if err := s.RemoveAll(1); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveAll(1); err != nil {
		t.Fatal(err)
	}
	if s.Active(1) || len(newTestStore(t, kv).Bots()) != 0 {
		t.Fatal("RemoveAll left subscriptions")
	}
}

func TestStoreLimits(t *testing.T) {
	s := newTestStore(t, identity.NewMemKV())
	ctx := context.Background()
	for i := range 5 {
		if err := s.Add(ctx, 1, fmt.Sprintf("https://h%d.example/", i), "", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add(ctx, 1, "https://h5.example/", "", nil); !errors.Is(err, botapi.ErrBadRequest) {
		t.Fatalf("6th subscription: %v, want ErrBadRequest", err)
	}
	if err := s.Add(ctx, 1, "https://h4.example/", "new", nil); err != nil {
		t.Fatalf("replacing at the cap: %v", err)
	}
	bad := []struct {
		secret string
		types  []string
	}{
		{secret: strings.Repeat("x", MaxSecretLen+1)},
		{secret: "a b"},
		{secret: "a\r\nX-Evil: 1"},
		{secret: "тайна"},
		{types: []string{""}},
		{types: []string{strings.Repeat("t", maxTypeLen+1)}},
		{types: make([]string, maxTypes+1)},
	}
	for _, b := range bad {
		if err := s.Add(ctx, 2, "https://x.example/", b.secret, b.types); !errors.Is(err, botapi.ErrBadRequest) {
			t.Errorf("Add(secret %q, types %q) = %v, want ErrBadRequest", b.secret, b.types, err)
		}
	}
	if err := s.Add(ctx, 2, "https://x.example/", strings.Repeat("A-z_9", 50), []string{"dialog_muted"}); err != nil {
		t.Fatalf("a long secret and a type the node does not produce: %v", err)
	}
}

func TestStoreKVError(t *testing.T) {
	kv := identity.NewMemKV()
	s := newTestStore(t, kv)
	kv.Close()
	err := s.Add(context.Background(), 1, "https://a.example/", "", nil)
	if !errors.Is(err, identity.ErrKVClosed) || botapi.AsAPIError(err) != nil {
		t.Fatalf("Add on a closed KV = %v, want the KV's error", err)
	}
	if s.Active(1) {
		t.Fatal("a failed Add is visible")
	}
	kv.Reopen()
}

// slowKV holds each Set until release is closed.
type slowKV struct {
	identity.KV
	setting chan struct{} // one value per Set that started
	release chan struct{}
}

func (k *slowKV) Set(key, value []byte) error {
	k.setting <- struct{}{}
	<-k.release
	return k.KV.Set(key, value)
}

func TestStoreReadsDuringWrite(t *testing.T) {
	// The Store's lock is not held while the KV writes: reads (the
	// Deliverer's and the Bot API's) go on meanwhile.
	kv := &slowKV{KV: identity.NewMemKV(), setting: make(chan struct{}, 1), release: make(chan struct{})}
	s := newTestStore(t, kv)
	done := make(chan error, 1)
	go func() { done <- s.Add(context.Background(), 1, "https://a.example/", "", nil) }()
	<-kv.setting
	read := make(chan bool, 1)
	go func() { read <- s.Active(1) || len(s.List(1)) > 0 || len(s.Bots()) > 0 }()
	select {
	case active := <-read:
		if active {
			t.Error("a subscription is visible before the KV has it")
		}
	case <-time.After(5 * time.Second):
		t.Error("reads wait for the KV's write")
	}
	close(kv.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !s.Active(1) {
		t.Fatal("the subscription is not visible after the write")
	}
}
