package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	goredis "github.com/redis/go-redis/v9"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	celeryv1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/operators/celery"
	"github.com/setpoint-dev/setpoint/testkit"
	"github.com/setpoint-dev/setpoint/testkit/brokers"
)

// TestCeleryClusterScalesOnRedisBacklog: a CeleryCluster's children
// appear; tasks sent by the real Celery client scale its pool up at
// once; an emptied queue scales it back down after the window; a broker
// outage keeps the workers and says so.
func TestCeleryClusterScalesOnRedisBacklog(t *testing.T) {
	installCRDs(t)
	env := testkit.Env(t)
	ns := env.Namespace(t)
	redis, err := brokers.StartRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			redis.Stop()
		}
	})
	writes := &testkit.WriteCounter{}
	startCelery(t, ns, writes)

	testkit.Create(t, secret(ns, "broker", map[string]string{"url": redis.URL}))
	cc := brokerCluster(ns, "tasks", celeryv1alpha1.Pool{Name: "default", Queues: []string{"work"}, MaxReplicas: 5, TargetBacklog: 2,
		ScaleDownWindow: &metav1.Duration{Duration: 3 * time.Second}})
	cc.Spec.Beat = &celeryv1alpha1.Beat{}
	cc.Spec.Flower = &celeryv1alpha1.Flower{}
	cc.Spec.PollInterval = &metav1.Duration{Duration: 200 * time.Millisecond}
	testkit.Create(t, cc)
	key := func(name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }
	replicas := func(want int32) {
		t.Helper()
		testkit.Eventually(t, wait, func() error {
			d := &appsv1.Deployment{}
			if err := env.Client.Get(t.Context(), key("tasks-default"), d); err != nil {
				return err
			}
			if *d.Spec.Replicas != want {
				return fmt.Errorf("tasks-default has %d replicas, want %d", *d.Spec.Replicas, want)
			}
			return nil
		})
	}
	condition := func(typ string, want metav1.ConditionStatus) *metav1.Condition {
		t.Helper()
		var c *metav1.Condition
		testkit.Eventually(t, wait, func() error {
			get(t, key("tasks"), cc)
			if c = meta.FindStatusCondition(cc.Status.Conditions, typ); c == nil || c.Status != want {
				return fmt.Errorf("%s is %+v, want %s", typ, c, want)
			}
			return nil
		})
		return c
	}

	// Children, and the pool at its minimum. Ready means every child
	// exists and has rolled out.
	replicas(1)
	condition(celery.ConditionBrokerReachable, metav1.ConditionTrue)
	condition("Ready", metav1.ConditionTrue)
	beat := &appsv1.Deployment{}
	get(t, key("tasks-beat"), beat)
	if beat.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || *beat.Spec.Replicas != 1 {
		t.Errorf("beat %+v", beat.Spec.Strategy)
	}
	get(t, key("tasks-flower"), &appsv1.Deployment{})
	get(t, key("tasks-flower"), &corev1.Service{})

	// Seven tasks at two per worker: four workers, at once.
	if err := brokers.SendTasks(redis.URL, "work", "tasks.sleep", 7, -1, 1); err != nil {
		t.Fatal(err)
	}
	// The client sends them one by one, and a poll may fall between two
	// (1 → 3 → 4 on a loaded machine): the last decision is what counts.
	replicas(4)
	get(t, key("tasks"), cc)
	if p := cc.Status.Pools[0]; p.Backlog != 7 || p.DesiredReplicas != 4 || !strings.Contains(p.LastScaleReason, " → 4: backlog 7 at 2 per worker") {
		t.Errorf("pool status %+v", p)
	}
	testkit.WaitEvent(t, cc, "to 4 workers: backlog 7 at 2 per worker wants 4", wait)

	// Converged: the broker is polled and the cluster passed over again
	// and again (resync every second), and nothing is written.
	testkit.Eventually(t, wait, func() error {
		get(t, key("tasks"), cc)
		if c := meta.FindStatusCondition(cc.Status.Conditions, "Ready"); c == nil || c.Status != metav1.ConditionTrue || cc.Status.Workers != "4/4" {
			return fmt.Errorf("not converged: workers %s, conditions %+v", cc.Status.Workers, cc.Status.Conditions)
		}
		return nil
	})
	ours := func() int {
		n := 0
		for _, w := range writes.Writes() {
			if strings.Contains(w, "/namespaces/"+ns+"/celeryclusters/") || strings.Contains(w, "/namespaces/"+ns+"/deployments/") {
				n++
			}
		}
		return n
	}
	before := ours()
	pollsBefore := counter(t, "setpoint_celery_polls_total", map[string]string{"namespace": ns, "cluster": "tasks", "result": "ok"})
	passesBefore := counter(t, "controller_runtime_reconcile_total", map[string]string{"controller": "setpoint-celerycluster.celery.setpoint.dev"})
	testkit.Eventually(t, wait, func() error {
		polled := counter(t, "setpoint_celery_polls_total", map[string]string{"namespace": ns, "cluster": "tasks", "result": "ok"}) - pollsBefore
		passed := counter(t, "controller_runtime_reconcile_total", map[string]string{"controller": "setpoint-celerycluster.celery.setpoint.dev"}) - passesBefore
		if polled < 10 || passed < 3 {
			return fmt.Errorf("%.0f polls and %.0f passes so far", polled, passed)
		}
		return nil
	})
	if n := ours() - before; n != 0 {
		t.Errorf("%d writes while converged: %v", n, writes.Writes()[len(writes.Writes())-n:])
	}

	// The queue empties (as if the workers had done the work): after the
	// window, back to the minimum.
	opts, err := goredis.ParseURL(redis.URL)
	if err != nil {
		t.Fatal(err)
	}
	rc := goredis.NewClient(opts)
	defer rc.Close()
	if err := rc.Del(context.Background(), "work").Err(); err != nil {
		t.Fatal(err)
	}
	replicas(1)

	// Broker outage: the workers stay, the status says why.
	if err := brokers.SendTasks(redis.URL, "work", "tasks.sleep", 4, -1, 1); err != nil {
		t.Fatal(err)
	}
	replicas(2)
	redis.Stop()
	stopped = true
	c := condition(celery.ConditionBrokerReachable, metav1.ConditionFalse)
	if c.Reason != celery.ReasonBrokerUnreachable || !strings.Contains(c.Message, "127.0.0.1") {
		t.Errorf("BrokerReachable %+v", c)
	}
	condition("Ready", metav1.ConditionFalse)
	testkit.WaitEvent(t, cc, "Warning Logging: cannot read the backlog; keeping the worker counts", wait)
	d := &appsv1.Deployment{}
	get(t, key("tasks-default"), d)
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas %d during the outage, want 2 kept", *d.Spec.Replicas)
	}

	// A broker Secret that is not there says so.
	orphan := cc.DeepCopy()
	orphan.ObjectMeta = metav1.ObjectMeta{Namespace: ns, Name: "orphan"}
	orphan.Status = celeryv1alpha1.CeleryClusterStatus{}
	orphan.Spec.Broker.URLSecretRef.Name = "absent"
	testkit.Create(t, orphan)
	testkit.Eventually(t, wait, func() error {
		get(t, key("orphan"), orphan)
		c := meta.FindStatusCondition(orphan.Status.Conditions, celery.ConditionBrokerReachable)
		if c == nil || c.Reason != celery.ReasonBrokerSecret || c.Message != "Secret absent has no key url" {
			return fmt.Errorf("BrokerReachable %+v", c)
		}
		return nil
	})
}

