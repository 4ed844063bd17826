package webhook

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/bots/botapi"
	"github.com/gonets/gonets/identity"
)

func TestBlocked(t *testing.T) {
	f := func(addr, want string) {
		t.Helper()
		if got := blocked(netip.MustParseAddr(addr)); got != want {
			t.Errorf("blocked(%s) = %q, want %q", addr, got, want)
		}
	}
	f("127.0.0.1", "a loopback")
	f("127.1.2.3", "a loopback")
	f("::1", "a loopback")
	f("::ffff:127.0.0.1", "a loopback")
	f("64:ff9b::7f00:1", "a loopback")
	f("10.1.2.3", "a private")
	f("172.16.0.1", "a private")
	f("172.31.255.255", "a private")
	f("192.168.1.1", "a private")
	f("fc00::1", "a private")
	f("fd12:3456::1", "a private")
	f("169.254.169.254", "a link-local")
	f("fe80::1", "a link-local")
	f("fe80::1%eth0", "a link-local")
	f("0.0.0.0", "an unspecified")
	f("0.1.2.3", "an unspecified")
	f("::", "an unspecified")
	f("224.0.0.1", "a link-local")
	f("239.1.1.1", "a multicast")
	f("ff02::1", "a link-local")
	f("ff0e::1", "a multicast")
	f("100.64.0.1", "a carrier-grade NAT")
	f("100.127.255.255", "a carrier-grade NAT")
	f("255.255.255.255", "a reserved")
	f("fec0::1", "a site-local")
	// IPv6 addresses that carry an IPv4 one.
	f("64:ff9b:1::a00:1", "a local NAT64")
	f("64:ff9b:1:ff00::5db8:d822", "a local NAT64")
	f("2002:7f00:1::1", "a loopback")              // 6to4 of 127.0.0.1
	f("2002:a9fe:a9fe::1", "a link-local")         // 6to4 of 169.254.169.254
	f("2002:c0a8:101::", "a private")              // 6to4 of 192.168.1.1
	f("2001:0:a00:1::5db8:d822", "a private")      // Teredo server 10.0.0.1
	f("2001:0:5db8:d822::80ff:fffe", "a loopback") // Teredo client ^127.0.0.1
	f("2001:0:5db8:d822::f5ff:fffe", "a private")  // Teredo client 10.0.0.1
	// Public.
	f("93.184.216.34", "")
	f("100.128.0.1", "")
	f("172.32.0.1", "")
	f("2606:2800:220:1::1", "")
	f("64:ff9b::5db8:d822", "")
	f("2002:5db8:d822::1", "")           // 6to4 of 93.184.216.34
	f("2001:0:5db8:d822::a247:27dd", "") // Teredo, both public
}

func TestStoreURLPolicy(t *testing.T) {
	res := fakeResolver{
		"public.example":  {netip.MustParseAddr("93.184.216.34")},
		"private.example": {netip.MustParseAddr("10.0.0.5")},
		"mixed.example":   {netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("::1")},
		"localhost":       {netip.MustParseAddr("127.0.0.1")},
	}
	strict, err := NewStore(identity.NewMemKV(), StoreOptions{Resolver: res, ResolveTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lax, err := NewStore(identity.NewMemKV(), StoreOptions{Resolver: res, AllowPrivate: true, AllowHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	f := func(s *Store, url string, wantOK bool, wantMsg string) {
		t.Helper()
		err := s.Add(context.Background(), 1, url, "", nil)
		switch {
		case wantOK && err != nil:
			t.Errorf("Add(%q) = %v, want success", url, err)
		case !wantOK && !errors.Is(err, botapi.ErrWebhookURL):
			t.Errorf("Add(%q) = %v, want ErrWebhookURL", url, err)
		case !wantOK && !strings.Contains(err.Error(), wantMsg):
			t.Errorf("Add(%q) = %v, want a message with %q", url, err, wantMsg)
		}
		_ = s.Remove(1, url)
	}
	f(strict, "https://public.example/webhook/abc", true, "")
	f(strict, "https://93.184.216.34:8443/", true, "")
	f(strict, "https://[2606:2800:220:1::1]/", true, "")
	f(strict, "http://public.example/", false, "must use https")
	f(strict, "ftp://public.example/", false, "https URL")
	f(strict, "public.example/hook", false, "https URL")
	f(strict, "https:public.example", false, "valid absolute URL")
	f(strict, "https:///hook", false, "no host")
	f(strict, "https://user:pw@public.example/", false, "user name")
	f(strict, "https://public.example/"+strings.Repeat("a", MaxURLLen), false, "longer than")
	f(strict, "https://%zz/", false, "valid absolute URL")
	f(strict, "https://127.0.0.1/", false, "loopback address 127.0.0.1")
	f(strict, "https://localhost:8443/", false, "loopback")
	f(strict, "https://[::1]/", false, "loopback")
	f(strict, "https://[::ffff:127.0.0.1]/", false, "loopback")
	f(strict, "https://private.example/", false, "private address 10.0.0.5")
	f(strict, "https://mixed.example/", false, "loopback address ::1")
	f(strict, "https://169.254.169.254/latest/meta-data", false, "link-local")
	f(strict, "https://100.64.1.1/", false, "carrier-grade NAT")
	f(strict, "https://0.0.0.0/", false, "unspecified")
	f(strict, "https://[fe80::1%25eth0]/", false, "link-local")
	f(strict, "https://unknown.example/", false, "does not resolve")
	f(strict, "https://slow.example/", false, "does not resolve")

	f(lax, "http://127.0.0.1:8080/hook", true, "")
	f(lax, "https://private.example/", true, "")
	f(lax, "https://user@127.0.0.1/", false, "user name")
	f(lax, "ws://127.0.0.1/", false, "https URL")
}

func TestDialControl(t *testing.T) {
	p := policy{}
	for _, addr := range []string{"127.0.0.1:443", "[::1]:443", "10.0.0.1:80", "[fe80::1%eth0]:443", "[::ffff:192.168.0.1]:443"} {
		if err := p.control("tcp", addr, nil); !errors.Is(err, botapi.ErrWebhookURL) {
			t.Errorf("control(%s) = %v, want ErrWebhookURL", addr, err)
		}
	}
	if err := p.control("tcp", "93.184.216.34:443", nil); err != nil {
		t.Errorf("control(public) = %v", err)
	}
	if err := p.control("tcp", "nonsense", nil); err == nil {
		t.Error("control(nonsense) = nil")
	}
	if err := (policy{allowPrivate: true}).control("tcp", "127.0.0.1:443", nil); err != nil {
		t.Errorf("control with AllowPrivate = %v", err)
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"https://public.example/webhook/abc", "http://127.0.0.1:8080/", "https://user:pw@h/",
		"https:opaque", "https:///x", "https://[fe80::1%25eth0]/", "https://%zz/", "HTTPS://H.EXAMPLE:443/p?q#f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, p := range []policy{{}, {allowHTTP: true}} {
			u, err := p.parseURL(raw)
			if err != nil {
				if !errors.Is(err, botapi.ErrWebhookURL) {
					t.Fatalf("parseURL(%q) = %v, not ErrWebhookURL", raw, err)
				}
				continue
			}
			if len(raw) > MaxURLLen || u.User != nil || u.Hostname() == "" ||
				(u.Scheme != "https" && !(p.allowHTTP && u.Scheme == "http")) {
				t.Fatalf("parseURL(%q) accepted %#v", raw, u)
			}
		}
	})
}
