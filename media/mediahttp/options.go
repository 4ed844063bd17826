package mediahttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/media"
)

// Options configures a Server. The zero value of each optional field
// means its default.
type Options struct {
	// Store holds the files. Required.
	Store *media.Store
	// Authenticate verifies a session token, sent as "Authorization:
	// Bearer <token>", and returns its user. Required.
	Authenticate func(token string) (user uint64, err error)
	// Access returns message seq of chat, its body and kind, when user is
	// a member of chat, and an error otherwise (not a member, no such
	// message). It must not block on the network. Required.
	Access func(ctx context.Context, user, chat, seq uint64) (body []byte, kind wire.MsgKind, err error)
	// PublicURL is the base URL of the node's public HTTPS listener, such
	// as https://127.0.0.1:7445, without a trailing slash; the upload and
	// signed URLs the server hands out start with it. Required.
	PublicURL string
	// Key is the HMAC-SHA256 key of signed download URLs and bot upload
	// tokens, at least 32 bytes; keep it across restarts, or those URLs
	// and tokens stop working. Required.
	Key []byte
	// ThumbnailSize is the longer side of a picture's thumbnail, in
	// pixels. Default: 320.
	ThumbnailSize int
	// MaxThumbnails caps the pictures decoded at once: decoding holds a
	// picture's pixels (up to 200 MB for 50 MP), so this bounds that
	// memory. Default: 2.
	MaxThumbnails int
	// IdleTimeout is how long an upload's body may send nothing, or a
	// download's reader take nothing, before the request is ended: each
	// read (write) that makes progress moves the connection's read (write)
	// deadline to IdleTimeout from then, over HTTP/1.1 and HTTP/2 alike
	// (http.ResponseController; a ResponseWriter wrapped by middleware
	// must have an Unwrap method). A client that stalls thus frees its
	// copy buffer, goroutine and upload slot, and a stalled chunk no longer
	// blocks its upload. Default: 30 s.
	IdleTimeout time.Duration
	// MaxUploadsInFlightPerUser caps the upload requests (bodies being
	// received: whole files, chunks, bot uploads) of one user at once;
	// more are answered 429 too_many_uploads with Retry-After. Default: 8.
	MaxUploadsInFlightPerUser int
	// MaxUploadsInFlight caps the node's upload requests at once, all
	// users together, likewise. Default: 256.
	MaxUploadsInFlight int
	// MaxBotUploadsPerUser caps a user's (a bot's) bot upload tokens that
	// have not received their file yet; NewBotUpload then fails with
	// ErrTooManyUploads. Default: 64.
	MaxBotUploadsPerUser int
	// MaxReceiptsPerUser caps the upload receipts kept per user: Attach
	// takes only a file its user uploaded within the store's GCGrace, and
	// past this many receipts the oldest is dropped. Default: 10000.
	MaxReceiptsPerUser int
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Log receives lifecycle events and errors. Default: slog.Default().
	Log *slog.Logger
}

func (o *Options) fill() error {
	var errs []error
	check := func(ok bool, what string) {
		if !ok {
			errs = append(errs, errors.New("mediahttp: "+what))
		}
	}
	check(o.Store != nil, "Options.Store is required")
	check(o.Authenticate != nil, "Options.Authenticate is required")
	check(o.Access != nil, "Options.Access is required")
	check(len(o.Key) >= 32, "Options.Key must be at least 32 bytes")
	o.PublicURL = strings.TrimRight(o.PublicURL, "/")
	if u, err := url.Parse(o.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("mediahttp: Options.PublicURL %q is not an http(s) base URL", o.PublicURL))
	}
	if o.ThumbnailSize <= 0 {
		o.ThumbnailSize = 320
	}
	if o.MaxThumbnails <= 0 {
		o.MaxThumbnails = 2
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 30 * time.Second
	}
	if o.MaxUploadsInFlightPerUser <= 0 {
		o.MaxUploadsInFlightPerUser = 8
	}
	if o.MaxUploadsInFlight <= 0 {
		o.MaxUploadsInFlight = 256
	}
	if o.MaxBotUploadsPerUser <= 0 {
		o.MaxBotUploadsPerUser = 64
	}
	if o.MaxReceiptsPerUser <= 0 {
		o.MaxReceiptsPerUser = 10000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return errors.Join(errs...)
}
