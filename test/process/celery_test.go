package process

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	celeryv1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	"github.com/setpoint-dev/setpoint/operators/celery"
	"github.com/setpoint-dev/setpoint/testkit"
	"github.com/setpoint-dev/setpoint/testkit/brokers"
)

// The Celery app of the tests: tasks that sleep, each run recorded in the
// result backend (the list runs:<task id> gets the worker's name), with
// their starts tracked. slow is acknowledged early (Celery's default),
// slow_late after it ran; held runs until the test sets release:<task id>
// (or for its argument in seconds). The workers carry kombu 5.3's fix for a task
// lost at a worker's shutdown (brokers.KombuShutdownFix): Debian's kombu
// lacks it, and it lost one task in five runs of
// TestCeleryTasksThroughScaleCycles.
var tasksPy = brokers.KombuShutdownFix + `import os, time
from celery import Celery
url = os.environ["CELERY_BROKER_URL"]
app = Celery("tasks", broker=url, backend=url)
app.conf.task_track_started = True
app.conf.worker_prefetch_multiplier = 1

def run(task, seconds):
    app.backend.client.rpush("runs:" + task.request.id, task.request.hostname)
    time.sleep(seconds)
    return "slept %s" % seconds

@app.task(bind=True)
def slow(self, seconds):
    return run(self, seconds)

@app.task(bind=True, acks_late=True)
def slow_late(self, seconds):
    return run(self, seconds)

@app.task(bind=True)
def held(self, seconds):
    r = app.backend.client
    r.rpush("runs:" + self.request.id, self.request.hostname)
    deadline = time.time() + seconds
    while time.time() < deadline and not r.exists("release:" + self.request.id):
        time.sleep(0.2)
    return "released"
`

// celeryApp writes tasks.py into a directory of the test's and returns it
// (the image is not pulled: pods run the host's files).
func celeryApp(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tasks.py"), []byte(tasksPy), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// celeryCluster is a CeleryCluster of the test app with the given pools,
// its broker URL in the Secret broker.
func celeryCluster(ns, app string, pools ...celeryv1alpha1.Pool) *celeryv1alpha1.CeleryCluster {
	return &celeryv1alpha1.CeleryCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tasks"}, Spec: celeryv1alpha1.CeleryClusterSpec{
		Image: "example/tasks:1", App: "tasks",
		Broker:       celeryv1alpha1.Broker{URLSecretRef: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "broker"}, Key: "url"}},
		Env:          []corev1.EnvVar{{Name: "PYTHONPATH", Value: app}},
		PollInterval: &metav1.Duration{Duration: 200 * time.Millisecond},
		Pools:        pools,
	}}
}

// elasticPool scales from 0 to max on its queue, a task per worker slot,
// with a short scale-down window and a grace period above every task.
func elasticPool(name, queue string, max, concurrency int32, pool celeryv1alpha1.PoolType) celeryv1alpha1.Pool {
	return celeryv1alpha1.Pool{Name: name, Queues: []string{queue}, MinReplicas: ptr(int32(0)), ScaleToZero: true,
		MaxReplicas: max, TargetBacklog: int64(concurrency), Concurrency: concurrency, Pool: pool,
		ScaleDownWindow:               &metav1.Duration{Duration: 2 * time.Second},
		TerminationGracePeriodSeconds: ptr(int64(60))}
}

// celeryClient runs a pod with the app and the broker URL, to send tasks
// from.
func celeryClient(t *testing.T, ns, app, broker string) {
	t.Helper()
	client := processPodSpec(ns, "client", "exec sleep 3600")
	client.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "PYTHONPATH", Value: app}, {Name: "CELERY_BROKER_URL", Value: broker}}
	testkit.Create(t, client)
	waitRunning(t, ns, "client")
}

// sendTasks sends each task (id → [name, queue, seconds]) through the
// real Celery client in the client pod, to broker.
func sendTasks(t *testing.T, ns, broker string, tasks map[string]sent) {
	t.Helper()
	spec, err := json.Marshal(tasks)
	if err != nil {
		t.Fatal(err)
	}
	testkit.MustKubectl(t, "-n", ns, "exec", "client", "--", "env", "CELERY_BROKER_URL="+broker, brokers.Python, "-c", `import json, sys
import tasks
for id, t in json.loads(sys.argv[1]).items():
    getattr(tasks, t["task"]).apply_async(args=[t["seconds"]], task_id=id, queue=t["queue"])
`, string(spec))
}

type sent struct {
	Task    string  `json:"task"`
	Queue   string  `json:"queue"`
	Seconds float64 `json:"seconds"`
}

