package operator_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// cuttable is a client's network: cut, every request fails as an
// unreachable API server would make it; each write the process sends
// (its context live, so it would leave the process) is logged with its
// time.
type cuttable struct {
	cut    atomic.Bool
	mu     sync.Mutex
	writes []timedWrite
}

type timedWrite struct {
	at   time.Time
	what string
}

func (c *cuttable) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method != http.MethodGet && r.Context().Err() == nil && !strings.HasPrefix(r.URL.Path, "/apis/authorization.k8s.io/") {
				c.mu.Lock()
				c.writes = append(c.writes, timedWrite{time.Now(), r.Method + " " + r.URL.Path})
				c.mu.Unlock()
			}
			if c.cut.Load() {
				return nil, errors.New("network unreachable")
			}
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

// writesAfter lists the writes sent after t, with their time from t.
func (c *cuttable) writesAfter(t time.Time) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, w := range c.writes {
		if w.at.After(t) {
			out = append(out, fmt.Sprintf("+%s %s", w.at.Sub(t).Round(time.Millisecond), w.what))
		}
	}
	return out
}

// TestLeaderCutOffStopsWritingAndExits (#17 item 3): a leader cut off
// from the API server under churn sends no write once it has given up
// (its Run returned) or the standby leads (Events aside), its Run
// returns, and the standby takes over and handles
// every object. make chaos cuts it off for 30 s with client-go's default
// timings (SETPOINT_CUTOFF=30s); make test for as long as it takes to
// exit, with short ones.
func TestLeaderCutOffStopsWritingAndExits(t *testing.T) {
	le := operator.LeaderElection{LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond}
	var cutFor time.Duration
	if s := os.Getenv("SETPOINT_CUTOFF"); s != "" {
		var err error
		if cutFor, err = time.ParseDuration(s); err != nil {
			t.Fatalf("SETPOINT_CUTOFF: %v", err)
		}
		le = operator.LeaderElection{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}
	}
	env := testkit.Env(t)
	ns := env.Namespace(t)
	le.Namespace = ns
	handled := newCalls()
	newReplica := func(name string, cfg *rest.Config) *operator.Operator {
		o := opts(ns)
		o.Name = "cutoff"
		o.LeaderElection = &le
		op, err := operator.New(cfg, o)
		if err != nil {
			t.Fatal(err)
		}
		operator.Watch[*corev1.ConfigMap](op).OnCreate(func(ctx context.Context, cs *operator.Cause[*corev1.ConfigMap]) error {
			handled.add(name, cs.Object.Name)
			return nil
		})
		return op
	}
	holder := func() string { return leaseHolder(t, ns, "cutoff") }
	net := &cuttable{}
	leader := newReplica("a", net.wrap(env.Config))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	exited := make(chan error, 1)
	go func() { exited <- leader.Run(ctx) }()
	testkit.Eventually(t, wait, func() error {
		if holder() == "" {
			return errors.New("no leader yet")
		}
		return nil
	})
	first := holder()
	testkit.StartOperator(t, newReplica("b", env.Config))

	// Churn: a ConfigMap every 50 ms until the end.
	made := churnConfigMaps(t, ns, 50*time.Millisecond)
	testkit.Eventually(t, wait, func() error {
		if n := handled.count("a"); n < 10 {
			return fmt.Errorf("the leader handled %d ConfigMaps", n)
		}
		return nil
	})

	cutAt := time.Now()
	net.cut.Store(true)
	var exitErr error
	select {
	case exitErr = <-exited:
	case <-time.After(le.RenewDeadline + 30*time.Second):
		t.Fatal("the cut-off leader did not stop")
	}
	exitAfter := time.Since(cutAt)
	var takeover time.Duration
	testkit.Eventually(t, 2*le.LeaseDuration+wait, func() error {
		if h := holder(); h == first || h == "" {
			return fmt.Errorf("lease still held by %q", h)
		}
		takeover = time.Since(cutAt)
		return nil
	})
	if left := cutFor - time.Since(cutAt); left > 0 {
		// The old leader stays cut off as long as asked; it must not come
		// back to write when the network does.
		<-time.After(left)
	}
	net.cut.Store(false)
	names := made()
	waitHandled(t, ns, names)
	t.Logf("leader cut off: Run returned after %s (%v), the standby leads %s after the cut (lease %s, renew deadline %s); %d ConfigMaps, a handled %d, b %d",
		exitAfter.Round(10*time.Millisecond), exitErr, takeover.Round(10*time.Millisecond), le.LeaseDuration, le.RenewDeadline, len(names), handled.count("a"), handled.count("b"))
	// The elector gives up RenewDeadline after its first failed renewal;
	// the leader's Run returns once its workers stopped, and the standby
	// may lead only a whole lease after the last renewal it saw. A write
	// the old leader sends after either is a write of a non-leader.
	// Events are left out: they carry no state, and the elector posts its
	// own "stopped leading" as it gives up.
	stoppedAt := cutAt.Add(min(exitAfter, takeover))
	t.Logf("writes after the cut: %v", net.writesAfter(cutAt))
	var late []string
	for _, w := range net.writesAfter(stoppedAt) {
		if !strings.HasSuffix(w, "/events") {
			late = append(late, w)
		}
	}
	// Handled by both: the old leader's success had not landed when it
	// was cut off (at most the calls in flight then).
	both := 0
	for _, name := range handled.of("b") {
		if slices.Contains(handled.of("a"), name) {
			both++
		}
	}
	survived := 0
	if len(late) == 0 && exitErr != nil {
		survived = 1
	}
	testkit.ReportChaos(t, testkit.ChaosRow{Fault: fmt.Sprintf("leader cut off %s (lease %s)", max(cutFor, exitAfter).Round(time.Second), le.LeaseDuration),
		Injected: 1, Survived: survived, Duplicated: both, Reconverge: []time.Duration{takeover}})
	if len(late) > 0 {
		t.Errorf("the cut-off leader sent %d writes after it stopped leading: %v", len(late), late)
	}
	if exitErr == nil {
		t.Error("the cut-off leader's Run returned no error")
	}
}

// churnConfigMaps creates a ConfigMap every period until the returned
// function is called, which returns the names made.
func churnConfigMaps(t *testing.T, ns string, period time.Duration) func() []string {
	t.Helper()
	stop := make(chan struct{})
	done := make(chan []string, 1)
	go func() {
		var names []string
		tick := time.NewTicker(period)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- names
				return
			case <-tick.C:
			}
			name := fmt.Sprintf("c%05d", i)
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
			if err := testkit.Env(t).Client.Create(context.Background(), cm); err != nil {
				t.Errorf("create %s: %v", name, err)
				continue
			}
			names = append(names, name)
		}
	}()
	var once sync.Once
	var names []string
	end := func() []string {
		once.Do(func() {
			close(stop)
			names = <-done
		})
		return names
	}
	t.Cleanup(func() { end() })
	return end
}

// waitHandled waits until every named ConfigMap is recorded as handled.
func waitHandled(t *testing.T, ns string, names []string) {
	t.Helper()
	testkit.Eventually(t, time.Minute, func() error {
		var list corev1.ConfigMapList
		if err := testkit.Env(t).Client.List(t.Context(), &list, clientIn(ns)); err != nil {
			return err
		}
		done := map[string]bool{}
		for _, cm := range list.Items {
			if _, ok := cm.Annotations["setpoint.dev/last-handled-configuration"]; ok {
				done[cm.Name] = true
			}
		}
		for _, n := range names {
			if !done[n] {
				return fmt.Errorf("%s not handled yet (%d of %d are)", n, len(done), len(names))
			}
		}
		return nil
	})
}
