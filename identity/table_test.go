package identity

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/gonets/gonets/storage"
)

// testKV runs the KV contract against kv; reopen returns the same table
// after its store was closed and opened again.
func testKV(t *testing.T, kv KV, reopen func() KV) {
	t.Helper()
	if _, ok, err := kv.Get([]byte("a")); ok || err != nil {
		t.Fatalf("Get of a missing key = %v, %v", ok, err)
	}
	for _, k := range []string{"b/2", "a", "b/1", "b/3", "c"} {
		if err := kv.Set([]byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := kv.Delete([]byte("b/3")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete([]byte("missing")); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	kv = reopen()
	var got []string
	if err := kv.Scan([]byte("b/"), func(k, v []byte) (bool, error) {
		if string(v) != "v"+string(k) {
			t.Errorf("%s → %s", k, v)
		}
		got = append(got, string(k))
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "b/1" || got[1] != "b/2" {
		t.Fatalf("Scan(b/) = %q, want [b/1 b/2]", got)
	}
	n := 0
	stop := errors.New("stop")
	if err := kv.Scan(nil, func(k, v []byte) (bool, error) { n++; return n < 2, nil }); err != nil || n != 2 {
		t.Fatalf("Scan stopping after 2: n=%d err=%v", n, err)
	}
	if err := kv.Scan(nil, func(k, v []byte) (bool, error) { return true, stop }); err != stop {
		t.Fatalf("Scan's fn error = %v", err)
	}
	if v, ok, err := kv.Get([]byte("a")); !ok || err != nil || string(v) != "va" {
		t.Fatalf("Get(a) = %q %v %v", v, ok, err)
	}
}

func TestMemKV(t *testing.T) {
	kv := NewMemKV()
	testKV(t, kv, func() KV { kv.Close(); kv.Reopen(); return kv })
	kv.Close()
	if err := kv.Set([]byte("x"), nil); !errors.Is(err, ErrKVClosed) {
		t.Fatalf("Set after Close = %v", err)
	}
}

func TestAccountsTable(t *testing.T) {
	dir := t.TempDir()
	a := openTestAccounts(t, dir, AccountsOptions{})
	kv, err := a.Table("signing")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := a.Table("signin") // a prefix of the other's name: no overlap
	if err := other.Set([]byte("g/1"), []byte("other")); err != nil {
		t.Fatal(err)
	}
	testKV(t, kv, func() KV {
		a.Close()
		a = openTestAccounts(t, dir, AccountsOptions{})
		kv, _ = a.Table("signing")
		return kv
	})
	if v, _, _ := kv.Get([]byte("g/1")); v != nil {
		t.Fatalf("a table sees another's key: %q", v)
	}
	if _, err := a.Table(""); err == nil {
		t.Fatal("an empty table name is accepted")
	}
	a.Close()
	if _, _, err := kv.Get([]byte("a")); !errors.Is(err, ErrAccountsClosed) {
		t.Fatalf("Get after Close = %v", err)
	}
}

func TestAccountsLink(t *testing.T) {
	dir := t.TempDir()
	a := openTestAccounts(t, dir, AccountsOptions{})
	u := mustLogin(t, a, "+79161234567", "phone", acctT0).User
	v := mustLogin(t, a, "+79161234568", "phone", acctT0).User
	yes := true
	attrs := Attributes{Provider: "esia", Subject: "1000299654", VerifiedAt: acctT0, Trusted: true,
		FirstName: "Иван", LastName: "Иванов", BirthDate: "1990-03-15", SNILS: "123-456-789 64", Student: &yes}
	if _, err := a.Linked(u); !errors.Is(err, ErrNotLinked) {
		t.Fatalf("Linked before Link = %v", err)
	}
	if err := a.Link(u, Attributes{Provider: "esia"}); err == nil {
		t.Fatal("attributes without a subject are linked")
	}
	if err := a.Link(storage.UserID(1<<40), attrs); err == nil {
		t.Fatal("a user with no account is linked")
	}
	if err := a.Link(u, attrs); err != nil {
		t.Fatal(err)
	}
	a.Close()

	// Sealed at rest: no attribute is in the store's files in the clear.
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, s := range []string{"Иванов", "123-456-789 64", "1990-03-15", "1000299654"} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds %q in the clear", p, s)
			}
		}
		return nil
	})

	a = openTestAccounts(t, dir, AccountsOptions{})
	got, err := a.Linked(u)
	if err != nil || got.LastName != "Иванов" || got.SNILS != attrs.SNILS || !got.VerifiedAt.Equal(acctT0) || got.Student == nil || !*got.Student || got.Pensioner != nil {
		t.Fatalf("Linked after reopen = %+v, %v", got, err)
	}
	if b, ok := got.Birth(); !ok || b.Year() != 1990 {
		t.Fatalf("Birth = %v %v", b, ok)
	}
	attrs.Subject = "2"
	if err := a.Link(v, attrs); err != nil {
		t.Fatal(err)
	}
	var users []storage.UserID
	a.LinkedUsers(func(user storage.UserID, at Attributes) bool { users = append(users, user); return true })
	if len(users) != 2 || users[0] != u || users[1] != v {
		t.Fatalf("LinkedUsers = %v, want [%d %d]", users, u, v)
	}
	if err := a.Unlink(u); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Linked(u); !errors.Is(err, ErrNotLinked) {
		t.Fatalf("Linked after Unlink = %v", err)
	}
	if err := a.Unlink(u); !errors.Is(err, ErrNotLinked) {
		t.Fatalf("second Unlink = %v", err)
	}
}