// taskState is a task's result state in the backend and the workers that
// ran it, in order.
type taskState struct {
	Status   string   `json:"status"`
	Result   any      `json:"result"`
	Hostname string   `json:"hostname"`
	Runs     []string `json:"runs"`
}

// states reads the states of ids from the backend at db, in one exec.
func states(t *testing.T, ns string, db int, ids []string) (map[string]taskState, error) {
	t.Helper()
	spec, _ := json.Marshal(ids)
	out, err := testkit.Kubectl(t, "", "-n", ns, "exec", "client", "--", brokers.Python, "-c", `import json, sys, redis
r = redis.Redis(host="redis", port=6379, db=int(sys.argv[2]))
out = {}
for id in json.loads(sys.argv[1]):
    meta = r.get("celery-task-meta-" + id)
    st = json.loads(meta) if meta else {"status": "PENDING", "result": None}
    res = st.get("result")
    host = res.get("hostname", "") if isinstance(res, dict) else ""
    out[id] = {"status": st["status"], "result": res, "hostname": host, "runs": [x.decode() for x in r.lrange("runs:" + id, 0, -1)]}
print(json.dumps(out))
`, string(spec), strconv.Itoa(db))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	got := map[string]taskState{}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	return got, nil
}

// state reads one task's state. A read that fails (kubectl exec into a
// process pod on a loaded machine) is tried again, never taken for a
// state: read once as empty, it failed a test with "long-1 is  already
// when its worker was told to stop".
func state(t *testing.T, ns string, db int, id string) taskState {
	t.Helper()
	var got map[string]taskState
	testkit.Eventually(t, 30*time.Second, func() error {
		var err error
		got, err = states(t, ns, db, []string{id})
		if err != nil {
			return fmt.Errorf("read %s: %w", id, err)
		}
		return nil
	})
	return got[id]
}

