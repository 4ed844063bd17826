package webhook

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/gonets/gonets/bots/botapi"
	"github.com/gonets/gonets/identity"
)

// Limits of a subscription.
const (
	// MaxSecretLen is the longest secret accepted, in bytes.
	MaxSecretLen = 256
	// maxTypes caps the update types a subscription names.
	maxTypes = 64
	// maxTypeLen caps the length of one update type.
	maxTypeLen = 64
)

// storePrefix starts the keys of the store's records in its KV: the
// prefix, then the bot id as 8 bytes big-endian.
const storePrefix = "botapi/webhooks/"

// StoreOptions configures a Store.
type StoreOptions struct {
	// AllowPrivate accepts URLs whose host is or resolves to a loopback,
	// private, link-local, unspecified, multicast or carrier-grade NAT
	// address. Default: false (refused).
	AllowPrivate bool
	// AllowHTTP accepts http URLs. Default: false (https only).
	AllowHTTP bool
	// Resolver resolves a URL's host when it is added. Default:
	// net.DefaultResolver.
	Resolver Resolver
	// ResolveTimeout bounds that resolution. Default: 5 s.
	ResolveTimeout time.Duration
	// MaxPerBot caps a bot's subscriptions. Default: 5.
	MaxPerBot int
	// Now stamps a subscription's time. Default: time.Now.
	Now func() time.Time
}

// record is one subscription as the store keeps it.
type record struct {
	URL         string   `json:"url"`
	Secret      string   `json:"secret,omitempty"`
	UpdateTypes []string `json:"update_types,omitempty"`
	Time        int64    `json:"time"`
}

// wants says whether the subscription takes updates of typ.
func (r *record) wants(typ string) bool {
	return len(r.UpdateTypes) == 0 || slices.Contains(r.UpdateTypes, typ)
}

// Store keeps the bots' webhook subscriptions in a durable KV, with a
// copy in memory that every read uses. Safe for concurrent use.
type Store struct {
	kv  identity.KV
	o   StoreOptions
	pol policy

	// wmu serialises the writers: each reads the bot's subscriptions,
	// writes the KV, then swaps the copy in memory under mu, so that mu
	// is never held across the KV's I/O. Taken before mu.
	wmu sync.Mutex

	mu       sync.Mutex         // guards the following
	subs     map[int64][]record // never changed in place: replaced
	watchers map[uint64]func(bot int64)
	nextW    uint64
}

// NewStore loads the subscriptions kept in kv.
func NewStore(kv identity.KV, o StoreOptions) (*Store, error) {
	if kv == nil {
		return nil, fmt.Errorf("%w: KV is required", ErrConfig)
	}
	if o.ResolveTimeout < 0 || o.MaxPerBot < 0 {
		return nil, fmt.Errorf("%w: negative ResolveTimeout or MaxPerBot", ErrConfig)
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.ResolveTimeout == 0 {
		o.ResolveTimeout = 5 * time.Second
	}
	if o.MaxPerBot == 0 {
		o.MaxPerBot = 5
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Store{
		kv:       kv,
		o:        o,
		pol:      policy{allowPrivate: o.AllowPrivate, allowHTTP: o.AllowHTTP},
		subs:     map[int64][]record{},
		watchers: map[uint64]func(int64){},
	}
	err := kv.Scan([]byte(storePrefix), func(key, value []byte) (bool, error) {
		if len(key) != len(storePrefix)+8 {
			return false, fmt.Errorf("webhook: load: malformed key %q", key)
		}
		bot := int64(binary.BigEndian.Uint64(key[len(storePrefix):]))
		var recs []record
		if err := json.Unmarshal(value, &recs); err != nil {
			return false, fmt.Errorf("webhook: load bot %d: %w", bot, err)
		}
		if len(recs) > 0 {
			s.subs[bot] = recs
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("webhook: load subscriptions: %w", err)
	}
	return s, nil
}

// List returns bot's subscriptions, in the order they were added.
func (s *Store) List(bot int64) []botapi.Subscription {
	recs := s.records(bot)
	out := make([]botapi.Subscription, len(recs))
	for i, r := range recs {
		out[i] = botapi.Subscription{URL: r.URL, Time: r.Time, UpdateTypes: append([]string{}, r.UpdateTypes...)}
	}
	return out
}

// Active says whether bot has any subscription: its updates then go to
// its webhooks, and the Bot API refuses it long polling.
func (s *Store) Active(bot int64) bool { return len(s.records(bot)) > 0 }

// Bots returns the bots that have subscriptions, in increasing order.
func (s *Store) Bots() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.subs))
}

// Add subscribes bot's webhook url, with secret ("" for none) sent back
// in the X-Max-Bot-Api-Secret header and the update types it takes
// (none: all). A subscription with the same URL is replaced. A URL the
// policy refuses is ErrWebhookURL; a bad secret, a bad type or one
// subscription too many is ErrBadRequest. ctx bounds the resolution of
// the URL's host.
func (s *Store) Add(ctx context.Context, bot int64, url, secret string, types []string) error {
	if err := checkSecret(secret); err != nil {
		return err
	}
	if err := checkTypes(types); err != nil {
		return err
	}
	u, err := s.pol.parseURL(url)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, s.o.ResolveTimeout)
	err = s.pol.checkHost(rctx, s.o.Resolver, u.Hostname())
	cancel()
	if err != nil {
		return err
	}
	rec := record{URL: url, Secret: secret, Time: s.o.Now().UnixMilli()}
	if len(types) > 0 {
		rec.UpdateTypes = slices.Compact(slices.Sorted(slices.Values(types)))
	}

	return s.update(bot, func(old []record) ([]record, error) {
		i := slices.IndexFunc(old, func(r record) bool { return r.URL == url })
		if i < 0 && len(old) >= s.o.MaxPerBot {
			return nil, botapi.Errorf(botapi.ErrBadRequest, "a bot has at most %d webhook subscriptions", s.o.MaxPerBot)
		}
		recs := slices.Clone(old)
		if i >= 0 {
			recs[i] = rec
		} else {
			recs = append(recs, rec)
		}
		return recs, nil
	})
}

