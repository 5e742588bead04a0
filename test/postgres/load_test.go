package postgres

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	postgresv1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
	pgop "github.com/setpoint-dev/setpoint/operators/postgres"
	"github.com/setpoint-dev/setpoint/testkit"
)

// writer inserts ids 1..n through pg-rw from the client pod, one
// transaction each, and returns the ids whose commit was acknowledged.
func writer(t testing.TB, ns, cluster string, n int) <-chan []int {
	t.Helper()
	secret := appPassword(t, ns, cluster)
	script := fmt.Sprintf(`psql="$(ls /usr/lib/postgresql/*/bin/psql | tail -n 1)"
i=0; while [ $i -lt %d ]; do i=$((i+1))
  if "$psql" -X -q "host=%s-rw user=app dbname=app connect_timeout=2 password=%s" -c "INSERT INTO acked VALUES ($i)" >/dev/null 2>&1; then echo $i; fi
done`, n, cluster, secret)
	done := make(chan []int, 1)
	go func() {
		// As long as the callers wait for it: a busy machine takes more
		// than kubectl's usual minute for 300 connections.
		out, err := testkit.KubectlWithin(t, 3*time.Minute, "", "-n", ns, "exec", "client", "--", "sh", "-c", script)
		if err != nil {
			t.Errorf("writer: %v", err)
		}
		done <- ids(out)
	}()
	return done
}

// fastWriter inserts ids from, from+1, ... into acked through pg-rw on
// one connection, each its own transaction, as fast as the server
// answers, until the connection breaks or n are in; it returns the ids
// whose commit the server acknowledged (RETURNING answers only after the
// commit). A failover of an asynchronous cluster loses what the primary
// acknowledged and no replica had received: this is how much.
func fastWriter(t testing.TB, ns, cluster string, from, n int) <-chan []int {
	t.Helper()
	secret := appPassword(t, ns, cluster)
	script := fmt.Sprintf(`psql="$(ls /usr/lib/postgresql/*/bin/psql | tail -n 1)"
seq %d %d | sed 's/.*/INSERT INTO acked VALUES (&) RETURNING id;/' |
  "$psql" -X -q -A -t "host=%s-rw user=app dbname=app connect_timeout=2 password=%s"`, from, from+n-1, cluster, secret)
	done := make(chan []int, 1)
	go func() {
		// It ends with an error when the primary dies under it: the ids
		// printed before that are what counts.
		out, _ := testkit.KubectlWithin(t, 3*time.Minute, "", "-n", ns, "exec", "client", "--", "sh", "-c", script)
		done <- ids(out)
	}()
	return done
}

// fastInserts is the most a trial's fast writer tries: a kill always
// comes first.
const fastInserts = 1_000_000

// startLoss starts a fastWriter of ids from..from+fastInserts-1 and
// returns once its first row is stored, so that the kill falls among its
// writes. The function it returns waits for the writer to end and counts
// its acknowledged commits and those missing now.
func startLoss(t testing.TB, ns, cluster string, from int) func() loss {
	t.Helper()
	done := fastWriter(t, ns, cluster, from, fastInserts)
	mine := fmt.Sprintf("FROM acked WHERE id >= %d AND id < %d", from, from+fastInserts)
	testkit.Eventually(t, time.Minute, func() error {
		select {
		case sent := <-done:
			// It ended before the fault: -rw was still on its way to the
			// primary of a fault before, or that primary moved again
			// (failoverDelay 0 after a restart in place). Start again on
			// ids of its own, so this one's rows do not count.
			if len(sent) > 0 {
				from = sent[len(sent)-1] + 2 // past one in flight too
			}
			mine = fmt.Sprintf("FROM acked WHERE id >= %d AND id < %d", from, from+fastInserts)
			done = fastWriter(t, ns, cluster, from, fastInserts)
		default:
		}
		if got, err := psql(t, ns, cluster, cluster+"-rw", "SELECT count(*) "+mine); err != nil || got == "0" {
			return fmt.Errorf("no write yet: %s %v", got, err)
		}
		return nil
	})
	return func() loss {
		var sent []int
		select {
		case sent = <-done:
		case <-time.After(3 * time.Minute):
			t.Fatal("the fast writer did not end")
		}
		if len(sent) == fastInserts {
			t.Fatal("the fast writer finished before the kill")
		}
		stored := ids(mustPsql(t, ns, cluster, cluster+"-rw", "SELECT id "+mine))
		return loss{acked: sent, lost: missing(sent, stored)}
	}
}

// loss is what a fast writer had acknowledged, and what of it is gone.
type loss struct{ acked, lost []int }

func (l loss) String() string {
	if len(l.lost) == 0 {
		return fmt.Sprintf("lost 0 of %d acknowledged", len(l.acked))
	}
	shown := fmt.Sprint(l.lost)
	if len(l.lost) > 5 {
		shown = fmt.Sprintf("%v … %d", l.lost[:5], l.lost[len(l.lost)-1])
	}
	return fmt.Sprintf("lost %d of %d acknowledged: %s, the last acknowledged %d", len(l.lost), len(l.acked), shown, l.acked[len(l.acked)-1])
}

// inserts is how many the writer tries, one connection each (about 0.2 s
// apiece): enough to span a failover or a switchover and what follows.
const inserts = 150

