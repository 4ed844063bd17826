package botapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
)

// The node mounts the Bot API at the root of its public listener, beside
// its other handlers, with MAX's 404 for every other path.
func ExampleServer_Register() {
	api := New(Options{Backend: &fakeBackend{}})
	defer api.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/", NotFound)
	mux.Handle("/media/", http.NotFoundHandler()) // the node's other handlers
	api.Register(mux)

	req := httptest.NewRequest("GET", "/me", nil)
	req.Header.Set("Authorization", testToken)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	fmt.Println(w.Code, w.Body.String())
	// Output:
	// 200 {"user_id":42,"first_name":"Echo","name":"Echo","username":"echo_bot","is_bot":true,"last_activity_time":0}
}
