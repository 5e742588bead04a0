package testkit

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"k8s.io/client-go/rest"
)

// WriteCounter counts the requests that change something on the API
// server (POST, PUT, PATCH, DELETE) made through the configs it wraps:
// the proof that a converged pass writes nothing. Reviews (access,
// token) are POSTs that store nothing and are not counted.
type WriteCounter struct {
	n     atomic.Int64
	mu    sync.Mutex
	paths []string
}

// Wrap returns a copy of cfg whose requests are counted.
func (w *WriteCounter) Wrap(cfg *rest.Config) *rest.Config {
	return observe(cfg, func(r *http.Request, _ *http.Response) {
		if isReview(r.URL.Path) {
			return
		}
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
			w.n.Add(1)
			w.mu.Lock()
			w.paths = append(w.paths, r.Method+" "+r.URL.Path)
			w.mu.Unlock()
		}
	})
}

// isReview: a request to the authorization or authentication APIs, whose
// "creates" are questions.
func isReview(path string) bool {
	return strings.HasPrefix(path, "/apis/authorization.k8s.io/") || strings.HasPrefix(path, "/apis/authentication.k8s.io/")
}

// observe returns a copy of cfg that passes each request it makes, with
// its response (nil when the request failed), to seen.
func observe(cfg *rest.Config, seen func(*http.Request, *http.Response)) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(r)
			if err != nil {
				resp = nil
			}
			seen(r, resp)
			return resp, err
		})
	})
	return cfg
}

// Count is the number of writes so far.
func (w *WriteCounter) Count() int64 { return w.n.Load() }

// Writes lists the writes so far as "METHOD /path".
func (w *WriteCounter) Writes() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.paths)
}

// RoundTripFunc is an http.RoundTripper made of a function.
type RoundTripFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f.
func (f RoundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