// writeAndWaitForARow starts writer and returns once its first row is
// stored, so that a fault injected next falls among the writes.
func writeAndWaitForARow(t testing.TB, ns, cluster string, n int) <-chan []int {
	t.Helper()
	acked := writer(t, ns, cluster, n)
	testkit.Eventually(t, time.Minute, func() error {
		got, err := psql(t, ns, cluster, cluster+"-rw", "SELECT count(*) FROM acked")
		if err != nil || got == "0" {
			return fmt.Errorf("no write yet: %s %v", got, err)
		}
		return nil
	})
	return acked
}

// ids reads the lines of out that are one number each: psql prints one
// id per line, and the rest is messages (kubectl's "command terminated
// with exit code 2" once counted as id 2).
func ids(out string) []int {
	var got []int
	for _, line := range strings.Split(out, "\n") {
		if n, err := strconv.Atoi(strings.TrimSpace(line)); err == nil {
			got = append(got, n)
		}
	}
	sort.Ints(got)
	return got
}

// A switchover under continuous writes loses no acknowledged commit.
func TestSwitchoverUnderLoadLosesNoCommit(t *testing.T) {
	ns := setup(t)
	testkit.Create(t, cluster(ns, "pg", 2))
	waitHealthy(t, ns, "pg", 4*time.Minute)
	mustPsql(t, ns, "pg", "pg-rw", "CREATE TABLE acked (id int primary key)")
	// Let some writes land, then switch over in the middle of them.
	acked := writeAndWaitForARow(t, ns, "pg", inserts)
	c := get(t, ns, "pg")
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"pg-2"}}}`, pgop.AnnotationSwitchover)
	if err := testkit.Env(t).Client.Patch(t.Context(), c, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
	var sent []int
	select {
	case sent = <-acked:
	case <-time.After(3 * time.Minute):
		t.Fatal("the writer did not finish")
	}
	c = waitHealthy(t, ns, "pg", time.Minute)
	if c.Status.CurrentPrimary != "pg-2" {
		t.Fatalf("primary %s, want pg-2", c.Status.CurrentPrimary)
	}
	stored := ids(mustPsql(t, ns, "pg", "pg-rw", "SELECT id FROM acked ORDER BY id"))
	lost := missing(sent, stored)
	t.Logf("%d of %d inserts acknowledged (the rest refused while the primary moved), %d stored", len(sent), inserts, len(stored))
	if len(lost) > 0 {
		t.Errorf("acknowledged but lost in the switchover: %v", lost)
	}
	if len(sent) == inserts {
		t.Logf("no insert was refused: the switchover may have come after the writer")
	}
}

func appPassword(t testing.TB, ns, cluster string) string {
	t.Helper()
	secret := &corev1.Secret{}
	if err := testkit.Env(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: cluster + "-app"}, secret); err != nil {
		t.Fatal(err)
	}
	return string(secret.Data["password"])
}

// With synchronous replication required, a failover under continuous
// writes loses no acknowledged commit (F3): every commit acknowledged
// was flushed by a replica, and the operator promotes the one that
// received the most. The primary's WAL senders are frozen for a second
// before the kill, so that it is ahead of its replicas: an asynchronous
// primary acknowledges commits no replica has (this test, with
// synchronous off, loses them), a synchronous one waits.
func TestSyncFailoverUnderLoadLosesNoCommit(t *testing.T) {
	ns := setup(t)
	c := cluster(ns, "pg", 3)
	c.Spec.Synchronous = &postgresv1alpha1.SynchronousSpec{Number: 1, DataDurability: "required"}
	testkit.Create(t, c)
	waitHealthy(t, ns, "pg", 4*time.Minute)
	mustPsql(t, ns, "pg", "pg-rw", "CREATE TABLE acked (id int primary key)")
	// As fast as one connection goes: every commit acknowledged up to the
	// kill must be on the new primary.
	loss := startLoss(t, ns, "pg", 1)
	old := get(t, ns, "pg").Status.CurrentPrimary
	// The fault: the primary's WAL senders frozen for a second, so that
	// it runs ahead of its replicas (freezing the replicas' receivers
	// would not do: what was sent waits in their sockets).
	testkit.MustKubectl(t, "-n", ns, "exec", old, "-c", "postgres", "--", "pkill", "-STOP", "-f", "walsender")
	<-time.After(time.Second)
	testkit.MustKubectl(t, "-n", ns, "exec", old, "-c", "postgres", "--", "sh", "-c", "kill -KILL -1")
	testkit.Eventually(t, 2*time.Minute, func() error {
		if p := get(t, ns, "pg").Status.CurrentPrimary; p == old {
			return fmt.Errorf("primary still %s: no failover", old)
		}
		return nil
	})
	c = waitHealthy(t, ns, "pg", 2*time.Minute)
	l := loss()
	t.Logf("%s, primary %s → %s", l, old, c.Status.CurrentPrimary)
	if len(l.lost) > 0 {
		t.Errorf("acknowledged commits lost in the failover: %s", l)
	}
}

// missing is what of sent is not in stored.
func missing(sent, stored []int) []int {
	have := map[int]bool{}
	for _, id := range stored {
		have[id] = true
	}
	var lost []int
	for _, id := range sent {
		if !have[id] {
			lost = append(lost, id)
		}
	}
	return lost
}

func TestIDsReadOnlyWholeLines(t *testing.T) {
	out := "1000001\n1000002\npsql:<stdin>:3: server closed the connection unexpectedly\ncommand terminated with exit code 2\n 1000003 \n"
	if got := fmt.Sprint(ids(out)); got != "[1000001 1000002 1000003]" {
		t.Errorf("ids = %s", got)
	}
}
