package wire

import "google.golang.org/protobuf/encoding/protowire"

// fieldFrameSend is Frame.send's field number.
const fieldFrameSend = 13

// SendView is a Send decoded in place: Body aliases the frame's payload
// and is valid as long as the payload is.
type SendView struct {
	Chat, ClientMsgID uint64
	Kind              MsgKind
	Body              []byte
}

// ParseSend decodes payload, a frame's payload, as a Send request with no
// allocation, the hot path's decoder. It reports ok only for a plain one:
// an id and a send, each once, and within the send only its known fields,
// each once; anything else (another request, unknown or repeated fields,
// a malformed frame) reports !ok, for Decode to handle in full.
func ParseSend(payload []byte) (id uint64, s SendView, ok bool) {
	var sawID, sawSend bool
	var send []byte
	for b := payload; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, s, false
		}
		b = b[n:]
		switch {
		case num == fieldFrameID && typ == protowire.VarintType && !sawID:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, s, false
			}
			id, sawID, b = v, true, b[n:]
		case num == fieldFrameSend && typ == protowire.BytesType && !sawSend:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, s, false
			}
			send, sawSend, b = v, true, b[n:]
		default:
			return 0, s, false
		}
	}
	if !sawSend {
		return 0, s, false
	}
	var seen [5]bool
	for b := send; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num < 1 || num > 4 || seen[num] {
			return 0, s, false
		}
		seen[num] = true
		b = b[n:]
		if num == 4 {
			if typ != protowire.BytesType {
				return 0, s, false
			}
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, s, false
			}
			s.Body, b = v, b[n:]
			continue
		}
		if typ != protowire.VarintType {
			return 0, s, false
		}
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return 0, s, false
		}
		b = b[n:]
		switch num {
		case 1:
			s.Chat = v
		case 2:
			s.ClientMsgID = v
		case 3:
			s.Kind = MsgKind(int32(v))
		}
	}
	return id, s, true
}
