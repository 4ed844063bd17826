//go:build !linux

package broker

import (
	"net"
	"time"
)

// setUserTimeout is Linux's TCP_USER_TIMEOUT; elsewhere the kernel's
// own retransmission limits apply.
func setUserTimeout(net.Conn, time.Duration) {}

// unacked cannot tell here: 0.
func unacked(net.Conn) int { return 0 }
