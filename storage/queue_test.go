package storage

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestBackpressure fills a one-batch queue from many callers, some of
// whom give up: every caller either gets its ack or its ctx error, acked
// messages are all there with dense seqs, and a retry of an abandoned
// message lands exactly once.
func TestBackpressure(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{MaxBodyBytes: 1000, MaxBatchBytes: 1000, MaxQueuedBytes: 1000})
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	body := make([]byte, 1000)
	var mu sync.Mutex
	acked := map[uint64]uint64{} // cmid -> seq
	var abandoned []uint64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 10 {
				cmid := uint64(g*100 + i + 1)
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%3)*time.Millisecond)
				if i%3 == 2 {
					ctx, cancel = context.WithCancel(context.Background())
				}
				m := text(c.ID, 1, cmid, "")
				m.Body = body
				acks, err := s.Append(ctx, []Message{m})
				cancel()
				mu.Lock()
				switch {
				case err == nil && acks[0].Err == nil:
					acked[cmid] = acks[0].Seq
				case errors.Is(err, context.DeadlineExceeded):
					abandoned = append(abandoned, cmid)
				default:
					t.Errorf("Append: %v %+v", err, acks)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(acked) < 16*3 { // at least every caller that never gave up
		t.Fatalf("only %d acked", len(acked))
	}
	for _, cmid := range abandoned {
		m := text(c.ID, 1, cmid, "")
		m.Body = body
		acked[cmid] = mustAppend(t, s, m)[0].Seq
	}
	recs := readAll(t, s, c.ID, 1, 1000)
	if len(recs) != 160 {
		t.Fatalf("%d records, want 160 (each message once)", len(recs))
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || acked[r.ClientMsgID] != r.Seq {
			t.Fatalf("record %d: seq %d cmid %d, acked as %d", i, r.Seq, r.ClientMsgID, acked[r.ClientMsgID])
		}
	}
}
