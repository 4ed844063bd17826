// Package wire is the Gonets client protocol: the Protocol Buffers schema
// (gonets.proto, with the generated gonets.pb.go) and its framing on QUIC
// streams.
//
// A stream carries frames back to back. Each frame is a 4-byte big-endian
// length followed by that many bytes of one encoded Frame. The length
// excludes itself, must be at least 1 and at most the reader's limit
// (DefaultMaxFrameBytes unless the session says otherwise). A Frame must set
// its body; a frame without one is malformed.
//
// Encoders append to the caller's slice (AppendFrame), so a message is
// encoded once and the same bytes are written to every recipient. Reader
// reuses one buffer per stream; it holds no buffer larger than the largest
// frame it has read, and none at all once Release is called on an idle
// stream.
//
// The schema is the contract for clients in other languages: generate from
// gonets.proto. docs/protocol.md describes every frame, every error code
// and the session flow.
package wire