// TestCeleryBusyWorkersStayAndConfigChangesRoll: the operator, broker
// and workers all run for real. With its queue empty, a pool whose one
// worker runs a long task (acknowledged early, so in no queue) shrinks
// to that worker and not below, and the idle workers are the ones
// removed. Then the broker Secret changes: the workers roll, the busy
// one's warm shutdown finishes its task, and the new workers use the new
// URL.
func TestCeleryBusyWorkersStayAndConfigChangesRoll(t *testing.T) {
	env := testkit.Env(t)
	ns := processNamespace(t)
	ctx := t.Context()
	app := celeryApp(t)
	startRedis(t, ns)
	db0, db1 := "redis://redis:6379/0", "redis://redis:6379/1"
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broker"}, StringData: map[string]string{"url": db0}}
	testkit.Create(t, secret)
	runOperatorPod(t, ns, "--operators", "celery", "--namespace", ns)
	// Three idle workers first, so that the three tasks go one to each
	// (a worker busy with one task would reserve another: prefetch).
	pool := elasticPool("default", "work", 3, 1, "")
	// The long task runs until the test releases it, once its worker was
	// told to stop; the grace period outlasts its 110 s bound.
	pool.MinReplicas, pool.ScaleToZero, pool.TerminationGracePeriodSeconds = ptr(int32(3)), false, ptr(int64(120))
	cc := celeryCluster(ns, app, pool)
	testkit.Create(t, cc)
	celeryClient(t, ns, app, db0)
	testkit.Eventually(t, 2*time.Minute, func() error {
		out, err := testkit.Kubectl(t, "", "-n", ns, "exec", "client", "--", brokers.Python, "-c",
			"from tasks import app; print(len(app.control.ping(timeout=1)))")
		if strings.TrimSpace(out) != "3" {
			return fmt.Errorf("workers answering: %q (%v)", out, err)
		}
		return nil
	})
	sendTasks(t, ns, db0, map[string]sent{"long-1": {"held", "work", 110}, "short-1": {"slow", "work", 1}, "short-2": {"slow", "work", 1}})
	var long taskState
	testkit.Eventually(t, 2*time.Minute, func() error {
		if long = state(t, ns, 0, "long-1"); long.Status != "STARTED" || long.Hostname == "" {
			return fmt.Errorf("long-1 not started yet: %+v", long)
		}
		for _, id := range []string{"short-1", "short-2"} {
			if s := state(t, ns, 0, id); s.Status != "SUCCESS" {
				return fmt.Errorf("%s: %+v", id, s)
			}
		}
		return nil
	})
	// The pool may now scale to zero, but one worker is busy with a task
	// acknowledged early (in no queue).
	testkit.Eventually(t, time.Minute, func() error {
		cc := getCluster(t, ns)
		cc.Spec.Pools[0].MinReplicas, cc.Spec.Pools[0].ScaleToZero = ptr(int32(0)), true
		return testkit.Env(t).Client.Update(ctx, cc)
	})
	busyPod := strings.TrimPrefix(long.Hostname, "default@")
	deployment := func() *appsv1.Deployment {
		d, err := env.Clientset.AppsV1().Deployments(ns).Get(ctx, "tasks-default", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// The pool goes down to the busy worker, whose pod stays.
	testkit.Eventually(t, 2*time.Minute, func() error {
		pods := poolPods(t, ns, "default")
		if r := deployment().Spec.Replicas; *r != 1 || len(pods) != 1 {
			return fmt.Errorf("pool at %d replicas with live pods %v, waiting for 1", *r, pods)
		}
		if pods[0] != busyPod {
			t.Fatalf("the pod left is %s, not %s which runs long-1: a busy worker was removed before an idle one", pods[0], busyPod)
		}
		return nil
	})
	if s := state(t, ns, 0, "long-1"); s.Status != "STARTED" {
		t.Fatalf("long-1 is %s already: the test proves nothing", s.Status)
	}
	cc = getCluster(t, ns)
	if p := cc.Status.Pools[0]; p.BusyWorkers != 1 || p.RunningTasks != 1 || p.DesiredReplicas != 1 {
		t.Errorf("pool status %+v, want 1 busy worker running 1 task, 1 desired", p)
	}

	// A new broker URL rolls the workers; the busy one finishes first.
	hash := deployment().Spec.Template.Annotations["celery.setpoint.dev/config-hash"]
	secret.StringData = map[string]string{"url": db1}
	if _, err := env.Clientset.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, func() error {
		if h := deployment().Spec.Template.Annotations["celery.setpoint.dev/config-hash"]; h == hash || h == "" {
			return fmt.Errorf("config hash %q, waiting for a new one", h)
		}
		p, err := env.Clientset.CoreV1().Pods(ns).Get(ctx, busyPod, metav1.GetOptions{})
		if err == nil && p.DeletionTimestamp == nil {
			return fmt.Errorf("pod %s not stopping yet", busyPod)
		}
		return nil
	})
	if s := state(t, ns, 0, "long-1"); s.Status != "STARTED" {
		t.Fatalf("long-1 is %s already when its worker was told to stop: the test proves nothing", s.Status)
	}
	testkit.MustKubectl(t, "-n", ns, "exec", "client", "--", brokers.Python, "-c",
		`import redis; redis.Redis(host="redis", db=0).set("release:long-1", 1)`)
	testkit.Eventually(t, 2*time.Minute, func() error {
		if s := state(t, ns, 0, "long-1"); s.Status != "SUCCESS" || s.Result != "released" || len(s.Runs) != 1 {
			return fmt.Errorf("long-1: %+v", s)
		}
		return nil
	})
	sendTasks(t, ns, db1, map[string]sent{"after-1": {"slow", "work", 1}})
	testkit.Eventually(t, 2*time.Minute, func() error {
		if s := state(t, ns, 1, "after-1"); s.Status != "SUCCESS" {
			return fmt.Errorf("after-1 on the new broker URL: %+v", s)
		}
		return nil
	})
	testkit.Eventually(t, 2*time.Minute, func() error {
		if pods := poolPods(t, ns, "default"); len(pods) > 0 {
			return fmt.Errorf("worker pods left: %v", pods)
		}
		return nil
	})
}

// poolPods are the names of a pool's pods that are not stopping.
func poolPods(t *testing.T, ns, pool string) []string {
	t.Helper()
	pods, err := testkit.Env(t).Clientset.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=" + pool})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p.Name)
		}
	}
	sort.Strings(out)
	return out
}

