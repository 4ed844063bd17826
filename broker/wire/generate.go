package wire

// Regenerate gonets.pb.go with `go generate ./...`; it needs protoc and
// protoc-gen-go on PATH (docs/protocol.md says how to install them).
//go:generate protoc --go_out=. --go_opt=paths=source_relative gonets.proto
