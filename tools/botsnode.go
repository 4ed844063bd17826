package tools

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/gonets/gonets/bots"
	"github.com/gonets/gonets/bots/botapi"
	"github.com/gonets/gonets/bots/webhook"
	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/media"
	"github.com/gonets/gonets/media/mediahttp"
	"github.com/gonets/gonets/storage"
)

// mediaConfig is the [media] section: attachments, uploaded to and
// downloaded from the public listener (docs/media.md).
type mediaConfig struct {
	// Enabled stores attachments; on only while the public listener is.
	Enabled bool `toml:"enabled"`
	// MaxFileMB caps one file, in MiB. Default: 4096 (4 GiB).
	MaxFileMB int64 `toml:"max_file_mb"`
	// MaxUserDayMB caps what one user uploads per UTC day, in MiB.
	// Default: 20480 (20 GiB).
	MaxUserDayMB int64 `toml:"max_user_day_mb"`
	// GCGrace is how long a file no message references is kept.
	// Default: 24 h.
	GCGrace duration `toml:"gc_grace"`
	// UploadTTL is how long an unfinished upload may stay idle.
	// Default: 24 h.
	UploadTTL duration `toml:"upload_ttl"`
	// GCInterval is how often files and uploads are collected.
	// Default: 10 min.
	GCInterval duration `toml:"gc_interval"`
}

// botsConfig is the [bots] section: the bot platform and its Bot API
// on the public listener (docs/bots.md).
type botsConfig struct {
	// Enabled serves bots; on only while the accounts (identity) and the
	// public listener are.
	Enabled bool `toml:"enabled"`
	// RateLimit is each bot's Bot API requests per second. Default: 30.
	RateLimit float64 `toml:"rate_limit"`
	// WebhookAllowPrivate lets webhooks point at loopback, private and
	// link-local addresses (tests, a bot beside the node). Default: off.
	WebhookAllowPrivate bool `toml:"webhook_allow_private"`
	// WebhookGiveUp is how long an update is retried to a webhook
	// before it is dropped. Default: 1 h.
	WebhookGiveUp duration `toml:"webhook_give_up"`
	// WebhookDisableAfter is how long a webhook may fail without a break
	// before it is removed. Default: 24 h; negative: never.
	WebhookDisableAfter duration `toml:"webhook_disable_after"`
	// WebhookRoots is a PEM file of CAs that webhooks' certificates may
	// chain to, besides the system's. Default: none.
	WebhookRoots string `toml:"webhook_roots"`
}

func defaultMedia() mediaConfig {
	return mediaConfig{Enabled: true, MaxFileMB: 4096, MaxUserDayMB: 20480,
		GCGrace: duration(24 * time.Hour), UploadTTL: duration(24 * time.Hour), GCInterval: duration(10 * time.Minute)}
}

func defaultBots() botsConfig {
	return botsConfig{Enabled: true, RateLimit: 30, WebhookGiveUp: duration(time.Hour), WebhookDisableAfter: duration(24 * time.Hour)}
}

// validateBots checks [media] and [bots].
func (c *config) validateBots() error {
	m, b := c.Media, c.Bots
	switch {
	case m.MaxFileMB < 0 || m.MaxFileMB > 1<<20:
		return fmt.Errorf("media.max_file_mb %d: from 1 to 1048576", m.MaxFileMB)
	case m.MaxUserDayMB < 0:
		return fmt.Errorf("media.max_user_day_mb %d: must not be negative", m.MaxUserDayMB)
	case m.GCGrace < 0 || m.UploadTTL < 0 || m.GCInterval < 0:
		return errors.New("media: gc_grace, upload_ttl and gc_interval must not be negative")
	case m.GCInterval != 0 && time.Duration(m.GCInterval) < time.Second:
		return fmt.Errorf("media.gc_interval %v: at least 1s", time.Duration(m.GCInterval))
	case b.RateLimit < 0 || b.RateLimit > 10000:
		return fmt.Errorf("bots.rate_limit %v: from 1 to 10000 a second", b.RateLimit)
	case b.WebhookGiveUp < 0:
		return errors.New("bots.webhook_give_up must not be negative")
	}
	return nil
}

// publicURL is the node's public base URL: state.public_url, or
// https://127.0.0.1:<the public listener's port>.
func (n *node) publicURL() string {
	if u := strings.TrimRight(n.cfg.State.PublicURL, "/"); u != "" {
		return u
	}
	if p := n.publicPort(); p != "" {
		return "https://" + net.JoinHostPort("127.0.0.1", p)
	}
	return ""
}

