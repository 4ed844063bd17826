package tools

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/gonets/gonets/callsfu"
	"github.com/gonets/gonets/storage"
)

// writeFile writes s to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, s string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "gonets.toml", `
[node]
name = "n1"
data_dir = "data"
quic_addr = "127.0.0.1:9443"
shutdown_timeout = "3s"
log_level = "debug"

[tls]
cert = "/etc/gonets/tls.crt"
key = "tls.key"
hosts = ["chat.example.org"]

[auth]
public_keys = ["idp.pub"]
leeway = "1m"

[storage]
shards = 64
max_body_bytes = "128KiB"
max_batch_bytes = 2097152
cache_bytes = "1GiB"
sweep_interval = "-1s"

[broker]
push_coalesce_window = "-1s"
tcp_heartbeat = "45s"

[storage.retention.group]
max_age = "720h"
max_count = 100000

[calls]
udp_port = 17444
ice_tcp = false
public_ips = ["203.0.113.7", "2001:db8::7"]
max_publishers = 4
silence_timeout = "20s"
`)
	c, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	want.Node.Name = "n1"
	want.Node.DataDir = filepath.Join(dir, "data")
	want.Node.QUICAddr = "127.0.0.1:9443"
	want.Node.ShutdownTimeout = duration(3 * time.Second)
	want.Node.LogLevel = slog.LevelDebug
	want.TLS = tlsConfig{Cert: "/etc/gonets/tls.crt", Key: filepath.Join(dir, "tls.key"), Hosts: []string{"chat.example.org"}}
	want.Auth = authConfig{PublicKeys: []string{filepath.Join(dir, "idp.pub")}, Leeway: duration(time.Minute)}
	want.Storage.Shards = 64
	want.Storage.MaxBodyBytes = 128 << 10
	want.Storage.MaxBatchBytes = 2 << 20
	want.Storage.CacheBytes = 1 << 30
	want.Storage.SweepInterval = duration(-time.Second)
	want.Storage.Retention.Group = retention{MaxAge: duration(720 * time.Hour), MaxCount: 100_000}
	want.Broker.PushCoalesceWindow = duration(-time.Second)
	want.Broker.TCPHeartbeat = duration(45 * time.Second)
	want.Calls = callsConfig{Enabled: true, UDPPort: 17444, PublicIPs: []string{"203.0.113.7", "2001:db8::7"},
		MaxPublishers: 4, SilenceTimeout: duration(20 * time.Second), TURNPort: defaultTURNPort}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("loadConfig =\n%+v\nwant\n%+v", c, want)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}

	opts, err := c.storageOptions()
	if err != nil {
		t.Fatal(err)
	}
	var wantOpts storage.Options
	wantOpts.Shards = 64
	wantOpts.MaxBodyBytes = 128 << 10
	wantOpts.MaxBatchBytes = 2 << 20
	wantOpts.CacheBytes = 1 << 30
	wantOpts.SweepInterval = -time.Second
	wantOpts.Retention[storage.ChatGroup] = storage.Retention{MaxAge: 720 * time.Hour, MaxCount: 100_000}
	if !reflect.DeepEqual(opts, wantOpts) {
		t.Fatalf("storageOptions =\n%+v\nwant\n%+v", opts, wantOpts)
	}
	bopts, err := c.brokerOptions()
	if err != nil || bopts.TCPHeartbeat != 45*time.Second {
		t.Fatalf("brokerOptions: TCPHeartbeat %v, %v; want 45s", bopts.TCPHeartbeat, err)
	}
	if err != nil || bopts.CoalesceWindow != -time.Second {
		t.Fatalf("brokerOptions: CoalesceWindow %v, %v; want -1s (disabled)", bopts.CoalesceWindow, err)
	}
	wantSFU := callsfu.Options{ListenAddr: "127.0.0.1:17444", NAT1To1IPs: []string{"203.0.113.7", "2001:db8::7"}, DisableTCP: true,
		MaxPublishers: 4, SilenceTimeout: 20 * time.Second}
	if got := c.sfuOptions(); !reflect.DeepEqual(got, wantSFU) {
		t.Fatalf("sfuOptions =\n%+v\nwant\n%+v", got, wantSFU)
	}
}

// TestCallsConfig: the [calls] defaults are the SFU on :7444 with ICE-TCP,
// broker.call_ring_timeout reaches the broker, and turning calls off
// takes the media port out of what the node listens on.
func TestCallsConfig(t *testing.T) {
	c := defaultConfig()
	if !c.Calls.Enabled || !c.Calls.ICETCP || c.mediaAddr() != ":7444" {
		t.Fatalf("calls defaults %+v at %q", c.Calls, c.mediaAddr())
	}
	// A node bound to one address offers its media there too.
	bound := defaultConfig()
	bound.Node.QUICAddr = "127.0.0.1:7443"
	if got := bound.mediaAddr(); got != "127.0.0.1:7444" {
		t.Fatalf("media address %q with quic_addr 127.0.0.1:7443, want 127.0.0.1:7444", got)
	}
	media := func(c config) []string {
		var keys []string
		for _, a := range c.listenAddrs() {
			if strings.HasPrefix(a.key, "calls.") {
				keys = append(keys, a.network+" "+a.addr)
			}
		}
		return keys
	}
	if got := media(c); !slices.Equal(got, []string{"udp :7444", "tcp :7444"}) {
		t.Fatalf("media listeners %q", got)
	}
	c.Calls.ICETCP = false
	if got := media(c); !slices.Equal(got, []string{"udp :7444"}) {
		t.Fatalf("media listeners without ICE-TCP %q", got)
	}
	c.Calls.Enabled = false
	if got := media(c); len(got) != 0 {
		t.Fatalf("media listeners with calls off %q", got)
	}
	c.Broker.CallRingTimeout = duration(30 * time.Second)
	if bopts, err := c.brokerOptions(); err != nil || bopts.CallRingTimeout != 30*time.Second {
		t.Fatalf("brokerOptions: CallRingTimeout %v, %v", bopts.CallRingTimeout, err)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	dir := t.TempDir()
	f := func(body, want string) {
		t.Helper()
		path := writeFile(t, dir, "bad.toml", body)
		_, err := loadConfig(path)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("loadConfig(%q) = %v, want an error containing %q", body, err, want)
		}
		if !strings.Contains(err.Error(), path) {
			t.Fatalf("error %q does not name the file", err)
		}
	}
	f("[storage]\nshardz = 3\n", `unknown key "storage.shardz"`)
	f("[nodes]\nname = \"x\"\n", `unknown keys "nodes", "nodes.name"`)
	f("[storage.retention.chat]\nmax_age = \"1h\"\n", `"storage.retention.chat"`)
	f("[storage]\ndedupe_window = 3600\n", `"storage.dedupe_window"): want a duration string like "24h", got 3600`)
	f("[storage]\ndedupe_window = \"1 day\"\n", `"storage.dedupe_window"): want a duration string`)
	f("[storage]\nmax_body_bytes = \"64MB\"\n", `"storage.max_body_bytes"): size "64MB": want an integer of bytes, optionally followed by KiB`)
	f("[storage]\nmax_body_bytes = -1\n", `size -1 is negative`)
	f("[storage]\nmax_body_bytes = 1.5\n", `want a size`)
	f("[storage]\nmax_members = 1.5\n", `"storage.max_members"`)
	f("[storage]\nshards = \"many\"\n", `"storage.shards"`)
	f("[node]\nlog_level = \"loud\"\n", `"node.log_level"`)
	f("[calls]\nudp_port = \"7444\"\n", `"calls.udp_port"`)
	f("[calls]\npublic_ip = \"203.0.113.7\"\n", `unknown key "calls.public_ip"`)
	f("[node\n", "to end table name")
	if _, err := loadConfig(filepath.Join(dir, "absent.toml")); err == nil {
		t.Fatal("a missing file loaded")
	}
}

func TestConfigValidate(t *testing.T) {
	f := func(change func(*config), want string) {
		t.Helper()
		c := defaultConfig()
		change(&c)
		err := c.validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("validate = %v, want an error containing %q", err, want)
		}
	}
	f(func(c *config) { c.Node.DataDir = "" }, "node.data_dir is empty")
	f(func(c *config) { c.Node.QUICAddr = "" }, "node.quic_addr is empty")
	f(func(c *config) { c.Node.HTTPAddr = "" }, "node.http_addr is empty")
	f(func(c *config) { c.Node.QUICAddr = "7443" }, `node.quic_addr "7443": want host:port`)
	f(func(c *config) { c.Node.QUICAddr = ":70000" }, `node.quic_addr ":70000": port "70000" is not a number from 0 to 65535`)
	f(func(c *config) { c.Node.QUICAddr = "127.0.0.1:-1" }, `node.quic_addr "127.0.0.1:-1": port "-1"`)
	f(func(c *config) { c.Node.HTTPAddr = "localhost:http" }, `node.http_addr "localhost:http": port "http" is not a number`)
	f(func(c *config) { c.Node.HTTPAddr = "127.0.0.1:8080:1" }, `node.http_addr "127.0.0.1:8080:1": want host:port`)
	f(func(c *config) { c.Node.HTTPAddr = "my host:8080" }, `node.http_addr "my host:8080": host "my host" is neither`)
	f(func(c *config) { c.Node.ShutdownTimeout = 0 }, "node.shutdown_timeout 0s must be positive")
	f(func(c *config) { c.Node.GOGC = -1 }, "node.gogc -1 is negative")
	f(func(c *config) { c.Node.MemoryLimit = -1 }, "node.memory_limit -1 is negative")
	f(func(c *config) { c.TLS.Cert = "a.crt" }, "tls.cert and tls.key must be set together")
	f(func(c *config) { c.TLS.Key = "a.key" }, "tls.cert and tls.key must be set together")
	f(func(c *config) { c.Auth.Leeway = duration(-time.Second) }, "auth.leeway -1s is negative")
	f(func(c *config) { c.Auth.PublicKeys = []string{""} }, "auth.public_keys holds an empty path")
	f(func(c *config) { c.Storage.DedupeWindow = duration(-time.Hour) }, "storage.dedupe_window -1h0m0s is negative")
	f(func(c *config) { c.Storage.Retention.Channel.MaxAge = duration(-1) }, "storage.retention.channel.max_age -1ns is negative")
	f(func(c *config) { c.Storage.Shards = -1 }, "storage.shards -1 is negative")
	f(func(c *config) { c.Storage.CacheChats = -2 }, "storage.cache_chats -2 is negative")
	f(func(c *config) { c.Storage.MaxMembers = -5 }, "storage.max_members -5 is negative")
	f(func(c *config) { c.Storage.Retention.Direct.MaxCount = -1 }, "storage.retention.direct.max_count -1 is negative")
	f(func(c *config) { c.Broker.CallRingTimeout = duration(-time.Second) }, "broker.call_ring_timeout -1s is negative")
	f(func(c *config) { c.Calls.UDPPort = 70000 }, "calls.udp_port 70000 is not a port number from 0 to 65535")
	f(func(c *config) { c.Calls.UDPPort = -1 }, "calls.udp_port -1 is not a port number")
	f(func(c *config) { c.Calls.PublicIPs = []string{"203.0.113.7", "gonets.example.org"} }, `calls.public_ips: "gonets.example.org" is not an IP address`)
	f(func(c *config) { c.Calls.MaxPublishers = -1 }, "calls.max_publishers -1 is negative")
	f(func(c *config) { c.Calls.MaxTracks = -2 }, "calls.max_tracks -2 is negative")
	f(func(c *config) { c.Calls.SilenceTimeout = duration(-time.Second) }, "calls.silence_timeout -1s is negative")
	f(func(c *config) { c.Calls.ICEFailedTimeout = duration(-time.Second) }, "calls.ice_failed_timeout -1s is negative")
	f(func(c *config) { c.Calls.ICEDisconnectedTimeout = duration(-time.Second) }, "calls.ice_disconnected_timeout -1s is negative")
	f(func(c *config) { c.Calls.UDPPort = 7443 }, "calls.udp_port 7443 is node.quic_addr's port too (UDP); give the media a port of its own")
	f(func(c *config) { c.Node.TCPAddr = ":9000"; c.Calls.UDPPort = 9000 }, "calls.udp_port 9000 is node.tcp_addr's port too (TCP)")
	f(func(c *config) { c.Node.HTTPAddr = "127.0.0.1:7444" }, "calls.udp_port 7444 is node.http_addr's port too (TCP)")
	f(func(c *config) { c.Node.PublicAddr = "" }, `node.public_addr is empty; "off" turns the public listener off`)
	f(func(c *config) { c.Node.PublicAddr = "7445" }, `node.public_addr "7445": want host:port`)
	f(func(c *config) { c.Node.PublicAddr = ":7443" }, `node.public_addr ":7443" has node.tcp_addr's port (TCP)`)
	f(func(c *config) { c.Node.PublicAddr = "127.0.0.1:7080" }, `node.public_addr "127.0.0.1:7080" has node.http_addr's port (TCP)`)
	f(func(c *config) { c.Node.PublicAddr = ":7444" }, "calls.udp_port 7444 is node.public_addr's port too (TCP)")
	// No clash: ICE-TCP off leaves the TCP ports alone, calls off all of
	// them, and port 0 is a free port of its own.
	ok := func(change func(*config)) {
		t.Helper()
		c := defaultConfig()
		change(&c)
		if err := c.validate(); err != nil {
			t.Fatalf("validate = %v", err)
		}
	}
	ok(func(c *config) { c.Node.HTTPAddr = "127.0.0.1:7444"; c.Calls.ICETCP = false })
	ok(func(c *config) { c.Calls.UDPPort = 7443; c.Calls.Enabled = false })
	ok(func(c *config) { c.Node.QUICAddr = ":0"; c.Calls.UDPPort = 0 })
	ok(func(c *config) { c.Node.PublicAddr = "off"; c.Node.HTTPAddr = "127.0.0.1:7445" })
	ok(func(c *config) { c.Node.PublicAddr = ":7443"; c.Node.TCPAddr = "off" }) // QUIC's UDP port
	ok(func(c *config) { c.Node.PublicAddr = ":0"; c.Node.HTTPAddr = "127.0.0.1:0" })
	c := defaultConfig()
	if err := c.validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