// TestCeleryClusterOnRabbitMQScalesToZero: a pool that may sleep starts
// with no workers, wakes on tasks sent by the real Celery client through
// RabbitMQ (counted with the management API), and goes back to zero once
// its queue is empty for the window.
func TestCeleryClusterOnRabbitMQScalesToZero(t *testing.T) {
	installCRDs(t)
	env := testkit.Env(t)
	ns := env.Namespace(t)
	rabbit, err := brokers.StartRabbitMQ()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rabbit.Stop)
	startCelery(t, ns, nil)
	testkit.Create(t, secret(ns, "broker", map[string]string{"url": rabbit.URL, "management": rabbit.ManagementURL}))
	cc := &celeryv1alpha1.CeleryCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "jobs"},
		Spec: celeryv1alpha1.CeleryClusterSpec{
			Image: "example/jobs:1", App: "jobs",
			Broker: celeryv1alpha1.Broker{
				URLSecretRef:           corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "broker"}, Key: "url"},
				ManagementURLSecretRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "broker"}, Key: "management"},
			},
			Pools: []celeryv1alpha1.Pool{{Name: "batch", Queues: []string{"batch"}, MinReplicas: new(int32(0)), ScaleToZero: true,
				MaxReplicas: 4, TargetBacklog: 3, ScaleDownWindow: &metav1.Duration{Duration: 2 * time.Second}}},
			PollInterval: &metav1.Duration{Duration: 200 * time.Millisecond},
		},
	}
	testkit.Create(t, cc)
	replicas := func(want int32) {
		t.Helper()
		testkit.Eventually(t, wait, func() error {
			d := &appsv1.Deployment{}
			if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "jobs-batch"}, d); err != nil {
				return err
			}
			if *d.Spec.Replicas != want {
				return fmt.Errorf("jobs-batch has %d replicas, want %d", *d.Spec.Replicas, want)
			}
			return nil
		})
	}
	replicas(0)
	if err := brokers.SendTasks(rabbit.URL, "batch", "tasks.sleep", 7, -1, 1); err != nil {
		t.Fatal(err)
	}
	replicas(3) // ceil(7 / 3)
	testkit.Eventually(t, wait, func() error {
		get(t, client.ObjectKeyFromObject(cc), cc)
		if p := cc.Status.Pools[0]; p.Backlog != 7 || !p.UnackedCounted {
			return fmt.Errorf("pool status %+v, want backlog 7 with unacknowledged counted", p)
		}
		return nil
	})
	conn, err := amqp.Dial(rabbit.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueuePurge("batch", false); err != nil {
		t.Fatal(err)
	}
	replicas(0)
}

