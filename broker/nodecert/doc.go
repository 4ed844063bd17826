// Package nodecert is the node's TLS identity: a certificate and key the
// operator provides, or, with none configured, a self-signed one created
// in the data directory on first start and reused after. Clients pin a
// self-signed node by the SHA-256 fingerprint of its certificate
// (Fingerprint, PinnedConfig), the way SSH pins host keys.
//
// It has no goroutines and no state beyond the files it writes.
package nodecert