func TestCheckListen(t *testing.T) {
	f := func(quic, http string, wantErr string, wantWarn ...string) {
		t.Helper()
		c := defaultConfig()
		c.Node.QUICAddr, c.Node.HTTPAddr = quic, http
		c.Calls.UDPPort = 0
		warnings, err := c.checkListen(context.Background())
		if (err == nil) != (wantErr == "") || err != nil && !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("checkListen(%q, %q) = %v, want %q", quic, http, err, wantErr)
		}
		if len(warnings) != len(wantWarn) {
			t.Fatalf("checkListen(%q, %q) warned %q, want %q", quic, http, warnings, wantWarn)
		}
		for i, w := range wantWarn {
			if !strings.Contains(warnings[i], w) {
				t.Fatalf("checkListen(%q, %q) warned %q, want %q", quic, http, warnings, wantWarn)
			}
		}
	}
	f("127.0.0.1:0", "localhost:0", "")
	// In use: a warning, since the node to be restarted holds them.
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	f(udp.LocalAddr().String(), tcp.Addr().String(), "",
		"node.quic_addr "+udp.LocalAddr().String()+": address in use (UDP)",
		"node.http_addr "+tcp.Addr().String()+": address in use (TCP)")
	// The media port is checked like the others, UDP and TCP.
	media, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer media.Close()
	c := defaultConfig()
	c.Node.QUICAddr, c.Node.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	c.Calls.UDPPort = media.LocalAddr().(*net.UDPAddr).Port
	warnings, err := c.checkListen(context.Background())
	want := fmt.Sprintf("calls.udp_port 127.0.0.1:%d: address in use (UDP)", c.Calls.UDPPort)
	if err != nil || len(warnings) != 1 || !strings.HasPrefix(warnings[0], want) {
		t.Fatalf("checkListen with the media port in use = %q, %v; want %q", warnings, err, want)
	}
	// Not on this host, and not a host at all.
	f("192.0.2.1:0", "127.0.0.1:0", `node.quic_addr "192.0.2.1:0": cannot listen`)
	f("127.0.0.1:0", "nosuchhost.invalid:0", `node.http_addr "nosuchhost.invalid:0": host "nosuchhost.invalid" does not resolve`)
}

