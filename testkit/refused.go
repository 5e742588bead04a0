package testkit

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
)

// Refused records the requests of a client that the API server refused
// with 403 Forbidden: run an operator with Wrap's config, as the
// ServiceAccount its manifests make, and Check that it was never refused.
// A write into a namespace being deleted is also a 403 but says nothing
// of permissions (another test's namespace going away), so it is not
// counted.
type Refused struct {
	mu  sync.Mutex
	got []string
}

// Wrap returns a copy of cfg whose requests are watched.
func (f *Refused) Wrap(cfg *rest.Config) *rest.Config {
	return observe(cfg, func(r *http.Request, resp *http.Response) {
		if resp != nil && resp.StatusCode == http.StatusForbidden {
			if terminating(resp) {
				return
			}
			f.mu.Lock()
			f.got = append(f.got, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
			f.mu.Unlock()
		}
	})
}

// terminating reports whether a 403 answer is the API server's refusal to
// create in a namespace being deleted; it leaves the body readable.
func terminating(resp *http.Response) bool {
	if resp.Body == nil {
		return false
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return err == nil && bytes.Contains(b, []byte("because it is being terminated"))
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
