package mediahttp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
)

// handleFile is GET|HEAD /media/files/{sha}?chat=C&seq=S: a file for a
// member of a chat whose message seq references it. Anything else, a
// non-member included, is 404 not_found, so that nobody learns whether a
// file exists without being allowed to read it.
func (s *Server) handleFile(w http.ResponseWriter, r *http.Request, user uint64) {
	sha := r.PathValue("sha")
	q := r.URL.Query()
	chat, err1 := strconv.ParseUint(q.Get("chat"), 10, 64)
	seq, err2 := strconv.ParseUint(q.Get("seq"), 10, 64)
	if err1 != nil || err2 != nil {
		fail(w, http.StatusBadRequest, CodeBadRequest, "want ?chat=C&seq=S: the message that carries the file")
		return
	}
	notFound := func() { fail(w, http.StatusNotFound, CodeNotFound, "no such file in that message") }
	body, kind, err := s.opts.Access(r.Context(), user, chat, seq)
	if err != nil {
		s.opts.Log.Debug("mediahttp: download refused", "user", user, "chat", chat, "seq", seq, "err", err)
		notFound()
		return
	}
	att, ok := referenced(body, kind, sha)
	if !ok {
		notFound()
		return
	}
	s.serve(w, r, sha, att)
}

// referenced returns the attachment of a message (kind, body) that
// carries sha as its file or its thumbnail.
func referenced(body []byte, kind wire.MsgKind, sha string) (*wire.Attachment, bool) {
	if kind != wire.MsgKind_MSG_KIND_MEDIA || sha == "" {
		return nil, false
	}
	var c wire.Content
	if err := proto.Unmarshal(body, &c); err != nil {
		return nil, false
	}
	for _, a := range c.GetAttachments() {
		if a.GetSha256() == sha {
			return a, true
		}
		if a.GetThumbSha256() == sha {
			return &wire.Attachment{Sha256: sha, Name: "thumb.jpg", Mime: "image/jpeg"}, true
		}
	}
	return nil, false
}

// serve serves blob sha with http.ServeContent: Range, If-None-Match and
// If-Range against its ETag (the quoted hash), named and typed as att
// says (nil: as the store has it).
func (s *Server) serve(w http.ResponseWriter, r *http.Request, sha string, att *wire.Attachment) {
	f, info, err := s.store.Open(sha)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	defer f.Close()
	name, typ := info.Name, info.MIME
	if att != nil {
		if att.GetName() != "" {
			name = att.GetName()
		}
		if att.GetMime() != "" {
			typ = att.GetMime()
		}
	}
	if typ == "" {
		typ = "application/octet-stream"
	}
	h := w.Header()
	h.Set("ETag", info.ETag())
	h.Set("Content-Type", typ)
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	disp := "attachment"
	if isPicture(typ) {
		disp = "inline"
	}
	if name != "" {
		if d := mime.FormatMediaType(disp, map[string]string{"filename": name}); d != "" {
			disp = d
		}
	}
	h.Set("Content-Disposition", disp)
	pw, done := s.watchWrites(w)
	defer done()
	http.ServeContent(pw, r, "", info.Created, f)
}

// signature returns the signature of a signed URL.
func (s *Server) signature(chat, seq uint64, sha string, exp int64) string {
	m := hmac.New(sha256.New, s.opts.Key)
	m.Write([]byte("gonets-media-url-v1\n" + sha + "\n" + strconv.FormatUint(chat, 10) + "\n" + strconv.FormatUint(seq, 10) + "\n" + strconv.FormatInt(exp, 10)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// SignedURL returns a URL that downloads blob sha, carried by message seq
// of chat, without a session token until ttl from now (rounded up to a
// second): for bots, whose Bot API hands out file URLs. The caller checks
// that whoever gets the URL may read that message.
func (s *Server) SignedURL(chat, seq uint64, sha string, ttl time.Duration) string {
	exp := s.opts.Now().Add(ttl + time.Second - 1).Unix()
	q := url.Values{}
	q.Set("chat", strconv.FormatUint(chat, 10))
	q.Set("seq", strconv.FormatUint(seq, 10))
	q.Set("exp", strconv.FormatInt(exp, 10))
	q.Set("sig", s.signature(chat, seq, sha, exp))
	return s.opts.PublicURL + "/media/f/" + url.PathEscape(sha) + "?" + q.Encode()
}

// handleSigned is GET|HEAD /media/f/{sha}?chat&seq&exp&sig: a signed URL.
func (s *Server) handleSigned(w http.ResponseWriter, r *http.Request) {
	sha := r.PathValue("sha")
	q := r.URL.Query()
	chat, err1 := strconv.ParseUint(q.Get("chat"), 10, 64)
	seq, err2 := strconv.ParseUint(q.Get("seq"), 10, 64)
	exp, err3 := strconv.ParseInt(q.Get("exp"), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || q.Get("sig") == "" {
		fail(w, http.StatusBadRequest, CodeBadRequest, "want ?chat&seq&exp&sig, as SignedURL makes them")
		return
	}
	if !hmac.Equal([]byte(q.Get("sig")), []byte(s.signature(chat, seq, sha, exp))) {
		fail(w, http.StatusForbidden, CodeBadSignature, "the URL's signature does not verify")
		return
	}
	if s.opts.Now().Unix() > exp {
		fail(w, http.StatusForbidden, CodeExpired, "the URL expired")
		return
	}
	s.serve(w, r, sha, nil)
}