// Remove unsubscribes bot's webhook url; removing one that is not
// subscribed is no error.
func (s *Store) Remove(bot int64, url string) error {
	return s.remove(bot, func(r record) bool { return r.URL == url })
}

// removeRecord removes bot's subscription r, if it is still there as
// it was (not replaced since); it says whether it did.
func (s *Store) removeRecord(bot int64, r record) (bool, error) {
	removed := false
	err := s.remove(bot, func(x record) bool {
		removed = x.URL == r.URL && x.Time == r.Time && x.Secret == r.Secret
		return removed
	})
	return removed, err
}

// remove removes bot's subscription that match says is the one.
func (s *Store) remove(bot int64, match func(record) bool) error {
	return s.update(bot, func(old []record) ([]record, error) {
		i := slices.IndexFunc(old, match)
		if i < 0 {
			return nil, errNoChange
		}
		return slices.Delete(slices.Clone(old), i, i+1), nil
	})
}

// RemoveAll unsubscribes every webhook of bot: call it when the bot is
// deleted. A running Deliverer stops delivering to them at once: a
// request in flight is cancelled, and the batch being delivered is not
// acknowledged.
func (s *Store) RemoveAll(bot int64) error {
	return s.update(bot, func(old []record) ([]record, error) {
		if len(old) == 0 {
			return nil, errNoChange
		}
		return nil, nil
	})
}

// errNoChange is what an update's change returns to write nothing.
var errNoChange = errors.New("webhook: no change")

// update replaces bot's subscriptions with what change makes of them,
// in the KV then in memory, and tells the watchers. A change that
// returns errNoChange writes nothing.
func (s *Store) update(bot int64, change func(old []record) ([]record, error)) error {
	s.wmu.Lock()
	old := s.records(bot)
	recs, err := change(old)
	if err != nil {
		s.wmu.Unlock()
		if errors.Is(err, errNoChange) {
			return nil
		}
		return err
	}
	key := binary.BigEndian.AppendUint64([]byte(storePrefix), uint64(bot))
	if len(recs) == 0 {
		err = s.kv.Delete(key)
		if err != nil {
			err = fmt.Errorf("webhook: remove bot %d: %w", bot, err)
		}
	} else {
		var v []byte
		if v, err = json.Marshal(recs); err != nil {
			err = fmt.Errorf("webhook: encode bot %d: %w", bot, err)
		} else if err = s.kv.Set(key, v); err != nil {
			err = fmt.Errorf("webhook: save bot %d: %w", bot, err)
		}
	}
	if err != nil {
		s.wmu.Unlock()
		return err
	}
	s.mu.Lock()
	if len(recs) == 0 {
		delete(s.subs, bot)
	} else {
		s.subs[bot] = recs
	}
	watchers := s.watchersLocked()
	s.mu.Unlock()
	s.wmu.Unlock()
	notify(watchers, bot)
	return nil
}

// records returns bot's subscriptions; the caller must not change them.
func (s *Store) records(bot int64) []record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subs[bot]
}

// lookup returns bot's subscription of url.
func (s *Store) lookup(bot int64, url string) (record, bool) {
	for _, r := range s.records(bot) {
		if r.URL == url {
			return r, true
		}
	}
	return record{}, false
}

// watch makes fn called with the bot after each change of its
// subscriptions, until the returned func is called. fn must not block.
func (s *Store) watch(fn func(bot int64)) (stop func()) {
	s.mu.Lock()
	id := s.nextW
	s.nextW++
	s.watchers[id] = fn
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.watchers, id)
		s.mu.Unlock()
	}
}

func (s *Store) watchersLocked() []func(int64) {
	return slices.Collect(maps.Values(s.watchers))
}

func notify(watchers []func(int64), bot int64) {
	for _, fn := range watchers {
		fn(bot)
	}
}

// checkSecret refuses a secret that is too long or that a header
// cannot carry unchanged: only visible ASCII.
func checkSecret(secret string) error {
	if len(secret) > MaxSecretLen {
		return botapi.Errorf(botapi.ErrBadRequest, "webhook secret is longer than %d bytes", MaxSecretLen)
	}
	for i := 0; i < len(secret); i++ {
		if c := secret[i]; c <= ' ' || c > '~' {
			return botapi.Errorf(botapi.ErrBadRequest, "webhook secret must be visible ASCII characters")
		}
	}
	return nil
}

// checkTypes refuses too many update types or malformed ones. Types
// the node does not produce are kept: MAX has more, and SDKs name them.
func checkTypes(types []string) error {
	if len(types) > maxTypes {
		return botapi.Errorf(botapi.ErrBadRequest, "at most %d update types", maxTypes)
	}
	for _, t := range types {
		if t == "" || len(t) > maxTypeLen {
			return botapi.Errorf(botapi.ErrBadRequest, "update type must be 1 to %d bytes", maxTypeLen)
		}
	}
	return nil
}
