package testkit

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
)

// Refused records the requests of a client that the API server refused
// with 403 Forbidden: run an operator with Wrap's config, as the
// ServiceAccount its manifests make, and Check that it was never refused.
type Refused struct {
	mu  sync.Mutex
	got []string
}

// Wrap returns a copy of cfg whose requests are watched.
func (f *Refused) Wrap(cfg *rest.Config) *rest.Config {
	return observe(cfg, func(r *http.Request, resp *http.Response) {
		if resp != nil && resp.StatusCode == http.StatusForbidden {
			f.mu.Lock()
			f.got = append(f.got, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
			f.mu.Unlock()
		}
	})
}

// Check fails the test if any request was refused, listing them.
func (f *Refused) Check(t testing.TB) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) > 0 {
		t.Errorf("%d requests were refused:\n%s", len(f.got), strings.Join(f.got, "\n"))
	}
}

// Impersonate returns a copy of cfg that acts as the ServiceAccount
// namespace/name (the API server adds its groups).
func Impersonate(cfg *rest.Config, namespace, name string) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + namespace + ":" + name}
	return cfg
}
