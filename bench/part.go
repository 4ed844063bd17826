package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// part is one share of a load scenario (chat, group, channel): its
// sessions, the chats they post in, and the recorder they report to. The
// bench drives one part in its own process (localPart), or, with --procs
// N, one in each of N worker processes (worker); measure drives them all
// the same way and merges what they counted.
type part interface {
	// load starts the part's send loops: they post from start until end
	// at the part's share of rate (the whole scenario's), against a fresh
	// recorder whose window opens at begin.
	load(ctx context.Context, rate float64, start, begin, end time.Time) error
	// tick closes one second of the current load.
	tick(ctx context.Context) (second, error)
	// stop closes the measured window at at.
	stop(ctx context.Context, at time.Time) error
	// finish lets the send loops finish their schedule, up to limit.
	finish(ctx context.Context, limit time.Duration) error
	// counts returns the deliveries received and those the acked
	// messages owe, so far.
	counts(ctx context.Context) (delivered, expected int64, err error)
	// snapshot returns everything the current load counted.
	snapshot(ctx context.Context) (tally, error)
	// datagrams returns the datagrams the part's sockets exchanged with
	// the node so far, and the sessions it holds.
	datagrams(ctx context.Context) (datagrams, error)
	// pid is the process that holds the part, for /proc ("self" for
	// this one).
	pid() string
	// close drops the part's sessions (and stops its process).
	close() error
}

// poster is one send loop of a part.
type poster struct {
	c     *client.Client
	shard int    // the recorder shard it records acks on
	index int    // its place among the posters of every part: its phase
	chat  uint64 // where it posts
	owed  int    // deliveries each of its messages owes
}

// localPart is a part in this process.
type localPart struct {
	f       *fleet
	pubs    []*client.Client // channel, part 0: the owner's sessions
	posters []poster
	total   int // posters in every part together
	size    int

	closeOnce sync.Once

	mu      sync.Mutex // guards the following
	rec     *recorder
	senders *senders // of the current load
}

// span returns the range [lo, hi) of n things that part k of parts gets.
func span(n, k, parts int) (lo, hi int) { return n * k / parts, n * (k + 1) / parts }

// spreadable returns how many parts a scenario's load can be split into
// (whole chats, whole calls, or viewers each), or 0 if it runs in one
// process only.
func spreadable(scenario string, c Config) int {
	switch scenario {
	case "chat":
		return c.Users / 2
	case "group":
		return c.Groups
	case "channel":
		return c.Subscribers
	case "call":
		return c.Calls
	case "stream":
		return c.Viewers
	}
	return 0
}

