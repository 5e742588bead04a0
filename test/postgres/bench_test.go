package postgres

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	postgresv1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
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

// stableWriter starts a fast writer (startLoss) on a healthy cluster and
// returns its primary. A primary restarted in place can still be failed
// over a moment later (failoverDelay 0 and a report from before the
// restart): a trial whose primary moved while its writer started is
// started again, so that the kill hits the writer's server.
func stableWriter(b *testing.B, ns string, from int) (string, func() loss) {
	for {
		before := waitHealthy(b, ns, "pg", 3*time.Minute).Status
		l := startLoss(b, ns, "pg", from)
		after := get(b, ns, "pg").Status
		if after.CurrentPrimary == before.CurrentPrimary && after.TargetPrimary == before.CurrentPrimary && after.LastFailover == before.LastFailover {
			return before.CurrentPrimary, l
		}
		fmt.Fprintf(os.Stderr, "the primary moved while the writer started (%s); again\n", after.LastFailover)
		from += fastInserts / 2
		_, _ = testkit.Kubectl(b, "", "-n", ns, "exec", "client", "--", "pkill", "-x", "psql")
		l()
	}
}

type trial struct {
	decide, promote, write, rejoin time.Duration
	// inPlace: the old primary is the primary again, with no failover.
	inPlace bool
	// loss: the fast writer's acknowledged commits, and those of them
	// missing after the failover (F3, asynchronous).
	loss *loss
}

func benchFailover(b *testing.B, kill string, restart bool) {
	ns := setup(b)
	testkit.Create(b, cluster(ns, "pg", 3))
	waitHealthy(b, ns, "pg", 4*time.Minute)
	mustPsql(b, ns, "pg", "pg-rw", writesTable)
	mustPsql(b, ns, "pg", "pg-rw", "CREATE TABLE acked (id int primary key)")
	var trials []trial
	for i := range b.N {
		old, loss := stableWriter(b, ns, (i+1)*fastInserts)
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
		seen := watchMoves(b, ns, old)
		start, wrote := firstWriteAfter(b, ns, killed, "")
		m := seen()
		tr := trial{write: wrote.Sub(start)}
		// No decision: postgres came back where it was.
		tr.decide, tr.promote = after(start, m.decided), after(start, m.promoted)
		if restart {
			// The kubelet doubles a container's restart back-off with
			// each crash of the same pod (three pods take turns as
			// primary over 20 trials); delete the killed pod, as a
			// replaced node would, so back-off does not stretch later
			// trials. Rejoin then includes the pod's re-creation.
			testkit.MustKubectl(b, "-n", ns, "delete", "pod", old, "--wait=false")
		}
		// Back in service: as a replica after a failover or, when the
		// agent restarted postgres before the operator looked (only
		// postgres killed, failoverDelay 0), as the primary still.
		testkit.Eventually(b, 2*time.Minute, func() error {
			c := get(b, ns, "pg")
			in := instance(c, old)
			tr.inPlace = in.Role == "primary" && c.Status.CurrentPrimary == old && c.Status.TargetPrimary == old
			if !in.Ready || (in.Role != "replica" && !tr.inPlace) {
				return fmt.Errorf("%s: %+v", old, in)
			}
			return nil
		})
		tr.rejoin = time.Since(start)
		l := loss()
		tr.loss = &l
		trials = append(trials, tr)
		explain(b, ns, i, tr)
	}
	report(b, trials)
}

// writesTable is what the benchmarks insert into: each insert answers
// with the server's clock, so a write is timed by when it happened, not
// by when a client that may have waited on a dead address learnt of it.
const writesTable = "CREATE TABLE w (id bigserial primary key)"

// firstWriteAfter inserts through -rw until one insert is known to have
// happened after the fault (whose time comes on killed once its exec
// returned) on a server at address on (any, if ""), and returns both
// times. Inserts before the fault (the old primary still up) do not
// count.
func firstWriteAfter(b *testing.B, ns string, killed <-chan time.Time, on string) (start, wrote time.Time) {
	type write struct {
		at     time.Time
		server string
	}
	var writes []write
	// What each try answered, printed if the first write came late, so
	// an outlier can be read afterwards.
	var tries []string
	defer func() {
		if wrote.Sub(start) > 10*time.Second {
			fmt.Fprintf(os.Stderr, "  writes after the fault at %s (want on %q):\n    %s\n", start.Format("15:04:05.000"), on, strings.Join(tries, "\n    "))
		}
	}()
	testkit.Eventually(b, time.Minute, func() error {
		if start.IsZero() {
			select {
			case start = <-killed:
			default:
			}
		}
		out, err := psql(b, ns, "pg", "pg-rw", "INSERT INTO w DEFAULT VALUES RETURNING extract(epoch from clock_timestamp()) || ' ' || host(inet_server_addr())")
		tries = append(tries, fmt.Sprintf("%s %q %v", time.Now().Format("15:04:05.000"), out, err))
		secs, server, _ := strings.Cut(out, " ")
		if at, perr := strconv.ParseFloat(secs, 64); err == nil && perr == nil {
			writes = append(writes, write{time.Unix(0, int64(at*1e9)), server})
		}
		if start.IsZero() {
			return errors.New("the fault's exec has not returned yet")
		}
		for _, w := range writes {
			if w.at.After(start) && (on == "" || w.server == on) {
				wrote = w.at
				return nil
			}
		}
		if err != nil {
			return err
		}
		return errors.New("no write after the fault yet")
	})
	return start, wrote
}

