package media

import (
	"errors"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Options configures a Store. The zero value of each field means its
// default.
type Options struct {
	// Dir is the media directory, usually <data>/media. It holds
	// blobs/<aa>/<sha256 hex> with a <sha256 hex>.meta beside each,
	// uploads/<id>.part and uploads/<id>.state, and tmp/. Required.
	Dir string
	// MaxFile caps one file's size. Default: 4 GiB.
	MaxFile int64
	// MaxPerUserDay caps the bytes a user may upload per UTC day.
	// Default: 20 GiB.
	MaxPerUserDay int64
	// MaxChunk caps one chunk of a resumable upload. Default: 64 MiB.
	MaxChunk int64
	// MaxUploadsPerUser caps a user's open resumable uploads. Default: 16.
	MaxUploadsPerUser int
	// MaxRanges caps the disjoint received ranges of one upload, so that a
	// client sending scattered one-byte chunks cannot grow its state file
	// without bound. Default: 4096.
	MaxRanges int
	// UploadTTL is how long an unfinished upload may stay idle before GC
	// drops it. Default: 24 h.
	UploadTTL time.Duration
	// GCGrace is how long a blob with no references is kept before GC
	// removes it: the time a client has between uploading a file and
	// sending the message that references it. Default: 24 h.
	GCGrace time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Log receives lifecycle events and errors. Default: slog.Default().
	Log *slog.Logger
	// Metrics receives the store's metrics. Default: a private set.
	Metrics *metrics.Set
}

func (o *Options) fill() error {
	if o.Dir == "" {
		return errors.New("media: Options.Dir is required")
	}
	if o.MaxFile <= 0 {
		o.MaxFile = 4 << 30
	}
	if o.MaxPerUserDay <= 0 {
		o.MaxPerUserDay = 20 << 30
	}
	if o.MaxChunk <= 0 {
		o.MaxChunk = 64 << 20
	}
	if o.MaxUploadsPerUser <= 0 {
		o.MaxUploadsPerUser = 16
	}
	if o.MaxRanges <= 0 {
		o.MaxRanges = 4096
	}
	if o.UploadTTL <= 0 {
		o.UploadTTL = 24 * time.Hour
	}
	if o.GCGrace <= 0 {
		o.GCGrace = 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	return nil
}