// counter sums the samples of a Prometheus counter of this process (the
// operators under test register with controller-runtime's registry)
// whose labels include want.
func counter(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// TestCeleryStatusWritersNeverRevertEachOther: the autoscaler (polling
// every 200 ms) and the children pass (forced 50 times a second by
// spec edits that move observedGeneration) both write the status; as the backlog only
// grows, every decision raises the pool, so a desiredReplicas that goes
// down, or a lastScaleTime that goes back, is one writer undoing the
// other.
func TestCeleryStatusWritersNeverRevertEachOther(t *testing.T) {
	installCRDs(t)
	env := testkit.Env(t)
	ns := env.Namespace(t)
	redis, err := brokers.StartRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(redis.Stop)
	startCelery(t, ns, nil)
	testkit.Create(t, secret(ns, "broker", map[string]string{"url": redis.URL}))
	cc := brokerCluster(ns, "race", celeryv1alpha1.Pool{Name: "default", Queues: []string{"work"}, MaxReplicas: 20, TargetBacklog: 1})
	cc.Spec.PollInterval = &metav1.Duration{Duration: 200 * time.Millisecond}
	testkit.Create(t, cc)

	type seen struct {
		rv      string
		desired int32
		at      time.Time
	}
	var log []seen
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(t.Context(), &celeryv1alpha1.CeleryClusterList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.ResultChan() {
			c, ok := e.Object.(*celeryv1alpha1.CeleryCluster)
			if !ok || len(c.Status.Pools) == 0 {
				continue
			}
			p := c.Status.Pools[0]
			s := seen{rv: c.ResourceVersion, desired: p.DesiredReplicas}
			if p.LastScaleTime != nil {
				s.at = p.LastScaleTime.Time
			}
			log = append(log, s)
		}
	}()

	opts, err := goredis.ParseURL(redis.URL)
	if err != nil {
		t.Fatal(err)
	}
	rc := goredis.NewClient(opts)
	defer rc.Close()
	// The children pass, forced: spec edits, from two writers at 40 a
	// second each (one alone is held back by its round trips).
	ctx, stop := context.WithCancel(t.Context())
	forced := make(chan int)
	force := func(who int) {
		n := 0
		defer func() { forced <- n }()
		target := &celeryv1alpha1.CeleryCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "race"}}
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// A spec change that leaves the children alone but moves
			// observedGeneration, so every forced pass writes the status.
			patch := fmt.Sprintf(`{"spec":{"pollInterval":"%dms"}}`, 200+(2*n+who)%7)
			if err := env.Client.Patch(ctx, target, client.RawPatch(types.MergePatchType, []byte(patch))); err == nil {
				n++
			}
		}
	}
	began := time.Now()
	go force(0)
	go force(1)
	// The backlog grows by one every 300 ms: 1 → 12 workers, a decision
	// at nearly every step.
	for i := 1; i <= 12; i++ {
		if err := rc.LPush(t.Context(), "work", fmt.Sprintf("task-%d", i)).Err(); err != nil {
			t.Fatal(err)
		}
		want := int32(i)
		testkit.Eventually(t, wait, func() error {
			get(t, client.ObjectKeyFromObject(cc), cc)
			if len(cc.Status.Pools) == 0 {
				return fmt.Errorf("no pool status yet")
			}
			if got := cc.Status.Pools[0].DesiredReplicas; got < want {
				return fmt.Errorf("desired %d, want %d", got, want)
			}
			return nil
		})
	}
	stop()
	n := <-forced + <-forced
	rate := float64(n) / time.Since(began).Seconds()
	w.Stop()
	<-done
	// The test needs contention to mean anything: forced passes among
	// the 12 decisions, a score of them per decision at the least. A
	// count, not a rate, so a busy machine (other packages' tests beside
	// it, 40 passes a second instead of 80) does not fail it.
	if n < 12*20 {
		t.Errorf("only %d forced passes (%.0f/s): too few to race the autoscaler's writes", n, rate)
	}
	for i := 1; i < len(log); i++ {
		prev, cur := log[i-1], log[i]
		if cur.desired < prev.desired {
			t.Errorf("desiredReplicas reverted from %d to %d (rv %s → %s)", prev.desired, cur.desired, prev.rv, cur.rv)
		}
		if cur.at.Before(prev.at) {
			t.Errorf("lastScaleTime went back from %s to %s (rv %s → %s)", prev.at, cur.at, prev.rv, cur.rv)
		}
	}
	t.Logf("%d forced passes (%.0f/s), %d status versions seen", n, rate, len(log))
}

