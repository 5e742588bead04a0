package operator_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestLifecycleProbesAndMetrics: startup hooks run before handlers,
// cleanup hooks after they stop; /healthz and /readyz answer; handler
// metrics count calls by result.
func TestLifecycleProbesAndMetrics(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	var started, handledBeforeStartup, cleaned atomic.Bool
	o := opts(ns)
	o.MetricsAddr, o.ProbeAddr = testkit.FreeAddr(t), testkit.FreeAddr(t)
	c := newCalls()
	r := start(t, nil, o, func(op *operator.Operator) {
		op.OnStartup(func(ctx context.Context) error {
			started.Store(true)
			return nil
		})
		op.OnCleanup(func(ctx context.Context) error {
			cleaned.Store(true)
			return nil
		})
		operator.Watch[*corev1.ConfigMap](op).OnCreate(func(ctx context.Context, cs *operator.Cause[*corev1.ConfigMap]) error {
			if !started.Load() {
				handledBeforeStartup.Store(true)
			}
			c.add("create", cs.Object.Name)
			if cs.Object.Name == "fails" && cs.Retry == 0 {
				return errBoom
			}
			return nil
		}, operator.ID("counted"), fast)
	})
	for _, path := range []string{"/healthz", "/readyz"} {
		testkit.Eventually(t, wait, func() error { _, err := testkit.HTTPGet("http://" + o.ProbeAddr + path); return err })
	}
	create(t, configMap(ns, "ok"))
	create(t, configMap(ns, "fails"))
	testkit.Eventually(t, wait, func() error {
		body, err := testkit.HTTPGet("http://" + o.MetricsAddr + "/metrics")
		if err != nil {
			return err
		}
		for _, want := range []string{
			`setpoint_handler_calls_total{handler="counted",kind="ConfigMap",operator="` + o.Name + `",result="retry"} 1`,
			`setpoint_handler_errors_total{handler="counted",kind="ConfigMap",operator="` + o.Name + `"} 1`,
			`setpoint_handler_retries_total{handler="counted",kind="ConfigMap",operator="` + o.Name + `"} 1`,
			`setpoint_handler_duration_seconds_count{handler="counted",kind="ConfigMap",operator="` + o.Name + `"}`,
		} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("metrics lack %s", want)
			}
		}
		// kube-root-ca.crt is handled too: at least ok and fails succeed.
		if !strings.Contains(body, `setpoint_handler_calls_total{handler="counted",kind="ConfigMap",operator="`+o.Name+`",result="success"}`) {
			return errors.New("no success counted")
		}
		return nil
	})
	if handledBeforeStartup.Load() {
		t.Error("a handler ran before the startup hook")
	}
	if err := r.stop(); err != nil {
		t.Errorf("run: %v", err)
	}
	if !cleaned.Load() {
		t.Error("cleanup hook did not run")
	}
}

// TestLeaderElection: two replicas of one operator; only the holder of
// the Lease handles objects. The leader then loses the API server (its
// requests fail, as when its node dies): the standby takes the Lease once
// it expires and handles what comes next.
func TestLeaderElection(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	c := newCalls()
	replica := func(name string, cfg *rest.Config) *running {
		o := opts(ns)
		o.Name = "elected" // one Lease for both
		o.LeaderElection = &operator.LeaderElection{Namespace: ns, LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond}
		return start(t, cfg, o, func(op *operator.Operator) {
			operator.Watch[*appsv1.Deployment](op).OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
				c.add(name, cs.Object.Name)
				return nil
			})
		})
	}
	holder := func() string { return leaseHolder(t, ns, "elected") }
	var cut atomic.Bool
	leaderCfg := rest.CopyConfig(env.Config)
	leaderCfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			if cut.Load() {
				return nil, errors.New("network unreachable")
			}
			return rt.RoundTrip(r)
		})
	})
	replica("a", leaderCfg)
	testkit.Eventually(t, wait, func() error {
		if holder() == "" {
			return errors.New("no leader yet")
		}
		return nil
	})
	first := holder()
	replica("b", nil)
	create(t, deployment(ns, "one", 1))
	c.waitCount(t, "a", 1)
	if n := c.count("b"); n != 0 {
		t.Fatalf("standby handled %d objects", n)
	}
	// Done means recorded on the object, not only called: cut the leader
	// off before its write lands and the next leader rightly runs the
	// handler again (seen once in a clone run: b handled one and two).
	testkit.Eventually(t, wait, func() error {
		if _, ok := get(t, deployment(ns, "one", 1)).Annotations["setpoint.dev/last-handled-configuration"]; !ok {
			return errors.New("one not recorded as handled yet")
		}
		return nil
	})

	cut.Store(true)
	testkit.Eventually(t, wait, func() error {
		if h := holder(); h == first || h == "" {
			return fmt.Errorf("lease still held by %q", h)
		}
		return nil
	})
	create(t, deployment(ns, "two", 1))
	c.waitCount(t, "b", 1)
	if got := c.of("b")[0]; got != "two" {
		t.Errorf("new leader handled %s, want two (one was done already)", got)
	}
	if n := c.count("a"); n != 1 {
		t.Errorf("old leader handled %d objects", n)
	}
}
