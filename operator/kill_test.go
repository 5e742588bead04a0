package operator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// The helper process of TestOperatorSIGKILLs: this test binary started
// again with these variables set runs one replica of a leader-elected
// Widget operator whose handlers append a line to an external log.
const (
	killHelperEnv     = "SETPOINT_KILL_HELPER_NAMESPACE"
	killKubeconfigEnv = "SETPOINT_KILL_HELPER_KUBECONFIG"
	killLogEnv        = "SETPOINT_KILL_HELPER_LOG"
)

func runKillHelper() int {
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv(killKubeconfigEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// As setpoint run's defaults: client-go's 5 requests/s would make a
	// new leader take minutes over 500 Widgets.
	cfg.QPS, cfg.Burst = 1000, 2000
	ns := os.Getenv(killHelperEnv)
	// Its log goes to the supervisor, which shows it when the test fails.
	log := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, nil))
	op, err := operator.New(cfg, operator.Options{Logger: &log,
		Name: "kill-" + ns, Namespaces: []string{ns}, Scheme: widgetScheme(&testing.T{}), MetricsAddr: "0", ProbeAddr: "0",
		// Short timings, so 100 kills fit in make chaos.
		LeaderElection: &operator.LeaderElection{Namespace: ns, LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	logRun := func(w *Widget, handler string) error {
		f, err := os.OpenFile(os.Getenv(killLogEnv), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		// One write per line: appends of a few bytes are not interleaved.
		_, err = fmt.Fprintf(f, "%d %s %s %d %s\n", os.Getpid(), w.UID, handler, w.Generation, w.Name)
		return err
	}
	w := operator.Watch[*Widget](op)
	w.Children(widgetChildren, &corev1.ConfigMap{})
	w.Status(widgetStatus)
	w.OnCreate(func(ctx context.Context, cs *operator.Cause[*Widget]) error { return logRun(cs.Object, "create") })
	w.OnField("spec.size", func(ctx context.Context, cs *operator.Cause[*Widget]) error { return logRun(cs.Object, "size") })
	w.OnDelete(func(ctx context.Context, cs *operator.Cause[*Widget]) error { return logRun(cs.Object, "delete") })
	if err := op.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestOperatorSIGKILLs (#17 item 1): two replicas of a leader-elected
// operator run under a supervisor that starts each again when it dies;
// during a churn of Widgets (creates, size edits, deletes) one replica at
// random is SIGKILLed at random moments. At the end every Widget's
// children are exactly its desired ones, none is left of a deleted
// Widget, none is stuck Terminating, every handler ran (create for each
// Widget seen, delete for each one deleted), and no handler ran twice
// for one change unless the process of its first run died (the one in
// flight at a kill may repeat: its success was not recorded). make test:
// 6 kills over 30 Widgets; make chaos: SETPOINT_OPERATOR_KILLS=100,
// SETPOINT_KILL_WIDGETS=500.
func TestOperatorSIGKILLs(t *testing.T) {
	installWidgetCRD(t)
	env := testkit.Env(t)
	ns := env.Namespace(t)
	kills := testkit.EnvCount(t, "SETPOINT_OPERATOR_KILLS", 6)
	widgets := testkit.EnvCount(t, "SETPOINT_KILL_WIDGETS", 30)
	dir := t.TempDir()
	logPath := dir + "/handlers.log"
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 3))
	s := testkit.Supervise(t, 2, func(int) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), killHelperEnv+"="+ns, killKubeconfigEnv+"="+env.ControlPlane.KubeconfigPath, killLogEnv+"="+logPath)
		return cmd
	}, dir)

	stopChurn := churnWidgets(t, ns, rand.New(rand.NewPCG(seed, 4)), widgets)
	s.KillRandomly(rnd, kills)
	steps := stopChurn()
	last := time.Now()
	waitWidgetsExact(t, ns)
	took := time.Since(last)
	lost, duplicated := checkHandlerLog(t, ns, logPath, s)
	t.Logf("%d kills, %d churn steps; every Widget exact %s after the last kill", kills, steps, took.Round(10*time.Millisecond))
	if lost == 0 && duplicated == 0 {
		testkit.ReportChaos(t, testkit.ChaosRow{Fault: "operator SIGKILL (2 replicas, leader election) under Widget churn", Injected: kills, Survived: kills, Reconverge: []time.Duration{took}})
	}
}

// churnWidgets creates, resizes and deletes Widgets k-000.. at random
// until the function it returns is called; that returns the step count.
func churnWidgets(t *testing.T, ns string, rnd *rand.Rand, n int) func() int {
	wc := widgetClient(t)
	return testkit.Churn(20*time.Millisecond, func(ctx context.Context) {
		w := &Widget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("k-%03d", rnd.IntN(n))}}
		err := wc.Get(ctx, client.ObjectKeyFromObject(w), w)
		switch {
		case apierrors.IsNotFound(err):
			w.Spec.Size = 1 + rnd.IntN(3)
			_ = wc.Create(ctx, w)
		case err != nil || w.DeletionTimestamp != nil:
		case rnd.IntN(6) == 0:
			_ = wc.Delete(ctx, w)
		default:
			w.Spec.Size = 1 + (w.Spec.Size+rnd.IntN(2))%3 // another size
			_ = wc.Update(ctx, w)
		}
	})
}