// after is t - start, 0 when t was not seen.
func after(start, t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return max(0, t.Sub(start))
}

// moves is when the operator was first seen to move the primary off
// old: the target (its decision), then the current primary.
type moves struct {
	decided, promoted time.Time
}

// watchMoves follows cluster pg's status every 100 ms (followStatus)
// until the returned function is called.
func watchMoves(b *testing.B, ns, old string) func() moves {
	var m moves
	next := ""
	stop := followStatus(b, ns, 100*time.Millisecond, func(c *postgresv1alpha1.PostgresCluster) {
		// Fencing empties the target before a replica is chosen.
		if t := c.Status.TargetPrimary; t != old {
			if m.decided.IsZero() {
				m.decided = time.Now()
			}
			if t != "" {
				next = t
			}
		}
		if next != "" && m.promoted.IsZero() && c.Status.CurrentPrimary == next {
			m.promoted = time.Now()
		}
	})
	return func() moves {
		stop()
		return m
	}
}

// explain logs each trial, and for a slow one the cluster's Events, so
// an outlier can be read afterwards.
func explain(b *testing.B, ns string, i int, tr trial) {
	c := get(b, ns, "pg")
	// To stderr: the testing package keeps only the first lines of a
	// benchmark's log.
	loss := ""
	if tr.loss != nil {
		loss = ", " + tr.loss.String()
	}
	if tr.inPlace {
		loss += ", recovered in place (no failover)"
	}
	fmt.Fprintf(os.Stderr, "%s trial %d: decide %s promote %s write %s rejoin %s%s; %s\n",
		b.Name(), i, tr.decide, tr.promote, tr.write, tr.rejoin, loss, c.Status.LastFailover)
	if tr.write > 10*time.Second || (tr.loss != nil && len(tr.loss.lost) > 1) {
		for _, e := range testkit.Events(b, c) {
			fmt.Fprintf(os.Stderr, "  %s\n", e)
		}
		out, _ := testkit.Kubectl(b, "", "-n", ns, "logs", "-l", pgop.LabelCluster, "-c", "postgres", "--tail=80", "--prefix")
		fmt.Fprintf(os.Stderr, "  logs:\n%s\n", out)
	}
}

// BenchmarkPostgresSwitchover: the request to the first committed INSERT
// through -rw (F2), then the agents' footprint and the steady-state API
// writes (F9).
func BenchmarkPostgresSwitchover(b *testing.B) {
	ns := setup(b)
	testkit.Create(b, cluster(ns, "pg", 3))
	waitHealthy(b, ns, "pg", 4*time.Minute)
	mustPsql(b, ns, "pg", "pg-rw", writesTable)
	var trials []trial
	for i := range b.N {
		c := waitHealthy(b, ns, "pg", 3*time.Minute)
		old, to := c.Status.CurrentPrimary, "pg-1"
		if old == to {
			to = "pg-2"
		}
		seen := watchMoves(b, ns, old)
		requested := make(chan time.Time, 1)
		requested <- time.Now()
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, pgop.AnnotationSwitchover, to)
		if err := testkit.Env(b).Client.Patch(b.Context(), c, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			b.Fatal(err)
		}
		// The first write on the new primary, by the server's address.
		start, wrote := firstWriteAfter(b, ns, requested, pod(b, ns, to).Status.PodIP)
		m := seen()
		trials = append(trials, trial{decide: after(start, m.decided), promote: after(start, m.promoted), write: wrote.Sub(start)})
		explain(b, ns, i, trials[len(trials)-1])
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
		// By its command line: ps -C would match the kernel's name of the
		// process, cut at 15 characters.
		out := testkit.MustKubectl(b, "-n", ns, "exec", p, "-c", "postgres", "--", "ps", "-eo", "rss=,args=")
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || path.Base(f[1]) != agent.Binary || f[2] != "run" {
				continue
			}
			if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
				rss = append(rss, kb/1024)
			}
		}
	}
	if len(rss) != 3 {
		b.Fatalf("found %d agents' RSS (%v), want 3", len(rss), rss)
	}
	b.ReportMetric(slices.Max(rss), "agent-max-RSS-MiB")
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
		b.ReportMetric(testkit.Percentile(d, 0.5).Seconds(), name+"-p50-s")
		b.ReportMetric(testkit.Percentile(d, 0.95).Seconds(), name+"-p95-s")
		b.ReportMetric(testkit.Percentile(d, 1).Seconds(), name+"-max-s")
	}
	lost, most, acked, inPlace := 0, 0, 0, 0
	for _, t := range trials {
		if t.inPlace {
			inPlace++
		}
		if t.loss != nil {
			n := len(t.loss.lost)
			lost, most, acked = lost+n, max(most, n), acked+len(t.loss.acked)
		}
	}
	if acked > 0 {
		b.ReportMetric(float64(lost)/float64(len(trials)), "lost-acked-commits/failover")
		b.ReportMetric(float64(most), "lost-acked-commits-max")
		b.ReportMetric(float64(acked)/float64(len(trials)), "acked-commits/failover")
		b.ReportMetric(float64(inPlace), "recovered-in-place")
	}
}
