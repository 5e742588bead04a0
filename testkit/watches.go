package testkit

import (
	"io"
	"net/http"
	"sync"

	"k8s.io/client-go/rest"
)

// WatchCounter counts the watches held open through the configs it
// wraps, by request path: the proof that an operator keeps one informer
// of a kind, not one per way it reads it (typed, unstructured and
// metadata reads each have their own cache in controller-runtime).
type WatchCounter struct {
	mu   sync.Mutex
	open map[string]int
}

// Wrap returns a copy of cfg whose watches are counted.
func (w *WatchCounter) Wrap(cfg *rest.Config) *rest.Config {
	return observe(cfg, func(r *http.Request, resp *http.Response) {
		if resp == nil || resp.StatusCode != http.StatusOK || r.URL.Query().Get("watch") != "true" {
			return
		}
		path := r.URL.Path
		w.add(path, 1)
		// A watch ends when its client closes the body or the server
		// ends the stream; either way the body is closed.
		resp.Body = &watchBody{ReadCloser: resp.Body, done: func() { w.add(path, -1) }}
	})
}

func (w *WatchCounter) add(path string, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open == nil {
		w.open = map[string]int{}
	}
	w.open[path] += n
}

// Open is the number of watches open now on path, such as
// "/apis/apps/v1/namespaces/ns/deployments".
func (w *WatchCounter) Open(path string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.open[path]
}

// watchBody calls done once, when it is closed.
type watchBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *watchBody) Close() error {
	b.once.Do(b.done)
	return b.ReadCloser.Close()
}