// TestCeleryTasksThroughScaleCycles: bursts of tasks of random lengths
// into two pools, one acknowledging early and one late, each burst sent
// once the pools have scaled down from the last: every task gets its
// result, none is lost, and none acknowledged early runs twice. make
// chaos sends 200 of 1–20 s (SETPOINT_CELERY_TASKS,
// SETPOINT_CELERY_MAX_SECONDS; make test 60 of 1–5 s).
func TestCeleryTasksThroughScaleCycles(t *testing.T) {
	n, longest := testkit.EnvCount(t, "SETPOINT_CELERY_TASKS", 60), testkit.EnvCount(t, "SETPOINT_CELERY_MAX_SECONDS", 5)
	seed := time.Now().UnixNano()
	t.Logf("%d tasks of 1–%d s, seed %d", n, longest, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	ns := processNamespace(t)
	app := celeryApp(t)
	startRedis(t, ns)
	broker := "redis://redis:6379/0"
	testkit.Create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broker"}, StringData: map[string]string{"url": broker}})
	runOperatorPod(t, ns, "--operators", "celery", "--namespace", ns)
	testkit.Create(t, celeryCluster(ns, app, elasticPool("early", "early", 3, 3, "threads"), elasticPool("late", "late", 3, 3, "threads")))
	celeryClient(t, ns, app, broker)

	all := map[string]sent{}
	const bursts = 4
	for b := range bursts {
		burst := map[string]sent{}
		for i := range n / bursts {
			kind := []string{"early", "late"}[i%2]
			task := map[string]string{"early": "slow", "late": "slow_late"}[kind]
			secs := 1 + rng.Float64()*float64(longest-1)
			burst[fmt.Sprintf("%s-%d-%d", kind, b, i)] = sent{task, kind, math.Round(secs*10) / 10}
		}
		sendTasks(t, ns, broker, burst)
		maps.Copy(all, burst)
		if b < bursts-1 {
			waitScaledDown(t, ns)
		}
	}
	ids := slices.Sorted(maps.Keys(all))
	var last map[string]taskState
	testkit.Eventually(t, time.Duration(n*longest)*time.Second, func() error {
		got, err := states(t, ns, 0, ids)
		if err != nil {
			return err
		}
		last = got
		var missing []string
		for _, id := range ids {
			if s := got[id]; s.Status != "SUCCESS" {
				missing = append(missing, fmt.Sprintf("%s %s runs %v", id, s.Status, s.Runs))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d results; without one: %v", len(ids)-len(missing), len(ids), missing[:min(len(missing), 5)])
		}
		return nil
	})
	var twice []string
	for id, s := range last {
		if strings.HasPrefix(id, "early-") && len(s.Runs) != 1 {
			twice = append(twice, fmt.Sprintf("%s ran %d times (%v)", id, len(s.Runs), s.Runs))
		}
	}
	if len(twice) > 0 {
		t.Errorf("tasks acknowledged early ran more than once: %v", twice)
	}
	t.Logf("%d results, 0 lost, %d run twice", len(last), len(twice))
	checkScaleDownSafe(t, ns)
}

// checkScaleDownSafe: the condition says what the workers' Celery version
// (from their heartbeats) means on Redis.
func checkScaleDownSafe(t *testing.T, ns string) {
	t.Helper()
	version, err := brokers.CeleryVersion()
	if err != nil {
		t.Fatal(err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(version, "%d.%d", &major, &minor); err != nil {
		t.Fatalf("Celery version %q: %v", version, err)
	}
	want := metav1.ConditionTrue
	if major < 5 || major == 5 && minor < 3 {
		want = metav1.ConditionFalse
	}
	c := meta.FindStatusCondition(getCluster(t, ns).Status.Conditions, celery.ConditionScaleDownSafe)
	if c == nil || c.Status != want || want == metav1.ConditionFalse && !strings.Contains(c.Message, version) {
		t.Errorf("condition %s: %+v; want %s naming Celery %s", celery.ConditionScaleDownSafe, c, want, version)
	}
}

// waitScaledDown waits until both pools have scaled down to at most one
// worker.
func waitScaledDown(t *testing.T, ns string) {
	t.Helper()
	testkit.Eventually(t, 3*time.Minute, func() error {
		cc := getCluster(t, ns)
		for _, p := range cc.Status.Pools {
			if p.DesiredReplicas > 1 {
				return fmt.Errorf("pool %s at %d workers (%d busy), waiting for the scale-down", p.Name, p.DesiredReplicas, p.BusyWorkers)
			}
		}
		return nil
	})
}

func getCluster(t *testing.T, ns string) *celeryv1alpha1.CeleryCluster {
	t.Helper()
	cc := &celeryv1alpha1.CeleryCluster{}
	if err := testkit.Env(t).Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "tasks"}, cc); err != nil {
		t.Fatal(err)
	}
	return cc
}

// startRedis runs redis-server as a pod behind the Service redis.
func startRedis(t *testing.T, ns string) {
	t.Helper()
	p := processPodSpec(ns, "redis", "exec redis-server --port 6379 --save '' --appendonly no --protected-mode no")
	p.Labels = map[string]string{"app": "redis"}
	p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: 1,
		ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"redis-cli", "ping"}}}}
	testkit.Create(t, p, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "redis"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "redis"}, Ports: []corev1.ServicePort{{Port: 6379, TargetPort: intstr.FromInt32(6379)}},
	}})
	waitRunning(t, ns, "redis")
}

// processPodSpec is a pod that runs script with sh; the namespace sends it
// to a process node.
func processPodSpec(ns, name, script string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr(int64(5)),
		Containers:                    []corev1.Container{{Name: "main", Image: "debian:12", Command: []string{"sh", "-c", script}}},
	}}
}

func ptr[T any](v T) *T { return &v }
