package signing

import (
	"encoding/json"
	"fmt"
	"time"
)

// Request is a document the node asks a user to sign.
type Request struct {
	ID        string // unique, chosen by the node (e.g. "<chat>-<seq>" of the request message)
	Chat      uint64 // the chat the request was made in
	Message   uint64 // the seq of the signing request message
	Requester uint64 // the user that asked
	Signer    uint64 // the user who must sign
	Person    Signer // the signer's person at the identity provider
	Title     string
	Document  []byte // nil in a tombstone
	SHA256    [32]byte
	Created   time.Time
	Expires   time.Time // set by Submit from ManagerOptions.Expiry when zero
}

// Outcome is how a request ended.
type Outcome struct {
	Request   Request
	State     State  // Signed, Declined, Expired or Failed
	Signature []byte // detached CMS over Request.Document, DER; set when Signed
	Reason    string // why it ended, for all but Signed
	At        time.Time
}

// Phase is where a request stands at the node.
type Phase int

const (
	// Awaiting: submitted, waiting for the signer's device to decide.
	Awaiting Phase = iota
	// Approved: the signer approved; the signing service has not
	// acknowledged the start yet.
	Approved
	// Signing: the signing service holds the operation; the node polls it.
	Signing
	// Ended: the outcome is decided (Record.Outcome).
	Ended
)

var phaseNames = [...]string{"awaiting", "approved", "signing", "ended"}

// String returns "awaiting", "approved", "signing" or "ended".
func (p Phase) String() string {
	if p >= 0 && int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// Record is a request as the manager keeps it.
type Record struct {
	Request   Request
	Phase     Phase
	Operation string   // the signing service's operation, from Signing on
	Outcome   *Outcome // set when Ended
	// Acknowledged: Finish returned nil for the outcome; the record is a
	// tombstone, without the document, kept for ManagerOptions.Retention.
	Acknowledged bool
}

// Keys in the KV.
const (
	recordPrefix    = "signing/r/" // + ID: a request not yet acknowledged, document included
	tombstonePrefix = "signing/t/" // + ID: an acknowledged request, without its document
)

func recordKey(id string) []byte    { return []byte(recordPrefix + id) }
func tombstoneKey(id string) []byte { return []byte(tombstonePrefix + id) }

// storedRequest is a Request in the KV, less its document.
type storedRequest struct {
	ID        string    `json:"id"`
	Chat      uint64    `json:"chat"`
	Message   uint64    `json:"message"`
	Requester uint64    `json:"requester"`
	Signer    uint64    `json:"signer"`
	OID       string    `json:"oid"`
	SNILS     string    `json:"snils"`
	Title     string    `json:"title"`
	SHA256    []byte    `json:"sha256"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
}

type storedOutcome struct {
	State     State     `json:"state"`
	Signature []byte    `json:"signature,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	At        time.Time `json:"at"`
}

// storedRecord is a Record in the KV. The document is a field of its own
// so loading the heads at start can skip it (storedHead).
type storedRecord struct {
	Request   storedRequest  `json:"request"`
	Phase     Phase          `json:"phase"`
	Operation string         `json:"operation,omitempty"`
	Outcome   *storedOutcome `json:"outcome,omitempty"`
	Document  []byte         `json:"document,omitempty"`
}

// storedHead is what NewManager needs of a record.
type storedHead struct {
	Request storedRequest `json:"request"`
	Phase   Phase         `json:"phase"`
}

func encodeRecord(r *Record) ([]byte, error) {
	q := r.Request
	s := storedRecord{
		Request: storedRequest{
			ID: q.ID, Chat: q.Chat, Message: q.Message, Requester: q.Requester, Signer: q.Signer,
			OID: q.Person.OID, SNILS: q.Person.SNILS, Title: q.Title, SHA256: q.SHA256[:],
			Created: q.Created, Expires: q.Expires,
		},
		Phase:     r.Phase,
		Operation: r.Operation,
		Document:  q.Document,
	}
	if o := r.Outcome; o != nil {
		s.Outcome = &storedOutcome{State: o.State, Signature: o.Signature, Reason: o.Reason, At: o.At}
	}
	b, err := json.Marshal(&s)
	if err != nil {
		return nil, fmt.Errorf("signing: encode record %q: %w", q.ID, err)
	}
	return b, nil
}

func decodeRecord(b []byte) (*Record, error) {
	var s storedRecord
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("signing: decode record: %w", err)
	}
	r := &Record{Request: s.Request.request(), Phase: s.Phase, Operation: s.Operation}
	r.Request.Document = s.Document
	if s.Outcome != nil {
		r.Outcome = &Outcome{Request: r.Request, State: s.Outcome.State, Signature: s.Outcome.Signature, Reason: s.Outcome.Reason, At: s.Outcome.At}
	}
	if r.Phase < Awaiting || r.Phase > Ended || (r.Phase == Ended) != (r.Outcome != nil) {
		return nil, fmt.Errorf("signing: decode record %q: phase %v with outcome %v", r.Request.ID, r.Phase, r.Outcome != nil)
	}
	return r, nil
}

func (s storedRequest) request() Request {
	q := Request{
		ID: s.ID, Chat: s.Chat, Message: s.Message, Requester: s.Requester, Signer: s.Signer,
		Person: Signer{OID: s.OID, SNILS: s.SNILS}, Title: s.Title, Created: s.Created, Expires: s.Expires,
	}
	copy(q.SHA256[:], s.SHA256)
	return q
}