// newLocalPart dials part k of parts of a load scenario and sets up its
// chats. The posters of all parts together keep the schedule one part
// would have: the same period, each poster phased by its place among
// all of them.
//
//   - chat: users pair up, 2k+1 with 2k+2, in a direct chat; each part
//     gets a contiguous range of pairs, and every user posts.
//   - group: each part gets whole groups; every member posts.
//   - channel: user 1 owns the channel, and its Publishers sessions
//     post; subscribers (users 2 ...) are spread over the parts, and part
//     0 also holds the publishers, creates the channel and subscribes
//     everyone.
func newLocalPart(ctx context.Context, scenario string, cfg Config, t *target, k, parts int) (*localPart, error) {
	p := &localPart{size: cfg.Size, rec: newRecorder()}
	var users []uint64
	switch scenario {
	case "chat":
		lo, hi := span(cfg.Users/2, k, parts)
		users = userRange(uint64(2*lo+1), 2*(hi-lo))
		p.total = cfg.Users
	case "group":
		lo, hi := span(cfg.Groups, k, parts)
		users = userRange(uint64(lo*cfg.Members+1), (hi-lo)*cfg.Members)
		p.total = cfg.Groups * cfg.Members
	case "channel":
		lo, hi := span(cfg.Subscribers, k, parts)
		users = userRange(uint64(2+lo), hi-lo)
		p.total = cfg.Publishers
	default:
		return nil, fmt.Errorf("bench: %s is not a load scenario", scenario)
	}
	var err error
	if p.f, err = dialFleet(ctx, t, users, recordDeliveries(p.current, users)); err != nil {
		return nil, err
	}
	switch scenario {
	case "chat":
		err = p.setupChat(ctx, users)
	case "group":
		err = p.setupGroup(ctx, cfg, users)
	case "channel":
		if k == 0 {
			err = p.setupChannel(ctx, cfg, t)
		}
	}
	if err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// setupChat opens the part's direct chats: the odd user of each pair
// opens it; both post.
func (p *localPart) setupChat(ctx context.Context, users []uint64) error {
	chats, err := createChats(ctx, len(users)/2, func(ctx context.Context, k int) (uint64, error) {
		info, err := p.f.clients[2*k].CreateChat(ctx, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{users[2*k+1]}, "")
		return info.Chat, err
	})
	if err != nil {
		return err
	}
	for i := range users {
		p.posters = append(p.posters, poster{c: p.f.clients[i], shard: i, index: int(users[i] - 1), chat: chats[i/2], owed: 1})
	}
	return nil
}

// setupGroup makes the part's groups, each opened by its first member.
func (p *localPart) setupGroup(ctx context.Context, cfg Config, users []uint64) error {
	m := cfg.Members
	groups, err := createChats(ctx, len(users)/m, func(ctx context.Context, g int) (uint64, error) {
		info, err := p.f.clients[g*m].CreateChat(ctx, wire.ChatKind_CHAT_KIND_GROUP, users[g*m+1:(g+1)*m], "bench")
		return info.Chat, err
	})
	if err != nil {
		return err
	}
	for i := range users {
		p.posters = append(p.posters, poster{c: p.f.clients[i], shard: i, index: int(users[i] - 1), chat: groups[i/m], owed: m - 1})
	}
	return nil
}

// setupChannel dials the owner's publishing sessions, creates the
// channel and subscribes every part's subscribers.
func (p *localPart) setupChannel(ctx context.Context, cfg Config, t *target) error {
	for d := range cfg.Publishers {
		o := p.f.options(0)
		o.SendOnly = true
		c, err := client.Dial(ctx, t.addr, t.token(1, uint64(d+1)), o)
		if err != nil {
			return fmt.Errorf("bench: publisher: %w", err)
		}
		p.pubs = append(p.pubs, c)
	}
	info, err := p.pubs[0].CreateChat(ctx, wire.ChatKind_CHAT_KIND_CHANNEL, nil, "bench")
	if err != nil {
		return err
	}
	subs := userRange(2, cfg.Subscribers)
	for i := 0; i < len(subs); i += 1000 {
		if err := p.pubs[0].AddMembers(ctx, info.Chat, subs[i:min(i+1000, len(subs))]); err != nil {
			return fmt.Errorf("bench: subscribe: %w", err)
		}
	}
	for d, c := range p.pubs {
		p.posters = append(p.posters, poster{c: c, shard: d, index: d, chat: info.Chat, owed: cfg.Subscribers})
	}
	return nil
}

// current returns the recorder of the current load.
func (p *localPart) current() *recorder {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rec
}

func (p *localPart) load(ctx context.Context, rate float64, start, begin, end time.Time) error {
	r := newRecorder()
	// The window is fixed before it opens: a message due just after begin
	// must count as measured even if the bench wakes late.
	r.start(begin)
	period := time.Duration(float64(time.Second) * float64(p.total) / rate)
	load := newSenders(ctx)
	p.mu.Lock()
	p.rec, p.senders = r, load
	p.mu.Unlock()
	for _, s := range p.posters {
		phase := time.Duration(int64(period) * int64(s.index) / int64(p.total))
		load.run(func(ctx context.Context) {
			sendLoop(ctx, s.c, r, s.shard, s.chat, period, phase, start, end, p.size, s.owed)
		})
	}
	return nil
}

func (p *localPart) tick(context.Context) (second, error) {
	s := p.current().take()
	s.Sessions = int(p.f.online.Load()) + len(p.pubs)
	return s, nil
}

func (p *localPart) stop(_ context.Context, at time.Time) error {
	p.current().stop(at)
	return nil
}

func (p *localPart) finish(_ context.Context, limit time.Duration) error {
	p.mu.Lock()
	load := p.senders
	p.mu.Unlock()
	if load != nil {
		load.finish(limit)
	}
	return nil
}

func (p *localPart) counts(context.Context) (delivered, expected int64, err error) {
	r := p.current()
	return r.delivered.Load(), r.expected.Load(), nil
}

func (p *localPart) snapshot(context.Context) (tally, error) { return p.current().tally(), nil }

func (p *localPart) datagrams(context.Context) (datagrams, error) {
	d := p.f.datagrams()
	d.Sessions += len(p.pubs)
	return d, nil
}

func (p *localPart) pid() string { return "self" }

// close stops the send loops and closes the publishers, then the fleet
// (whose first socket they share). Later calls do nothing.
func (p *localPart) close() error {
	p.closeOnce.Do(func() {
		p.finish(context.Background(), 0)
		for _, c := range p.pubs {
			c.Close()
		}
		p.f.close()
	})
	return nil
}
