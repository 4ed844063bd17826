package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gonets/gonets/bench/result"
	"github.com/gonets/gonets/storage"
)

// storageChats is how many chats the storage scenario appends to.
const storageChats = 1000

// runStorage measures the store alone, in this process: Writers
// concurrent appenders (closed loop: each appends its next message when
// the last is acked) across storageChats chats for Duration, then reads
// the logs back.
func runStorage(ctx context.Context, cfg Config, res *result.Result) error {
	res.Params = map[string]any{"writers": cfg.Writers, "chats": storageChats, "size": cfg.Size, "duration": cfg.Duration.String()}
	res.Goal = "none: the store alone, for comparison with the scenarios over the network"
	res.Met = true
	dir, err := os.MkdirTemp("", "gonets-bench-store-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := storage.Open(dir, storage.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer st.Close()
	chats := make([]storage.ChatID, storageChats)
	for i := range chats {
		c, err := st.CreateChat(ctx, storage.ChatSpec{Kind: storage.ChatGroup, Creator: 1, Title: "bench"})
		if err != nil {
			return err
		}
		chats[i] = c.ID
	}
	rec := newRecorder()
	gen := startMeter("self", cfg.ClientCPUs)
	start := time.Now()
	rec.start(start.Add(cfg.Warmup))
	end := start.Add(cfg.Warmup + cfg.Duration)
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range cfg.Writers {
		wg.Go(func() {
			body := make([]byte, cfg.Size)
			for n := uint64(1); ctx.Err() == nil; n++ {
				t := time.Now()
				if !t.Before(end) {
					return
				}
				rec.scheduled(t)
				// Writer w is a device of the chats' owner: the store
				// takes posts from members only.
				m := storage.Message{Chat: chats[(w+int(n))%storageChats], Sender: 1, Device: storage.DeviceID(w + 1), ClientMsgID: n, Kind: storage.MsgText, Body: body}
				acks, err := st.Append(ctx, []storage.Message{m})
				if err == nil && acks[0].Err != nil {
					err = acks[0].Err
				}
				if err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				rec.acked(w, t, time.Now(), 0)
			}
		})
	}
	for now := range time.Tick(time.Second) {
		s := rec.tick(now, cfg.Writers)
		if cfg.Live != nil && s.T > 0 {
			fmt.Fprintf(cfg.Live, "\rstorage  %5.0fs  appends %8.0f/s   ", s.T, s.Offered)
		}
		if !now.Before(end) {
			break
		}
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return err
	}
	if cfg.Live != nil {
		fmt.Fprintln(cfg.Live)
	}
	rec.fill(res, cfg.Duration.Seconds())
	res.Generator = gen.read()
	res.Rate = float64(res.Sent) / cfg.Duration.Seconds()
	res.Offered = 0
	res.Metrics["appends_per_s"] = res.Rate
	res.Latency = res.Ack // nothing is delivered: the append's own latency
	for i := range res.Timeline {
		res.Timeline[i].Delivered = res.Timeline[i].Offered // appends acked that second
	}

	// Reads: every chat's log, 256 records a page.
	readStart := time.Now()
	var records int64
	for _, c := range chats {
		for from := uint64(1); ; {
			n := 0
			chat, err := st.ReadRange(c, from, 256, func(r *storage.Record) error { n++; from = r.Seq + 1; return nil })
			if err != nil {
				return err
			}
			records += int64(n)
			if n == 0 || from > chat.LastSeq {
				break
			}
		}
	}
	res.Metrics["reads_per_s"] = float64(records) / time.Since(readStart).Seconds()
	res.Notes = append(res.Notes, fmt.Sprintf("closed loop: %d writers each append when their last append is acked (durable: after the WAL sync); ack latency is from the call", cfg.Writers),
		"the store runs in the bench process: Generator is the store and its callers together")
	return nil
}
