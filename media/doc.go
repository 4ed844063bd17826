// Package media is the node's store of message attachments: files up to
// Options.MaxFile (4 GiB by default), uploaded in one request (Put) or
// resumably in chunks (CreateUpload, WriteChunk, Complete), stored once
// per content and served for downloads with Range and ETag (Open). The
// HTTP handlers, authentication and access control live above it; this
// package takes the authenticated user id and trusts it.
//
// # Layout
//
// Under Options.Dir:
//
//	blobs/<aa>/<sha256 hex>        a file's content, at its address
//	blobs/<aa>/<sha256 hex>.meta   JSON: size, name, MIME, created, refs, zero_since,
//	                               and a picture's width, height, thumb_sha256 (SetImage)
//	uploads/<id>.part              a resumable upload's bytes, sparse, at full size
//	uploads/<id>.state             JSON: its owner, size, meta, received ranges and
//	                               the SHA-256 state of its received prefix
//	uploads/<id>.done              JSON: a completed upload's owner and blob, kept GCGrace
//	tmp/                           single-request uploads in progress
//
// # Durability
//
// Acknowledged means durable. Put streams the body to tmp/ through one
// copy buffer while hashing it, fsyncs the file, renames it to its
// address and fsyncs the directory; only then does it return. A blob
// file at its address is therefore always complete; Open does not rehash
// blobs. WriteChunk pwrites the chunk into the part file, fsyncs it, then
// replaces the upload's state file (write, fsync, rename, fsync the
// directory) with the chunk's range added. A crash loses at most the
// chunks not yet acknowledged: bytes in the part file beyond the recorded
// ranges are never trusted, and the client resends them after asking
// Upload what the node has. Open removes what a crash left half done.
//
// A resumable upload is hashed as it arrives: the state file also holds
// the SHA-256 state (crypto/sha256's MarshalBinary) of the first bytes
// of the file, which are always within its recorded ranges, since the
// hash state and the ranges it covers are replaced together. A chunk
// that starts where the hash ends is hashed as it is read; chunks that
// arrived ahead of it are read back from the part file once the prefix
// reaches them. Complete hashes only what is left (nothing for an upload
// sent in order) and renames. A state whose hash state is unusable is
// hashed again from the start.
//
// # Deduplication and references
//
// A blob is stored once per SHA-256. Each blob carries a durable count of
// the messages referencing it (Ref, Unref, persisted in its .meta). A new
// blob starts at zero references: the node Refs it when the message that
// carries it commits. A blob at zero references for Options.GCGrace is
// removed by GC; uploading the same content again restarts its grace.
// Ref racing GC is safe: both take the blob's lock, and GC marks a blob
// gone before it unlocks, so a Ref either comes first (GC then keeps the
// blob) or fails with ErrNotFound (the node then asks the client to upload
// again). A blob keeps the name and MIME type of its first upload; Put and
// Complete return the caller's own, which the message should carry.
//
// A picture's dimensions and the address of its thumbnail (a blob of its
// own, made by the HTTP layer) are recorded in its .meta by SetImage and
// reported by Stat, Open, Put and Complete, so that a second upload of
// the same picture reuses them; Touch restarts the thumbnail's grace with
// the picture's. The store takes no reference on a thumbnail for its
// picture: whoever references the picture references the thumbnail too.
//
// # Resumable uploads
//
// Chunks may arrive in any order and in parallel. A chunk whose bytes
// were all received already is taken as a retry whose acknowledgement was
// lost: it is accepted without reading or writing anything. This is wider
// than "identical to a received chunk" because received ranges are kept
// merged (bounded state); the bytes at that range are durable either way.
// A chunk overlapping received bytes only in part, or overlapping a chunk
// still being written, is refused with ErrOverlap. Options.MaxRanges
// bounds the disjoint ranges of one upload. An upload idle for
// Options.UploadTTL is dropped by GC.
//
// # Limits
//
// MaxFile bounds every file; MaxChunk every chunk; MaxUploadsPerUser the
// open uploads of a user; MaxPerUserDay the bytes a user uploads per UTC
// day. CreateUpload reserves the whole size against the quota (Abort and
// expiry give back what was not received), Put reserves the declared size
// or, when unknown, counts bytes as they arrive. Quota counters are in
// memory: a restart forgets the day's counts.
//
// # Memory
//
// Every copy (Put, WriteChunk, the hash's read-back) goes through one
// pooled buffer sized to what it copies, from 16 KiB up to 256 KiB (for
// Put, whose small files are many in flight at once, 16 KiB up to 1 MiB
// files and 64 KiB above), so the node's
// memory grows with the number of requests in flight, never with a
// file's or a chunk's size.
//
// # Concurrency
//
// Store starts no goroutines; GC runs when the node calls it. Locks:
// Store.mu guards the blob map, each blob's mu its references; Store.umu
// guards the upload map and per-user counts, each upload's mu its ranges.
// Order: a blob's mu before Store.mu, an upload's mu before Store.umu;
// Store.mu and Store.umu are never held while waiting for another lock
// (the one exception takes a just-created, unpublished blob's mu). File
// writes of different chunks run in parallel; state file replacements of
// one upload are serialized by its mu.
//
// # Metrics
//
// gonets_media_put_seconds, gonets_media_chunk_seconds and
// gonets_media_complete_seconds (Prometheus histograms),
// gonets_media_received_bytes_total, gonets_media_blobs_created_total,
// gonets_media_dedup_total, gonets_media_gc_blobs_removed_total,
// gonets_media_gc_removed_bytes_total, gonets_media_uploads_expired_total,
// gonets_media_refused_total{reason}, and the gauges gonets_media_blobs
// and gonets_media_uploads_open; all created at Open.
package media
