package broker_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// BenchmarkChannelMillion posts into a channel of 1,000,000 subscribers,
// 1,000 of them online, on a node in a child process, and reports the
// post-to-delivery latency over every delivery and what the node's heap
// grew by while it served the channel. Fan-out walks the online members
// only, so neither may depend on the million. -benchtime is ignored;
// GONETS_BIGCHANNEL_SUBSCRIBERS, _POSTS (200) and _RATE (5 posts a second)
// change the scale. The setup writes the million memberships.
func BenchmarkChannelMillion(b *testing.B) {
	subscribers := envInt(b, "GONETS_BIGCHANNEL_SUBSCRIBERS", 1_000_000)
	posts := envInt(b, "GONETS_BIGCHANNEL_POSTS", 200)
	rate := envInt(b, "GONETS_BIGCHANNEL_RATE", 5)
	online := envInt(b, "GONETS_BIGCHANNEL_ONLINE", 1000)
	dir := b.TempDir()
	start := time.Now()
	chat := writeBigChannel(b, filepath.Join(dir, brokertest.StoreDir), subscribers)
	b.Logf("wrote %d subscriptions in %v", subscribers, time.Since(start).Round(time.Second))

	n := startIdleNodeIn(b, dir)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	owner := dialHonest(b, tr, n, 1)
	base := n.stats(b)
	// Subscribers 2..online+1 come online (connectIdle signs users i+1).
	conns := n.connectIdleFrom(b, tr, 2, online)
	withSessions := n.stats(b)

	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			st, err := c.AcceptUniStream(context.Background())
			if err != nil {
				return
			}
			r := wire.NewReader(st, 0)
			var mine []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			for len(mine) < posts {
				var f wire.Frame
				if err := r.Read(&f); err != nil {
					return
				}
				if body := f.GetDeliver().GetMessage().GetBody(); len(body) >= 8 {
					mine = append(mine, time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(body)))))
				}
			}
		})
	}
	// rate posts a second, each 1,000 deliveries to as many connections:
	// the node and the subscribers' connections share the two cores.
	tick := time.NewTicker(time.Second / time.Duration(rate))
	body := make([]byte, 64)
	for i := range posts {
		<-tick.C
		binary.BigEndian.PutUint64(body, uint64(time.Now().UnixNano()))
		r := owner.do(b, &wire.Frame{Body: &wire.Frame_Send{Send: &wire.Send{Chat: chat, ClientMsgId: uint64(i + 1), Body: body}}})
		if r.GetAck() == nil {
			b.Fatalf("post %d: %v", i, r)
		}
	}
	tick.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatal("deliveries missing after 30 s")
	}
	after := n.stats(b)
	for _, c := range conns {
		c.CloseWithError(0, "")
	}
	if len(lat) != online*posts {
		b.Fatalf("%d deliveries, want %d", len(lat), online*posts)
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	grew := after.heap - withSessions.heap
	b.ReportMetric(float64(q(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(grew)/(1<<20), "heap-growth-MiB")
	b.Logf("%d subscribers, %d online, %d posts: deliveries p50 %v p99 %v max %v; node heap %d MiB idle, %d MiB with the sessions, %d MiB after the posts (+%d MiB)",
		subscribers, online, posts, q(0.5), q(0.99), lat[len(lat)-1], base.heap>>20, withSessions.heap>>20, after.heap>>20, grew>>20)
}

// writeBigChannel creates, in a store at dir, a channel of user 1 with
// subscribers users 2..subscribers+1 (the first online of them will come
// online), added a thousand per commit.
func writeBigChannel(b *testing.B, dir string, subscribers int) uint64 {
	st, err := storage.Open(dir, storage.Options{SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	c, err := st.CreateChat(ctx, storage.ChatSpec{Kind: storage.ChatChannel, Creator: 1, Title: "big"})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			users := make([]storage.UserID, 0, storage.MaxAddMembers)
			for from := range next {
				users = users[:0]
				for u := from; u < min(from+storage.MaxAddMembers, subscribers+2); u++ {
					users = append(users, storage.UserID(u))
				}
				if _, err := st.AddMembers(ctx, c.ID, users, storage.RoleSubscriber); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for from := 2; from < subscribers+2; from += storage.MaxAddMembers {
		next <- from
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	if got, _ := st.Chat(c.ID); got.Members != uint64(subscribers+1) {
		b.Fatalf("channel has %d members, want %d", got.Members, subscribers+1)
	}
	return uint64(c.ID)
}

func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: %v", name, v, fmt.Errorf("want a positive integer"))
	}
	return n
}
