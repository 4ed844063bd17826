package bench

import (
	"context"
	"encoding/binary"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestCallScenarioSmall runs the call scenario at its smallest, one call
// of two participants who both publish, against a node started from the
// built binary, and checks that media flowed both ways through the SFU and
// that loss, delay, join time and the node's cost were measured, and
// that no goroutine of the clients outlives the run. It asserts no speed.
func TestCallScenarioSmall(t *testing.T) {
	bin := gonetsBinary(t)
	// Every pion client's goroutines end with the run.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	defer http.DefaultClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Run(ctx, "call", Config{Binary: bin, Calls: 1, Publishers: 2, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m := r.Metrics
	// Each participant receives the other's audio (50 packets/s) and one
	// video layer (at least 30/s): 160 packets/s at the least, both ways.
	if r.Delivered <= 0 || r.Rate < 160 || m["forwarded_packets_per_s"] != r.Rate {
		t.Fatalf("forwarded %d packets, %v/s (metrics %v)", r.Delivered, r.Rate, m)
	}
	if want := 2 * packetsPerSecond(); r.Offered < want/2 || r.Offered > 2*want {
		t.Fatalf("published %v packets/s, want about %v", r.Offered, want)
	}
	loss, ok := m["loss_ratio"]
	if !ok || loss < 0 || loss > 0.05 || r.Expected < r.Delivered {
		t.Fatalf("loss_ratio %v (reported %v), expected %d, delivered %d", loss, ok, r.Expected, r.Delivered)
	}
	for _, k := range []string{"forward_delay_p50_ms", "forward_delay_p99_ms", "join_p50_ms", "join_p99_ms",
		"node_cpu_us_per_forwarded_packet", "node_rss_per_participant_kib", "video_kbit_per_s_per_subscription"} {
		if v, ok := m[k]; !ok || v <= 0 {
			t.Errorf("metric %s = %v (reported %v)", k, v, ok)
		}
	}
	if m["participants"] != 2 || m["participants_failed"] != 0 || r.Met {
		t.Errorf("participants %v, failed %v, met %v", m["participants"], m["participants_failed"], r.Met)
	}
	if r.Latency.Count != r.Delivered || len(r.Timeline) == 0 || r.Node == nil || r.Generator == nil {
		t.Errorf("latency count %d for %d delivered, %d samples, node %v, generator %v", r.Latency.Count, r.Delivered, len(r.Timeline), r.Node, r.Generator)
	}
}

func TestCallValidation(t *testing.T) {
	f := func(cfg Config, want string) {
		t.Helper()
		_, err := Run(context.Background(), "call", cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%+v: %v, want %q", cfg, err, want)
		}
	}
	f(Config{Calls: 1, Procs: 2}, "--procs 2: more processes than the 1 calls")
	f(Config{Publishers: 1, Subscribers: -1}, "--subscribers not negative")
	f(Config{Calls: -1}, "--calls and --publishers must be positive")
	f(Config{Publishers: 1}, "a call at least 2 participants")
}

// rtpPacket returns an RTP packet with seq, an extension of words 32-bit
// words when words > 0, payload, and pad bytes of padding.
func rtpPacket(seq uint16, words int, payload []byte, pad int) []byte {
	b := []byte{0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	binary.BigEndian.PutUint16(b[2:], seq)
	if words > 0 {
		b[0] |= 0x10
		b = append(b, 0xbe, 0xde, byte(words>>8), byte(words))
		b = append(b, make([]byte, 4*words)...)
	}
	b = append(b, payload...)
	if pad > 0 {
		b[0] |= 0x20
		b = append(b, make([]byte, pad-1)...)
		b = append(b, byte(pad))
	}
	return b
}

func TestRTPPayload(t *testing.T) {
	f := func(b []byte, want string, wantOK bool) {
		t.Helper()
		got, ok := rtpPayload(b)
		if ok != wantOK || string(got) != want {
			t.Fatalf("rtpPayload(% x) = %q %v, want %q %v", b, got, ok, want, wantOK)
		}
	}
	f(rtpPacket(1, 0, []byte("media"), 0), "media", true)
	f(rtpPacket(1, 2, []byte("media"), 0), "media", true)
	f(rtpPacket(1, 1, []byte("media"), 3), "media", true)
	f(rtpPacket(1, 0, nil, 0), "", true)
	f([]byte{0x80, 96, 0}, "", false)
	f(rtpPacket(1, 3, nil, 0)[:14], "", false)
}

// TestRxStreamCounts feeds a stream's sequence numbers and checks what it
// counts as expected and received: gaps are losses, duplicates count
// once, a late packet fills its gap, and the count runs on across the
// 16-bit wrap.
func TestRxStreamCounts(t *testing.T) {
	w := &callWindow{}
	w.begin.Store(time.Now().Add(-time.Second).UnixNano())
	f := func(seqs []uint16, expected, received int64) {
		t.Helper()
		st := &rxStream{video: true}
		rx := newRxStats(w)
		payload := make([]byte, 20)
		binary.BigEndian.PutUint64(payload[12:], uint64(time.Now().UnixNano()))
		for _, s := range seqs {
			st.receive(rtpPacket(s, 0, payload, 0), rx)
		}
		if st.expected() != expected || st.received.Load() != received {
			t.Fatalf("%v: expected %d received %d, want %d %d", seqs, st.expected(), st.received.Load(), expected, received)
		}
		if rx.delay.TotalCount() != received {
			t.Fatalf("%v: %d delays recorded for %d received", seqs, rx.delay.TotalCount(), received)
		}
	}
	f(nil, 0, 0)
	f([]uint16{10, 11, 12}, 3, 3)
	f([]uint16{10, 12}, 3, 2)                                       // 11 lost
	f([]uint16{10, 12, 11}, 3, 3)                                   // 11 late
	f([]uint16{10, 11, 11, 12, 10}, 3, 3)                           // duplicates
	f([]uint16{65534, 65535, 0, 1}, 4, 4)                           // the wrap
	f([]uint16{65535, 1, 0, 2}, 4, 4)                               // reordered across it
	f([]uint16{100, 100 + rxWindow + 5}, rxWindow+6, 2)             // a long gap
	f([]uint16{100, 101, 100 + rxWindow + 10, 102}, rxWindow+11, 3) // too old to tell: counted lost
	f([]uint16{2000, 1999, 1000}, 1, 1)                             // before the first: not the stream's
}