// derivedKey is a key of the node's for purpose, derived from its token
// key's seed: kept across restarts with the data directory.
func derivedKey(nodeKey ed25519.PrivateKey, purpose string) []byte {
	m := hmac.New(sha256.New, nodeKey.Seed())
	m.Write([]byte("gonets " + purpose))
	return m.Sum(nil)
}

// mediaNode is the node's attachments: the store and its HTTP side.
type mediaNode struct {
	store *media.Store
	srv   *mediahttp.Server
	stop  context.CancelFunc
	done  chan struct{}
}

// startMedia opens the media store under the data directory and its
// HTTP side; nil when [media] or the public listener is off. The
// broker, once built, is set with setBroker (downloads check devices).
func (n *node) startMedia(v *token.Verifier, nodeKey ed25519.PrivateKey, set *metrics.Set, ended func() *broker.Broker) (*mediaNode, error) {
	mc := n.cfg.Media
	if !mc.Enabled || n.publicLn == nil {
		return nil, nil
	}
	st, err := media.Open(media.Options{
		Dir:           filepath.Join(n.dataDir, "media"),
		MaxFile:       mc.MaxFileMB << 20,
		MaxPerUserDay: mc.MaxUserDayMB << 20,
		GCGrace:       time.Duration(mc.GCGrace),
		UploadTTL:     time.Duration(mc.UploadTTL),
		Log:           n.log.With("component", "media"),
		Metrics:       set,
	})
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	store := n.store
	srv, err := mediahttp.New(mediahttp.Options{
		Store: st,
		Authenticate: func(tok string) (uint64, error) {
			c, err := v.Verify(tok)
			if err != nil {
				return 0, err
			}
			if b := ended(); b != nil {
				if err := b.CheckDevice(storage.UserID(c.User), storage.DeviceID(c.Device)); err != nil {
					return 0, err
				}
			}
			return c.User, nil
		},
		Access: func(ctx context.Context, user, chat, seq uint64) ([]byte, wire.MsgKind, error) {
			if _, err := store.Member(storage.ChatID(chat), storage.UserID(user)); err != nil {
				return nil, 0, err
			}
			r, err := store.Get(storage.ChatID(chat), seq)
			if err != nil {
				return nil, 0, err
			}
			return r.Body, wire.MsgKind(r.Kind), nil
		},
		PublicURL: n.publicURL(),
		Key:       derivedKey(nodeKey, "media"),
		Log:       n.log.With("component", "media"),
	})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("media: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	m := &mediaNode{store: st, srv: srv, stop: stop, done: make(chan struct{})}
	every := time.Duration(mc.GCInterval)
	if every <= 0 {
		every = 10 * time.Minute
	}
	go func() {
		defer close(m.done)
		srv.RunGC(ctx, every)
	}()
	return m, nil
}

// close stops the collector and closes the store.
func (m *mediaNode) close() {
	if m == nil {
		return
	}
	m.stop()
	<-m.done
	m.store.Close()
}

// botFiles adapts mediahttp to bots.Files.
type botFiles struct{ srv *mediahttp.Server }

func (f botFiles) NewBotUpload(bot uint64, typ string) (string, string, error) {
	u, tok, err := f.srv.NewBotUpload(bot, typ)
	if errors.Is(err, mediahttp.ErrTooManyUploads) {
		return "", "", botapi.Errorf(botapi.ErrTooManyRequests, "too many uploads waiting for their files: finish or let them expire")
	}
	return u, tok, err
}

func (f botFiles) Resolve(bot uint64, tok string) (*wire.Attachment, bool, error) {
	a, err := f.srv.Resolve(bot, tok)
	switch {
	case errors.Is(err, mediahttp.ErrNotReady):
		return nil, false, nil
	case errors.Is(err, mediahttp.ErrUploadFailed):
		return nil, false, botapi.Errorf(botapi.ErrBadRequest, "upload failed: upload the file again")
	case err != nil:
		return nil, false, err
	}
	return a, true, nil
}

func (f botFiles) SignedURL(chat, seq uint64, sha string, ttl time.Duration) string {
	return f.srv.SignedURL(chat, seq, sha, ttl)
}

// botHooks adapts the webhook store and deliverer to bots.Webhooks.
type botHooks struct {
	store *webhook.Store
	d     *webhook.Deliverer
}

func (h botHooks) List(bot int64) []botapi.Subscription { return h.store.List(bot) }
func (h botHooks) Add(bot int64, url, secret string, types []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.store.Add(ctx, bot, url, secret, types)
}
func (h botHooks) Remove(bot int64, url string) error { return h.store.Remove(bot, url) }
func (h botHooks) Notify(bot int64)                   { h.d.Notify(bot) }
func (h botHooks) Active(bot int64) bool              { return h.store.Active(bot) }

// webhookRoots returns the system's roots and the CAs in file; nil (the
// system's) when file is "".
func webhookRoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("bots.webhook_roots: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("bots.webhook_roots: %s holds no PEM certificate", file)
	}
	return pool, nil
}

