package webhook

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"syscall"

	"github.com/gonets/gonets/bots/botapi"
)

// MaxURLLen is the longest webhook URL accepted, in bytes.
const MaxURLLen = 2048

// Resolver looks up a host's addresses when a subscription is added;
// *net.Resolver is one. Tests pass a fake.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// policy is the URL policy: which URLs a bot may subscribe and which
// addresses a delivery may dial.
type policy struct {
	allowPrivate, allowHTTP bool
}

// parseURL checks raw's form: length, scheme, host, no user info.
func (p policy) parseURL(raw string) (*url.URL, error) {
	if len(raw) > MaxURLLen {
		return nil, botapi.Errorf(botapi.ErrWebhookURL, "webhook URL is longer than %d bytes", MaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" {
		return nil, botapi.Errorf(botapi.ErrWebhookURL, "webhook URL is not a valid absolute URL")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && p.allowHTTP:
	case u.Scheme == "http":
		return nil, botapi.Errorf(botapi.ErrWebhookURL, "webhook URL must use https")
	default:
		return nil, botapi.Errorf(botapi.ErrWebhookURL, "webhook URL must be an https URL")
	}
	if u.User != nil {
		return nil, botapi.Errorf(botapi.ErrWebhookURL, "webhook URL must not carry a user name or password")
	}
	if u.Hostname() == "" {
		return nil, botapi.Errorf(botapi.ErrWebhookURL, "webhook URL has no host")
	}
	return u, nil
}

// checkHost refuses a host that is, or resolves to, an address the
// policy does not allow. r resolves names; ctx bounds it.
func (p policy) checkHost(ctx context.Context, r Resolver, host string) error {
	if a, err := netip.ParseAddr(host); err == nil {
		return p.checkAddr(a)
	}
	if p.allowPrivate {
		return nil
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return botapi.Errorf(botapi.ErrWebhookURL, "webhook host %q does not resolve", host)
	}
	for _, a := range addrs {
		if err := p.checkAddr(a); err != nil {
			return err
		}
	}
	return nil
}

// checkAddr refuses an address the policy does not allow.
func (p policy) checkAddr(a netip.Addr) error {
	if p.allowPrivate {
		return nil
	}
	if kind := blocked(a); kind != "" {
		return botapi.Errorf(botapi.ErrWebhookURL,
			"webhook URL resolves to %s address %s; only public addresses are allowed", kind, a)
	}
	return nil
}

// control is the delivery dialer's Control: it checks the address
// actually dialled, after resolution, so that a name that resolved to a
// public address at subscription and resolves to a private one now
// (DNS rebinding) is refused.
func (p policy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook: dial %s %q: %w", network, address, err)
	}
	return p.checkAddr(ap.Addr())
}

var (
	// nat64 is the well-known NAT64 prefix (RFC 6052): its addresses
	// embed an IPv4 address, checked as such.
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
	// localNAT64 is the local-use NAT64 prefix (RFC 8215), translated by
	// the operator's own gateway into an IPv4 address whose place in the
	// address depends on the prefix length the operator chose: refused.
	localNAT64 = netip.MustParsePrefix("64:ff9b:1::/48")
	// sixToFour is 6to4 (RFC 3056): bytes 2 to 5 are an IPv4 address,
	// checked as such.
	sixToFour = netip.MustParsePrefix("2002::/16")
	// teredo is Teredo (RFC 4380): bytes 4 to 7 are the server's IPv4
	// address and bytes 12 to 15 the client's, inverted; both are
	// checked.
	teredo   = netip.MustParsePrefix("2001::/32")
	reserved = []struct {
		prefix netip.Prefix
		kind   string
	}{
		{netip.MustParsePrefix("0.0.0.0/8"), "an unspecified"},
		{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT"},
		{netip.MustParsePrefix("192.0.0.0/24"), "a reserved"},
		{netip.MustParsePrefix("198.18.0.0/15"), "a reserved"},
		{netip.MustParsePrefix("240.0.0.0/4"), "a reserved"},
		{netip.MustParsePrefix("fec0::/10"), "a site-local"},
	}
)

// blocked says what kind of non-public address a is ("a loopback",
// ...), or "" for a public one. An IPv6 address that carries an IPv4
// one (IPv4-mapped, NAT64, 6to4, Teredo) is checked as that address.
func blocked(a netip.Addr) string {
	a = a.WithZone("").Unmap()
	if a.Is6() {
		b := a.As16()
		switch {
		case localNAT64.Contains(a):
			return "a local NAT64"
		case nat64.Contains(a):
			a = netip.AddrFrom4([4]byte(b[12:]))
		case sixToFour.Contains(a):
			a = netip.AddrFrom4([4]byte(b[2:6]))
		case teredo.Contains(a):
			if kind := blocked4(netip.AddrFrom4([4]byte(b[4:8]))); kind != "" {
				return kind
			}
			a = netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]})
		}
	}
	return blocked4(a)
}

// blocked4 is blocked for an address that carries no other.
func blocked4(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "an invalid"
	case a.IsUnspecified():
		return "an unspecified"
	case a.IsLoopback():
		return "a loopback"
	case a.IsPrivate():
		return "a private"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "a link-local"
	case a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return "a multicast"
	}
	for _, r := range reserved {
		if r.prefix.Contains(a) {
			return r.kind
		}
	}
	return ""
}
