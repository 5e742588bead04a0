package postgres

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pgop "github.com/setpoint-dev/setpoint/operators/postgres"
	"github.com/setpoint-dev/setpoint/operators/postgres/agent"
	"github.com/setpoint-dev/setpoint/testkit"
)

// The figures of docs/postgres.md and docs/benchmarks.md, b.N trials each:
//
//	make bench BENCH=Postgres    # 20 trials
//
// Each trial's time is split into what can be seen from outside: the
// fault to the operator's decision (status.targetPrimary changes:
// detection, failoverDelay and fencing), the decision to the new primary
// reporting (promotion) and to the first committed INSERT through -rw
// (the Service and the client). Rejoin is the fault to the old primary
// streaming again on the new timeline.

// BenchmarkPostgresFailover: SIGKILL of every process of the primary's
// pod (F1, F6).
func BenchmarkPostgresFailover(b *testing.B) {
	benchFailover(b, "kill -KILL -1", true)
}

// BenchmarkPostgresFailoverPostgresOnly: only postgres is killed; the
// agent lives (F1).
func BenchmarkPostgresFailoverPostgresOnly(b *testing.B) {
	benchFailover(b, "pkill -KILL -x postgres", false)
}

type trial struct{ decide, promote, write, rejoin time.Duration }

func benchFailover(b *testing.B, kill string, restart bool) {
	ns := setup(b)
	testkit.Create(b, cluster(ns, "pg", 3))
	waitHealthy(b, ns, "pg", 4*time.Minute)
	mustPsql(b, ns, "pg", "pg-rw", "CREATE TABLE t (id int primary key)")
	var trials []trial
	for i := range b.N {
		c := waitHealthy(b, ns, "pg", 3*time.Minute)
		old := c.Status.CurrentPrimary
		// The kill's own time, printed in the pod just before it: the
		// exec that carries it can take seconds to return after it.
		killed := make(chan time.Time, 1)
		go func() {
			out, err := testkit.Kubectl(b, "", "-n", ns, "exec", old, "-c", "postgres", "--", "sh", "-c", "date +%s.%N; "+kill)
			at, perr := strconv.ParseFloat(strings.TrimSpace(strings.SplitN(out, "\n", 2)[0]), 64)
			if err != nil || perr != nil {
				b.Errorf("kill in %s: %v %v: %s", old, err, perr, out)
			}
			killed <- time.Unix(0, int64(at*1e9))
		}()
		var decided, promoted, wrote time.Time
		var next string
		testkit.Eventually(b, time.Minute, func() error {
			c := get(b, ns, "pg")
			if decided.IsZero() && c.Status.TargetPrimary != old {
				decided, next = time.Now(), c.Status.TargetPrimary
			}
			if !decided.IsZero() && promoted.IsZero() && c.Status.CurrentPrimary == next {
				promoted = time.Now()
			}
			if _, err := psql(b, ns, "pg", "pg-rw", fmt.Sprintf("INSERT INTO t VALUES (%d)", i)); err != nil {
				return err
			}
			wrote = time.Now()
			return nil
		})
		start := <-killed
		tr := trial{write: wrote.Sub(start)}
		if !decided.IsZero() { // else postgres came back where it was
			tr.decide = decided.Sub(start)
		}
		if !promoted.IsZero() {
			tr.promote = promoted.Sub(start)
		}
		if restart {
			// The kubelet doubles a container's restart back-off with
			// each crash of the same pod (three pods take turns as
			// primary over 20 trials); delete the killed pod, as a
			// replaced node would, so back-off does not stretch later
			// trials. Rejoin then includes the pod's re-creation.
			testkit.MustKubectl(b, "-n", ns, "delete", "pod", old, "--wait=false")
		}
		testkit.Eventually(b, 2*time.Minute, func() error {
			in := instance(get(b, ns, "pg"), old)
			if in.Role != "replica" || !in.Ready {
				return fmt.Errorf("%s: %+v", old, in)
			}
			return nil
		})
		tr.rejoin = time.Since(start)
		trials = append(trials, tr)
		explain(b, ns, i, tr)
	}
	report(b, trials)
}

// explain logs each trial, and for a slow one the cluster's Events, so
// an outlier can be read afterwards.
func explain(b *testing.B, ns string, i int, tr trial) {
	c := get(b, ns, "pg")
	b.Logf("trial %d: decide %s promote %s write %s rejoin %s; %s", i, tr.decide, tr.promote, tr.write, tr.rejoin, c.Status.LastFailover)
	if tr.write > 10*time.Second {
		for _, e := range testkit.Events(b, c) {
			b.Logf("  %s", e)
		}
	}
}

