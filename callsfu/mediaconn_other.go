//go:build !linux

package callsfu

import "net/netip"

// recvBatch is Linux's recvmmsg batch; elsewhere reads are one at a time.
type recvBatch struct{}

// newRecvBatch returns nil: no batched reads on this system.
func newRecvBatch(*mediaConn) *recvBatch { return nil }

// readDatagram reads one datagram.
func (c *mediaConn) readDatagram(b []byte) (int, netip.AddrPort, error) {
	return c.UDPConn.ReadFromUDPAddrPort(b)
}