// startCelery runs the CeleryCluster operator on ns, as `setpoint run`
// does, with its writes counted by writes (nil: not counted).
func startCelery(t *testing.T, ns string, writes *testkit.WriteCounter) {
	t.Helper()
	op := newOperator(t, ns, writes)
	if err := celery.Setup(op, celery.Options{}); err != nil {
		t.Fatal(err)
	}
	testkit.StartOperator(t, op)
}

// TestCeleryRefusedWorkersAreReported: workers the API server refuses
// (requests above limits) show on the CeleryCluster as Ready=False with
// ChildRefused and the server's message, not as a rollout that waits for
// ever; fixing the pool clears it.
func TestCeleryRefusedWorkersAreReported(t *testing.T) {
	installCRDs(t)
	env := testkit.Env(t)
	ns := env.Namespace(t)
	startCelery(t, ns, nil)
	// No broker listens there: the refusal must win over that blocker.
	testkit.Create(t, secret(ns, "broker", map[string]string{"url": fmt.Sprintf("redis://127.0.0.1:%d/0", controlplane.FreePort())}))
	cc := brokerCluster(ns, "greedy", celeryv1alpha1.Pool{Name: "default", Queues: []string{"work"}, MaxReplicas: 2, Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}})
	testkit.Create(t, cc)
	readyReason := func(want string) *metav1.Condition {
		t.Helper()
		var c *metav1.Condition
		testkit.Eventually(t, wait, func() error {
			get(t, client.ObjectKeyFromObject(cc), cc)
			if c = meta.FindStatusCondition(cc.Status.Conditions, "Ready"); c == nil || c.Reason != want {
				return fmt.Errorf("Ready %+v, want reason %s", c, want)
			}
			return nil
		})
		return c
	}
	c := readyReason("ChildRefused")
	if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "Deployment greedy-default was refused") || !strings.Contains(c.Message, "must be less than or equal to memory limit") {
		t.Errorf("Ready %+v", c)
	}
	testkit.WaitEvent(t, cc, "Warning ChildRefused: Deployment greedy-default was refused", wait)
	testkit.Eventually(t, wait, func() error {
		get(t, client.ObjectKeyFromObject(cc), cc)
		cc.Spec.Pools[0].Resources.Limits = nil
		return env.Client.Update(t.Context(), cc)
	})
	// Fixed: the Deployment exists, and what keeps the cluster from
	// Ready now is the broker nobody runs.
	readyReason(celery.ReasonBrokerUnreachable)
	get(t, client.ObjectKey{Namespace: ns, Name: "greedy-default"}, &appsv1.Deployment{})
}

// brokerCluster is a CeleryCluster named name in ns, with image
// example/<name>:1 and app <name>, whose broker URL is key "url" of the
// Secret "broker", with these pools.
func brokerCluster(ns, name string, pools ...celeryv1alpha1.Pool) *celeryv1alpha1.CeleryCluster {
	return &celeryv1alpha1.CeleryCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: celeryv1alpha1.CeleryClusterSpec{
			Image: "example/" + name + ":1", App: name,
			Broker: celeryv1alpha1.Broker{URLSecretRef: corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "broker"}, Key: "url"}},
			Pools: pools,
		},
	}
}
