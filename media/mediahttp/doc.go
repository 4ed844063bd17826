// Package mediahttp is the media store's HTTP API on the node's public
// HTTPS listener, under /media/ (docs/media.md has every endpoint, header
// and error code): uploads in one request (POST /media/upload) or
// resumable in chunks sent in any order and in parallel (POST
// /media/uploads, then PUT /media/uploads/{id} with Content-Range, GET to
// resume, DELETE to abort); downloads with Range and ETag for members of a
// chat whose message references the file (GET /media/files/{sha256}?chat=
// &seq=); signed download URLs for bots (GET /media/f/{sha256}); and the
// upload URL of the Bot API (POST /media/bot/{token}), in the MAX SDK's
// multipart and Content-Range modes. Server also implements
// broker.Attachments: the broker calls Attach when a MEDIA message is
// sent and Release when it is not stored or is deleted.
//
// # Authentication and access
//
// Upload and download requests carry the session token the node issued
// ("Authorization: Bearer <token>"), checked by Options.Authenticate. A
// download names the message that carries the file; Options.Access
// returns it only to a member of its chat, and the file must be one of
// the message's attachments or their thumbnails. Every refusal is 404
// not_found, a non-member's included, so that nobody learns whether a
// file exists without being allowed to read it. Signed URLs and bot
// upload tokens are capabilities: HMAC-SHA256 under Options.Key over
// what they grant (a file of a message until an expiry; one upload).
//
// # Pictures
//
// When a JPEG, PNG, GIF or WebP file is stored the server probes its
// dimensions and makes a JPEG thumbnail (imageinfo, 320 px on the longer
// side), stored as a blob of its own and recorded with the picture in the
// store (media.Store.SetImage), so that a second upload of the same
// picture reuses both. At most Options.MaxThumbnails pictures are decoded
// at once, which bounds the memory their pixels take.
//
// # Durability
//
// What the media store acknowledges is durable (see package media). The
// server's own state: a bot upload's record (its user, type, the store's
// upload of its chunks, then its file) is a JSON file under
// <media dir>/bot-uploads/, replaced atomically and fsynced before the
// request that changed it is answered, and kept UploadTTL from its
// creation or last chunk, or GCGrace from its completion; one whose store
// upload is gone without its file (a crash during completion) gets it
// from the store's record of the completion at open, or is marked
// failed. The result of a completed resumable upload is remembered in
// memory for an hour, for a client whose last answer was lost, and the
// store's record of the completion answers it for GCGrace, across a
// restart too. Each upload gives its user a receipt for the file (receipts.go: a line appended and fsynced to
// <media dir>/receipts/<UTC day>.log before the answer, kept GCGrace), and
// Attach takes only files its user holds a receipt for.
//
// # Concurrency
//
// Server starts no goroutines; RunGC runs on the caller's. The last
// chunks of an upload, arriving in parallel, share one completion
// (completions.mu guards the map; each completion's ready channel
// publishes its result). Each bot upload's mu serializes changes to its
// record (held while the record is written), and botUploads.mu guards
// the map of records; a record's mu is never taken under botUploads.mu.
// receipts.mu guards the receipts and is held while one is appended;
// receipts.syncMu serializes their fsyncs and takes receipts.mu inside.
// inflight.mu guards the counts of upload requests in flight.
// Memory per request is the store's copy buffer, whatever the file's size,
// and the upload requests in flight are capped (Options.MaxUploadsInFlight
// and MaxUploadsInFlightPerUser). A client may send or read slowly but not
// stop: each read of an upload's body (write of a download) that makes
// progress moves the connection's deadline Options.IdleTimeout on
// (http.ResponseController, HTTP/1.1 and HTTP/2).
package mediahttp
