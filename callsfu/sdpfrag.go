package callsfu

import (
	"errors"
	"fmt"
	"strings"
)

// sdpFrag is what a trickle PATCH carries (RFC 8840, an
// application/trickle-ice-sdpfrag body): the ICE username fragment and the
// candidates, each with the mid of its media section.
type sdpFrag struct {
	ufrag      string
	candidates []Candidate
}

// maxFragCandidates caps the candidates of one fragment.
const maxFragCandidates = 64

// parseSDPFrag reads an SDP fragment: a=ice-ufrag, and a=candidate lines
// under the m= line and a=mid of their section (the first section when
// they come before any). Other lines are skipped.
func parseSDPFrag(body string) (sdpFrag, error) {
	var f sdpFrag
	index := -1 // of the current media section
	mid := ""
	first := len(f.candidates) // the candidates of the current section start here
	for line := range strings.Lines(body) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "m="):
			index++
			mid = ""
			first = len(f.candidates)
		case strings.HasPrefix(line, "a=mid:"):
			mid = line[len("a=mid:"):]
			for i := first; i < len(f.candidates); i++ {
				f.candidates[i].SDPMid = mid
			}
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			f.ufrag = line[len("a=ice-ufrag:"):]
		case strings.HasPrefix(line, "a=candidate:"):
			if len(f.candidates) == maxFragCandidates {
				return f, fmt.Errorf("more than %d candidates", maxFragCandidates)
			}
			if len(strings.Fields(line)) < 8 {
				return f, fmt.Errorf("candidate %q is too short", line)
			}
			f.candidates = append(f.candidates, Candidate{
				Candidate: line[len("a="):], SDPMid: mid, SDPMLineIndex: uint16(max(index, 0)),
			})
		case line == "" || len(line) > 1 && line[1] == '=':
		default:
			return f, errors.New("a line of the fragment is not an SDP line")
		}
	}
	return f, nil
}
