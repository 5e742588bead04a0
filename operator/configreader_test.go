package operator_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/configdata"
	"github.com/setpoint-dev/setpoint/testkit"
)

// secretRequests counts, of an operator's requests, the GETs of one
// Secret and the lists and watches of Secrets that ask for whole objects
// rather than their metadata.
type secretRequests struct {
	gets  atomic.Int64
	mu    sync.Mutex
	whole []string
}

func (s *secretRequests) wrap(cfg *rest.Config, name string) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			switch {
			case r.Method != http.MethodGet:
			case strings.HasSuffix(r.URL.Path, "/secrets/"+name):
				s.gets.Add(1)
			case strings.HasSuffix(r.URL.Path, "/secrets") && !strings.Contains(r.Header.Get("Accept"), "as=PartialObjectMetadata"):
				s.mu.Lock()
				s.whole = append(s.whole, r.URL.String())
				s.mu.Unlock()
			}
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

// TestConfigReaderKeepsNoSecretWhole: through WatchConfig and
// ConfigReader, a change of a Secret's value reaches the objects that
// read it as a new digest, while the operator lists and watches Secrets
// as metadata only, and reads the one Secret it uses once per change,
// not once per pass.
func TestConfigReaderKeepsNoSecretWhole(t *testing.T) {
	installWidgetCRD(t)
	ns := testkit.Env(t).Namespace(t)
	o := opts(ns)
	o.Scheme = widgetScheme(t)
	o.SyncPeriod = time.Second
	var reqs secretRequests
	var passes atomic.Int64
	start(t, reqs.wrap(testkit.Env(t).Config, "creds"), o, func(op *operator.Operator) {
		w := operator.Watch[*Widget](op)
		operator.WatchConfig(w, "widget-secrets", func(w *Widget) []configdata.Ref {
			return []configdata.Ref{{Kind: configdata.KindSecret, Name: w.Spec.Settings}}
		})
		w.Children(func(ctx context.Context, w *Widget) ([]client.Object, error) {
			passes.Add(1)
			data, _, err := configdata.Read(ctx, op.ConfigReader(), configdata.KindSecret, w.Namespace, w.Spec.Settings)
			if err != nil {
				return nil, err
			}
			return []client.Object{&corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: w.Name + "-out"},
				Data:       map[string]string{"digest": string(data["password"])},
			}}, nil
		}, &corev1.ConfigMap{})
	})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns}, Data: map[string][]byte{"password": []byte("hunter2")}}
	create(t, secret)
	if err := widgetClient(t).Create(t.Context(), &Widget{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: ns}, Spec: WidgetSpec{Settings: "creds"}}); err != nil {
		t.Fatal(err)
	}
	digest := func(value string) {
		t.Helper()
		waitData(t, ns, "r-out", "digest", string(configdata.Key(nil).Value([]byte(value))))
	}
	digest("hunter2")
	mutate(t, secret, func(s *corev1.Secret) { s.Data["password"] = []byte("hunter3") })
	digest("hunter3")

	// Resyncs (one a second) read nothing from the API server. Counted
	// from the pass after the one that saw the change: that one may have
	// read the Secret before the metadata cache had the new version.
	waitPasses := func(n int64) {
		t.Helper()
		seen := passes.Load()
		testkit.Eventually(t, wait, func() error {
			if got := passes.Load() - seen; got < n {
				return fmt.Errorf("%d passes so far", got)
			}
			return nil
		})
	}
	waitPasses(1)
	gets := reqs.gets.Load()
	waitPasses(3)
	if n := reqs.gets.Load(); n != gets {
		t.Errorf("%d reads of the Secret over passes with nothing changed", n-gets)
	}
	if reqs.gets.Load() > 6 {
		t.Errorf("%d reads of the Secret for two contents", reqs.gets.Load())
	}
	reqs.mu.Lock()
	defer reqs.mu.Unlock()
	if len(reqs.whole) > 0 {
		t.Errorf("Secrets listed or watched whole: %v", reqs.whole)
	}
}