// waitWidgetsExact waits until every Widget's changes are handled, its
// status is for its generation and its children are exactly its desired
// ones, no Widget is Terminating and no child is left of a gone one.
func waitWidgetsExact(t *testing.T, ns string) {
	t.Helper()
	wc := widgetClient(t)
	testkit.EventuallyLogged(t, 2*time.Minute, func() error {
		var list WidgetList
		if err := wc.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		live := map[types.UID]*Widget{}
		for i := range list.Items {
			w := &list.Items[i]
			if w.DeletionTimestamp != nil {
				return fmt.Errorf("%s is Terminating", w.Name)
			}
			if err := handledNow(w); err != nil {
				return err
			}
			live[w.UID] = w
		}
		var cms corev1.ConfigMapList
		if err := testkit.Env(t).Client.List(t.Context(), &cms, client.InNamespace(ns), client.HasLabels{"widget"}); err != nil {
			return err
		}
		got := map[types.UID][]string{}
		for _, c := range cms.Items {
			ref := metav1.GetControllerOf(&c)
			if c.DeletionTimestamp != nil || ref == nil {
				continue
			}
			w := live[ref.UID]
			if w == nil {
				return fmt.Errorf("ConfigMap %s is left of a gone Widget %s", c.Name, ref.UID)
			}
			if c.Data["of"] != strconv.Itoa(w.Spec.Size) {
				return fmt.Errorf("ConfigMap %s says of=%s, %s has size %d", c.Name, c.Data["of"], w.Name, w.Spec.Size)
			}
			got[ref.UID] = append(got[ref.UID], c.Name)
		}
		for uid, w := range live {
			if len(got[uid]) != w.Spec.Size {
				return fmt.Errorf("%s (size %d) has children %v", w.Name, w.Spec.Size, got[uid])
			}
		}
		return nil
	})
}

// handledNow: the diff base holds the Widget's current size, no handler
// is in progress, and the status is for its generation.
func handledNow(w *Widget) error {
	var base struct {
		Spec WidgetSpec `json:"spec"`
	}
	raw, ok := w.Annotations["setpoint.dev/last-handled-configuration"]
	if !ok || json.Unmarshal([]byte(raw), &base) != nil || base.Spec.Size != w.Spec.Size {
		return fmt.Errorf("%s: size %d not handled (diff base %q, progress %s)", w.Name, w.Spec.Size, raw, w.Annotations["setpoint.dev/handler-progress"])
	}
	if p, ok := w.Annotations["setpoint.dev/handler-progress"]; ok {
		return fmt.Errorf("%s: handlers in progress: %s", w.Name, p)
	}
	if w.Status.ObservedGeneration != w.Generation {
		return fmt.Errorf("%s: status for generation %d, not %d", w.Name, w.Status.ObservedGeneration, w.Generation)
	}
	return nil
}

// checkHandlerLog reads the handlers' external log: every Widget that is
// there now had its create handler run, every one seen and then deleted
// its delete handler, and a handler ran twice for one change (Widget,
// handler, generation) only after the process of the earlier run died.
// It returns the lost and duplicated counts, each failure reported.
func checkHandlerLog(t *testing.T, ns, path string, s *testkit.Supervisor) (lost, duplicated int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string][]int{} // "uid handler gen" -> pids in order
	seen := map[string]bool{}  // uids with a create run
	deleted := map[string]bool{}
	names := map[string]string{} // uid -> name
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) != 5 {
			t.Fatalf("bad log line %q", line)
		}
		pid, _ := strconv.Atoi(f[0])
		names[f[1]] = f[4]
		key := strings.Join(f[1:4], " ")
		if f[2] == "create" || f[2] == "delete" {
			key = f[1] + " " + f[2] // once per Widget, whatever its generation then
		}
		runs[key] = append(runs[key], pid)
		seen[f[1]] = seen[f[1]] || f[2] == "create"
		deleted[f[1]] = deleted[f[1]] || f[2] == "delete"
	}
	for key, pids := range runs {
		for i := 1; i < len(pids); i++ {
			if !s.Died(pids[i-1]) {
				duplicated++
				t.Errorf("%s ran again in pid %d after it ran in pid %d, which lived on", key, pids[i], pids[i-1])
			}
		}
	}
	var list WidgetList
	if err := widgetClient(t).List(t.Context(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	var lostNames []string
	for _, w := range list.Items {
		live[string(w.UID)] = true
		if !seen[string(w.UID)] {
			lost++
			lostNames = append(lostNames, w.Name)
			t.Errorf("%s (%s): its create handler never ran", w.Name, w.UID)
		}
	}
	for uid := range seen {
		if !live[uid] && !deleted[uid] {
			lost++
			lostNames = append(lostNames, names[uid])
			t.Errorf("Widget %s (%s) was deleted and its delete handler never ran", names[uid], uid)
		}
	}
	for _, line := range lines {
		// What the handlers did to the Widgets of those names, in order.
		if f := strings.Fields(line); slices.Contains(lostNames, f[4]) {
			t.Logf("handler log: %s", line)
		}
	}
	t.Logf("handler log: %d runs of %d changes; %d Widgets seen, %d live", len(strings.Split(strings.TrimSpace(string(data)), "\n")), len(runs), len(seen), len(live))
	return lost, duplicated
}
