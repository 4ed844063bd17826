package statesvc

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"time"

	"github.com/gonets/gonets/identity/esia"
)

// callbackTimeout bounds a link's finish: the code's exchange and the
// person's read at the provider.
const callbackTimeout = 30 * time.Second

// CallbackPath is where the provider sends the user's browser back: the
// redirect URI registered with ESIA is the node's public URL + this.
const CallbackPath = "/esia/callback"

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>{{.Title}}</title></head>
<body><h1>{{.Title}}</h1><p>{{.Text}}</p>{{if .Link}}<p><a href="{{.Link}}">Открыть приложение</a></p>{{end}}</body></html>
`))

// Callback serves CallbackPath: the browser comes back from the provider
// with the link's state and a code (or the user's refusal). It answers a
// page the person reads; no personal data is on it.
func (s *Services) Callback() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if s.o.ESIA == nil {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		state := q.Get("state")
		user, ok := s.takeLink(state)
		if !ok {
			s.linkFailed.Inc()
			answer(w, http.StatusBadRequest, "Ссылка устарела", "Эта ссылка уже использована или устарела. Начните привязку в приложении заново.")
			return
		}
		if err := esia.CallbackError(q); err != nil {
			s.linkFailed.Inc()
			if errors.Is(err, esia.ErrDenied) {
				answer(w, http.StatusOK, "Привязка отменена", "Вы не дали согласия; учётная запись Госуслуг не привязана.")
				return
			}
			s.o.Log.Warn("statesvc: the provider sent an error back", "user", user, "err", err)
			answer(w, http.StatusBadGateway, "Не удалось привязать", "Госуслуги вернули ошибку. Попробуйте позже.")
			return
		}
		// Not cancelled with the browser's request: the state is used
		// up, and a closed tab should not waste the person's consent.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), callbackTimeout)
		defer cancel()
		finish, err := s.consent(ctx, user, q.Get("code"), state)
		if err != nil {
			s.linkFailed.Inc()
			s.o.Log.Warn("statesvc: link failed", "user", user, "err", err)
			answer(w, http.StatusBadGateway, "Не удалось привязать", "Не удалось получить данные с Госуслуг. Попробуйте позже.")
			return
		}
		back := s.o.AppRedirect + "?code=" + url.QueryEscape(finish)
		w.Header().Set("Location", back)
		answerLink(w, http.StatusSeeOther, "Вернитесь в приложение", "Согласие получено. Откройте приложение, чтобы завершить привязку.", back)
	})
}

func answer(w http.ResponseWriter, code int, title, text string) {
	answerLink(w, code, title, text, "")
}

// answerLink is answer with a link back to the app.
func answerLink(w http.ResponseWriter, code int, title, text, link string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(code)
	page.Execute(w, struct {
		Title, Text string
		Link        template.URL
	}{title, text, template.URL(link)})
}