func TestParseSize(t *testing.T) {
	f := func(s string, want int64) {
		t.Helper()
		got, err := parseSize(s)
		if err != nil || got != want {
			t.Fatalf("parseSize(%q) = %d, %v, want %d", s, got, err, want)
		}
	}
	f("0", 0)
	f("4096", 4096)
	f("17B", 17)
	f("512KiB", 512<<10)
	f("64MiB", 64<<20)
	f(" 64 MiB ", 64<<20)
	f("1GiB", 1<<30)
	f("2TiB", 2<<40)
	bad := func(s string) {
		t.Helper()
		if n, err := parseSize(s); err == nil {
			t.Fatalf("parseSize(%q) = %d, want an error", s, n)
		}
	}
	bad("")
	bad("MiB")
	bad("64MB")
	bad("64mib")
	bad("1.5GiB")
	bad("-1")
	bad("64 MiB extra")
	bad("9999999999999TiB")
	bad("99999999999999999999")
}

func TestLoadPublicKeys(t *testing.T) {
	dir := t.TempDir()
	pubPEM := func() ([]byte, ed25519.PublicKey) {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), pub
	}
	a, ka := pubPEM()
	b, kb := pubPEM()
	c, kc := pubPEM()
	one := writeFile(t, dir, "one.pub", string(a))
	two := writeFile(t, dir, "two.pub", "# rotation: old key, then new\n"+string(b)+string(c))
	keys, err := loadPublicKeys([]string{one, two})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || !keys[0].Equal(ka) || !keys[1].Equal(kb) || !keys[2].Equal(kc) {
		t.Fatalf("loadPublicKeys = %x", keys)
	}

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	privDER, _ := x509.MarshalPKCS8PrivateKey(priv)
	f := func(name, body, want string) {
		t.Helper()
		p := writeFile(t, dir, name, body)
		_, err := loadPublicKeys([]string{one, p})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Fatalf("%s: %v, want an error naming the file and containing %q", name, err, want)
		}
	}
	f("empty.pub", "", `no PEM "PUBLIC KEY" block`)
	f("base64.pub", "MCowBQYDK2VwAyEA", `no PEM "PUBLIC KEY" block`)
	f("ecdsa.pub", string(a)+string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER})), "block 2 is a *ecdsa.PublicKey, not an Ed25519 key")
	f("private.pub", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})), `block 1 is a "PRIVATE KEY", want a "PUBLIC KEY"`)
	f("garbage.pub", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("nope")})), "block 1:")
	if _, err := loadPublicKeys([]string{filepath.Join(dir, "absent.pub")}); err == nil || !strings.Contains(err.Error(), "absent.pub") {
		t.Fatalf("missing file: %v", err)
	}
}