// botsNode is the node's bot platform.
type botsNode struct {
	log   *slog.Logger
	subs  *webhook.Store
	node  *bots.Node
	api   *botapi.Server
	hooks *webhook.Deliverer
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

// startBots builds the bot platform over the accounts; nil when [bots],
// the accounts or the public listener is off. files may be nil.
func (n *node) startBots(accounts *identity.Accounts, files *mediaNode, nodeKey ed25519.PrivateKey, log *slog.Logger, set *metrics.Set) (*botsNode, error) {
	bc := n.cfg.Bots
	if !bc.Enabled || accounts == nil || n.publicLn == nil {
		return nil, nil
	}
	kv, err := accounts.Table("webhooks")
	if err != nil {
		return nil, err
	}
	wstore, err := webhook.NewStore(kv, webhook.StoreOptions{AllowPrivate: bc.WebhookAllowPrivate})
	if err != nil {
		return nil, err
	}
	o := bots.Options{Accounts: accounts, Key: derivedKey(nodeKey, "bots"), Log: log}
	if files != nil {
		o.Files = botFiles{files.srv}
	}
	bn := &botsNode{log: log, subs: wstore}
	hooks := &botHooks{store: wstore}
	o.Webhooks = hooks
	if bn.node, err = bots.New(o); err != nil {
		return nil, err
	}
	roots, err := webhookRoots(bc.WebhookRoots)
	if err != nil {
		return nil, err
	}
	if bn.hooks, err = webhook.New(webhook.Options{Store: wstore, Source: bn.node.Source(), AllowPrivate: bc.WebhookAllowPrivate,
		GiveUpAfter: time.Duration(bc.WebhookGiveUp), DisableAfter: time.Duration(bc.WebhookDisableAfter), RootCAs: roots, Log: log}); err != nil {
		return nil, err
	}
	hooks.d = bn.hooks
	d := bn.hooks
	set.RegisterMetricsWriter(func(w io.Writer) {
		st := d.Stats()
		metrics.WriteCounterUint64(w, "gonets_bots_webhook_delivered_total", st.Delivered)
		metrics.WriteCounterUint64(w, "gonets_bots_webhook_failed_total", st.Failed)
		metrics.WriteCounterUint64(w, "gonets_bots_webhook_given_up_total", st.GivenUp)
		metrics.WriteCounterUint64(w, "gonets_bots_webhook_disabled_total", st.Disabled)
	})
	bn.api = botapi.New(botapi.Options{Backend: bn.node, RateLimit: bc.RateLimit, Log: log})
	return bn, nil
}

// tokenRevoked drops what a bot's old token set up when it is revoked
// or replaced: its webhooks (someone holding a leaked token may have
// planted one). Its long polls in flight end within their timeout; new
// requests with the old token are refused. A nil botsNode does nothing.
func (bn *botsNode) tokenRevoked(bot storage.UserID) {
	if bn == nil {
		return
	}
	if err := bn.subs.RemoveAll(int64(bot)); err != nil {
		bn.log.Warn("bots: a revoked bot's webhooks not removed", "bot", bot, "err", err)
	}
}

// start joins the platform to the broker and starts webhook delivery.
func (bn *botsNode) start(b *broker.Broker) {
	if bn == nil {
		return
	}
	bn.node.Start(b)
	ctx, stop := context.WithCancel(context.Background())
	bn.stop = stop
	bn.wg.Add(1)
	go func() {
		defer bn.wg.Done()
		bn.hooks.Run(ctx)
	}()
}

// close stops webhook delivery and the API's long polls.
func (bn *botsNode) close() {
	if bn == nil {
		return
	}
	if bn.stop != nil {
		bn.stop()
	}
	bn.api.Close()
	bn.wg.Wait()
}

// routes mounts the Bot API (at the root, as MAX serves it) and the
// media API (/media/) on the public mux.
func (n *node) botRoutes(mux *http.ServeMux) {
	if n.media != nil {
		mux.Handle("/media/", n.media.srv)
	}
	if n.bots != nil {
		n.bots.api.Register(mux)
	}
}
