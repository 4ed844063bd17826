package storage

import (
	"math/rand/v2"
	"strings"
)

func stringsRepeat(s string, n int) string { return strings.Repeat(s, n) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, uint64(n)))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
