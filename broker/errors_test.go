package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// Clients get the code and an id for INTERNAL and UNAVAILABLE failures,
// never the storage detail; the node logs the detail under that id.
func TestClientErrorHidesDetail(t *testing.T) {
	var logged bytes.Buffer
	b := &Broker{log: slog.New(slog.NewTextHandler(&logged, nil))}
	detail := "pebble: open /srv/gonets/gonets-data/store/000123.log: no space left on device"
	for _, tc := range []struct {
		err  error
		code wire.ErrorCode
	}{
		{fmt.Errorf("storage: member 5 of chat 7: %s", detail), wire.ErrorCode_ERROR_CODE_INTERNAL},
		{fmt.Errorf("%w: sync: %s", storage.ErrFailed, detail), wire.ErrorCode_ERROR_CODE_UNAVAILABLE},
		{fmt.Errorf("read %s: %w", detail, context.DeadlineExceeded), wire.ErrorCode_ERROR_CODE_UNAVAILABLE},
	} {
		logged.Reset()
		e := b.clientError(tc.err)
		if e.Code != tc.code {
			t.Errorf("%v: code %v, want %v", tc.err, e.Code, tc.code)
		}
		if e.ErrorId == "" || strings.Contains(e.Message, "/srv") || strings.Contains(e.Message, "pebble") {
			t.Errorf("%v: client told %q (id %q)", tc.err, e.Message, e.ErrorId)
		}
		if !strings.Contains(logged.String(), "error_id="+e.ErrorId) || !strings.Contains(logged.String(), "000123.log") {
			t.Errorf("%v: the log holds no detail under id %s:\n%s", tc.err, e.ErrorId, logged.String())
		}
	}
	if a, c := b.clientError(errors.New("x")).ErrorId, b.clientError(errors.New("x")).ErrorId; a == c {
		t.Errorf("two failures share id %s", a)
	}
	// Input errors keep their message and carry no id.
	if e := b.clientError(fmt.Errorf("%w: chat 0", ErrBadRequest)); e.ErrorId != "" || !strings.Contains(e.Message, "chat 0") {
		t.Errorf("bad request told as %q (id %q)", e.Message, e.ErrorId)
	}
}
