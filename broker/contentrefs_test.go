package broker_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
	"github.com/gonets/gonets/storage/storagetest"
)

// countingFiles is a broker.Attachments that holds every file and counts
// the references taken and given back.
type countingFiles struct {
	mu   sync.Mutex
	refs map[string]int
}

func (f *countingFiles) Attach(_ context.Context, _ storage.UserID, atts []*wire.Attachment) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range atts {
		f.refs[a.GetSha256()]++
	}
	return nil
}

func (f *countingFiles) Release(atts []*wire.Attachment) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range atts {
		f.refs[a.GetSha256()]--
	}
}

func (f *countingFiles) count(sha string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refs[sha]
}

// TestFailedSendKeepsFileReferences: a MEDIA message whose append failed
// with the store (storage.ErrFailed) may come back from the WAL when the
// store recovers, naming its files: the references it took are kept, not
// given back (which would let another message's file be collected when
// this one is deleted or removed by retention).
func TestFailedSendKeepsFileReferences(t *testing.T) {
	fail, sopts := failingStorage()
	files := &countingFiles{refs: map[string]int{}}
	n := brokertest.Start(t, brokertest.Options{Storage: sopts, Broker: broker.Options{Attachments: files}})
	alice := dial(t, n, n.Token(t, 1, 1))
	chat := alice.createChat(group, 2)
	sha := strings.Repeat("ab", 32)
	body, err := proto.Marshal(&wire.Content{Text: "a file", Attachments: []*wire.Attachment{{Type: wire.AttachmentType_ATTACHMENT_TYPE_FILE, Sha256: sha, Name: "f.txt"}}})
	if err != nil {
		t.Fatal(err)
	}
	send := func() *wire.Frame {
		return alice.do(&wire.Frame{Body: &wire.Frame_Send{Send: &wire.Send{Chat: chat, ClientMsgId: 7, Kind: wire.MsgKind_MSG_KIND_MEDIA, Body: body}}})
	}
	fail.Store(true)
	if got := errCode(t, send()); got != wire.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("send on a failing disk: %v", got)
	}
	if c := files.count(sha); c != 1 {
		t.Fatalf("after the failed send the file has %d references, want 1 (kept)", c)
	}
	fail.Store(false)
	storagetest.WaitFor(t, "the store to recover", func() bool { return n.Store().Healthy() })
	// The retry is the record back from the WAL (a duplicate, whose
	// references its first send holds) or a new one (and the first send's
	// reference is one too many: kept, never too few).
	r := send()
	ack := r.GetAck()
	if ack == nil {
		t.Fatalf("retry: %v", r)
	}
	want := 2
	if ack.GetDuplicate() {
		want = 1
	}
	if c := files.count(sha); c != want {
		t.Fatalf("after the retry (duplicate %v) the file has %d references, want %d", ack.GetDuplicate(), c, want)
	}
}
