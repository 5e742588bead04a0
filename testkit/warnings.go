package testkit

import (
	"context"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Warnings keeps the warnings the API server sent a client (from
// admission webhooks, deprecated APIs), as kubectl would print them.
type Warnings struct {
	mu  sync.Mutex
	got []string
}

// HandleWarningHeaderWithContext implements rest.WarningHandlerWithContext.
func (w *Warnings) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, text)
}

// Take returns the warnings received since the last Take.
func (w *Warnings) Take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	got := w.got
	w.got = nil
	return got
}

// WarnedClient is a client of the test plane, with the environment's
// scheme, that keeps the warnings of its requests.
func WarnedClient(t testing.TB) (client.Client, *Warnings) {
	t.Helper()
	w := &Warnings{}
	cfg := rest.CopyConfig(Env(t).Config)
	cfg.WarningHandlerWithContext = w
	c, err := client.New(cfg, client.Options{Scheme: Env(t).Client.Scheme()})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return c, w
}