// configKeys returns the dotted names of every leaf key of the config
// file, from the toml tags of config.
func configKeys() []string {
	var keys []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := prefix + f.Tag.Get("toml")
			if f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
				walk(name+".", f.Type)
				continue
			}
			keys = append(keys, name)
		}
	}
	walk("", reflect.TypeFor[config]())
	return keys
}

// commentedKey matches a commented-out key line of the example file.
var commentedKey = regexp.MustCompile(`(?m)^#\s*([a-z_]+ = .*)$`)

// TestExampleConfig keeps docs/gonets.example.toml and docs/operations.md
// in step with config: the example loads as it is (everything commented:
// the defaults), it still loads with every key uncommented, it names
// every key, and operations.md documents every key.
func TestExampleConfig(t *testing.T) {
	const example = "../docs/gonets.example.toml"
	c, err := loadConfig(example)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, defaultConfig()) {
		t.Fatalf("the example as shipped is not the defaults:\n%+v", c)
	}

	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := writeFile(t, dir, "all.toml", commentedKey.ReplaceAllString(string(b), "$1"))
	c, err = loadConfig(path)
	if err != nil {
		t.Fatalf("the example with every key uncommented: %v", err)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("the example with every key uncommented: %v", err)
	}
	opts, err := c.storageOptions()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkStorageOptions(opts); err != nil {
		t.Fatalf("the example with every key uncommented: %v", err)
	}
	var raw map[string]any
	md, err := toml.DecodeFile(path, &raw)
	if err != nil {
		t.Fatal(err)
	}
	var defined []string
	for _, k := range md.Keys() {
		defined = append(defined, k.String())
	}
	ops, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range configKeys() {
		if !slices.Contains(defined, k) {
			t.Errorf("docs/gonets.example.toml does not list %s", k)
		}
		if !strings.Contains(string(ops), "`"+k+"`") {
			t.Errorf("docs/operations.md does not document `%s`", k)
		}
	}
}