// BenchmarkPostgresSwitchover: the request to the first committed INSERT
// through -rw (F2), then the agents' footprint and the steady-state API
// writes (F9).
func BenchmarkPostgresSwitchover(b *testing.B) {
	ns := setup(b)
	testkit.Create(b, cluster(ns, "pg", 3))
	waitHealthy(b, ns, "pg", 4*time.Minute)
	mustPsql(b, ns, "pg", "pg-rw", "CREATE TABLE t (id int primary key)")
	var trials []trial
	for i := range b.N {
		c := waitHealthy(b, ns, "pg", 3*time.Minute)
		to := "pg-1"
		if c.Status.CurrentPrimary == to {
			to = "pg-2"
		}
		start := time.Now()
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, pgop.AnnotationSwitchover, to)
		if err := testkit.Env(b).Client.Patch(b.Context(), c, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			b.Fatal(err)
		}
		var tr trial
		testkit.Eventually(b, time.Minute, func() error {
			c := get(b, ns, "pg")
			if tr.decide == 0 && c.Status.TargetPrimary == to {
				tr.decide = time.Since(start)
			}
			if tr.promote == 0 && c.Status.CurrentPrimary == to {
				tr.promote = time.Since(start)
			}
			if c.Status.CurrentPrimary != to {
				return fmt.Errorf("primary %s", c.Status.CurrentPrimary)
			}
			if _, err := psql(b, ns, "pg", "pg-rw", fmt.Sprintf("INSERT INTO t VALUES (%d)", i)); err != nil {
				return err
			}
			tr.write = time.Since(start)
			return nil
		})
		trials = append(trials, tr)
		explain(b, ns, i, tr)
	}
	report(b, trials)
	waitHealthy(b, ns, "pg", 3*time.Minute)
	footprint(b, ns)
}

// footprint reports the agents' RSS and the API writes of a minute of
// steady state: the primary Lease's renewals (the agents' only writes)
// and the status writes (the operator's), per instance.
func footprint(b *testing.B, ns string) {
	var rss []float64
	for _, p := range []string{"pg-1", "pg-2", "pg-3"} {
		out := testkit.MustKubectl(b, "-n", ns, "exec", p, "-c", "postgres", "--", "ps", "-o", "rss=", "-C", "setpoint")
		for _, f := range strings.Fields(out) {
			if kb, err := strconv.ParseFloat(f, 64); err == nil {
				rss = append(rss, kb/1024)
			}
		}
	}
	if len(rss) > 0 {
		b.ReportMetric(slices.Max(rss), "agent-max-RSS-MiB")
	}
	lease := func() int64 {
		l := &coordinationv1.Lease{}
		if err := testkit.Env(b).Client.Get(b.Context(), client.ObjectKey{Namespace: ns, Name: agent.LeaseName("pg")}, l); err != nil {
			b.Fatal(err)
		}
		n, _ := strconv.ParseInt(l.ResourceVersion, 10, 64)
		return n
	}
	status := func() string { return get(b, ns, "pg").ResourceVersion }
	// Count distinct versions seen, polling: each is one write.
	leases, statuses := map[int64]bool{}, map[string]bool{}
	window := time.Minute
	for end := time.Now().Add(window); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		leases[lease()] = true
		statuses[status()] = true
	}
	perTen := float64(len(leases)-1+len(statuses)-1) / 3 / (window.Seconds() / 10)
	b.ReportMetric(perTen, "writes/10s/instance")
	b.Logf("steady state, %s: %d Lease renewals, %d status writes, %.2f writes per 10 s per instance; agents' RSS %v MiB",
		window, len(leases)-1, len(statuses)-1, perTen, rss)
}

func report(b *testing.B, trials []trial) {
	pick := map[string]func(trial) time.Duration{
		"decide":  func(t trial) time.Duration { return t.decide },
		"promote": func(t trial) time.Duration { return t.promote },
		"write":   func(t trial) time.Duration { return t.write },
		"rejoin":  func(t trial) time.Duration { return t.rejoin },
	}
	for _, name := range []string{"decide", "promote", "write", "rejoin"} {
		var d []time.Duration
		for _, t := range trials {
			if v := pick[name](t); v > 0 {
				d = append(d, v)
			}
		}
		if len(d) == 0 {
			continue
		}
		slices.Sort(d)
		q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
		b.ReportMetric(q(0.5).Seconds(), name+"-p50-s")
		b.ReportMetric(q(0.95).Seconds(), name+"-p95-s")
		b.ReportMetric(d[len(d)-1].Seconds(), name+"-max-s")
	}
}
