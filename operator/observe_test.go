package operator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/go-logr/logr"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

func widgetClient(t *testing.T) client.Client {
	t.Helper()
	c, err := client.New(testkit.Env(t).Config, client.Options{Scheme: widgetScheme(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestNoOpPassesMakeNoWrites counts every write the operator's client
// makes. After the create flow, status-only updates and forced resyncs
// reach the operator (its raw event handler sees them) and cause no write.
func TestNoOpPassesMakeNoWrites(t *testing.T) {
	installWidgetCRD(t)
	ns := testkit.Env(t).Namespace(t)
	wc := widgetClient(t)
	var counter testkit.WriteCounter
	var events atomic.Int64
	c := newCalls()
	o := opts(ns)
	o.Scheme = widgetScheme(t)
	o.SyncPeriod = time.Second
	start(t, counter.Wrap(testkit.Env(t).Config), o, func(op *operator.Operator) {
		w := operator.Watch[*Widget](op)
		w.OnCreate(func(ctx context.Context, cs *operator.Cause[*Widget]) error { c.add("create", ""); return nil })
		w.OnUpdate(func(ctx context.Context, cs *operator.Cause[*Widget]) error { c.add("update", ""); return nil })
		w.OnEvent(func(ctx context.Context, e operator.Event[*Widget]) error { events.Add(1); return nil })
	})
	wd := &Widget{ObjectMeta: metav1.ObjectMeta{Name: "quiet", Namespace: ns}, Spec: WidgetSpec{Size: 1}}
	if err := wc.Create(t.Context(), wd); err != nil {
		t.Fatal(err)
	}
	c.waitCount(t, "create", 1)
	testkit.Eventually(t, wait, func() error {
		if err := wc.Get(t.Context(), clientKey(wd), wd); err != nil {
			return err
		}
		if _, ok := wd.Annotations["setpoint.dev/last-handled-configuration"]; !ok {
			return errors.New("flow not finished")
		}
		return nil
	})
	// Events are posted in the background: the flow's one is part of the
	// flow, not of the passes counted below (seen once in a clean-clone
	// run, when it landed after the count began).
	waitEvent(t, wd, "HandlerSucceeded")
	// A flow of one handler costs two bookkeeping patches (plus Events):
	// the attempt, before the call, then the outcome.
	var patches int
	for _, w := range counter.Writes() {
		if strings.HasPrefix(w, "PATCH") && strings.Contains(w, "/widgets/") {
			patches++
		}
	}
	if patches != 2 {
		t.Errorf("create flow made %d patches, want 2: %v", patches, counter.Writes())
	}
	before := counter.Writes()
	seen := events.Load()
	for i := range 3 {
		writeSeen(t, wc, wd, i+1)
	}
	// Three status updates and at least three resyncs (every second).
	testkit.Eventually(t, wait, func() error {
		if n := events.Load() - seen; n < 6 {
			return fmt.Errorf("%d events so far", n)
		}
		return nil
	})
	if after := counter.Writes(); len(after) != len(before) {
		t.Errorf("no-op passes wrote: %v", after[len(before):])
	}
	if n := c.count("update"); n != 0 {
		t.Errorf("status-only changes ran %d update handlers", n)
	}
}

// TestUndecodableObjectIsSkipped: an object whose spec does not fit the Go
// type gets a Warning Event; the others are handled; nothing crashes.
func TestUndecodableObjectIsSkipped(t *testing.T) {
	installWidgetCRD(t)
	env := testkit.Env(t)
	ns := env.Namespace(t)
	c := newCalls()
	o := opts(ns)
	o.Scheme = widgetScheme(t)
	start(t, nil, o, func(op *operator.Operator) {
		operator.Watch[*Widget](op).OnCreate(func(ctx context.Context, cs *operator.Cause[*Widget]) error {
			c.add("create", cs.Object.Name)
			return nil
		})
	})
	bad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "test.setpoint.dev/v1", "kind": "Widget",
		"metadata": map[string]any{"name": "bad", "namespace": ns},
		"spec":     map[string]any{"size": "enormous"},
	}}
	if err := env.Client.Create(t.Context(), bad); err != nil {
		t.Fatal(err)
	}
	if err := widgetClient(t).Create(t.Context(), &Widget{ObjectMeta: metav1.ObjectMeta{Name: "good", Namespace: ns}, Spec: WidgetSpec{Size: 2}}); err != nil {
		t.Fatal(err)
	}
	c.waitCount(t, "create", 1)
	if got := c.of("create")[0]; got != "good" {
		t.Errorf("handled %s", got)
	}
	waitEvent(t, bad, "Warning DecodeFailed: Setpoint cannot read this Widget")
}

// TestLargeObjectNearTheAnnotationLimit: a spec of ~200 KiB would not fit
// twice in the 256 KiB annotation budget (Kopf #1087). The diff base keeps
// a digest of the large field; changes are still detected field by field.
func TestLargeObjectNearTheAnnotationLimit(t *testing.T) {
	ns, wc, c := startSizeWatch(t, func(w *operator.Kind[*Widget], c *calls) {
		w.OnField("spec.blob", func(ctx context.Context, cs *operator.Cause[*Widget]) error {
			c.add("blob", fmt.Sprint(len(cs.Object.Spec.Blob)))
			return nil
		})
	})
	wd := &Widget{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: ns}, Spec: WidgetSpec{Size: 1, Blob: strings.Repeat("x", 200<<10)}}
	if err := wc.Create(t.Context(), wd); err != nil {
		t.Fatal(err)
	}
	c.waitCount(t, "create", 1)
	mutateWith(t, wc, wd, func(w *Widget) { w.Spec.Size = 2 })
	c.waitCount(t, "size", 2)
	if got := c.of("size")[1]; got != "1->2" {
		t.Errorf("size handler got %s", got)
	}
	mutateWith(t, wc, wd, func(w *Widget) { w.Spec.Blob = strings.Repeat("y", 200<<10) })
	c.waitCount(t, "blob", 2)
	base := wd.Annotations["setpoint.dev/last-handled-configuration"]
	testkit.Eventually(t, wait, func() error {
		if err := wc.Get(t.Context(), clientKey(wd), wd); err != nil {
			return err
		}
		base = wd.Annotations["setpoint.dev/last-handled-configuration"]
		if !strings.Contains(base, "$sha256") {
			return fmt.Errorf("diff base not compacted yet (%d bytes)", len(base))
		}
		return nil
	})
	if len(base) > 64<<10 {
		t.Errorf("diff base is %d bytes", len(base))
	}
	if n := c.count("size"); n != 2 {
		t.Errorf("size handler ran %d times, want 2 (the blob change is not a size change)", n)
	}
}

// TestBookkeepingThatDoesNotFit: on an object whose annotations leave no
// room for Setpoint's progress, the API server refuses every bookkeeping
// write. The handlers still run once each (kept in memory), a field
// handler still sees the old value, and a Warning Event says why.
func TestBookkeepingThatDoesNotFit(t *testing.T) {
	ns, wc, c := startSizeWatch(t, nil)
	// 100 bytes short of the API server's 256 KiB for all annotations.
	const key = "example.com/notes"
	notes := strings.Repeat("n", 256<<10-len(key)-100)
	wd := &Widget{ObjectMeta: metav1.ObjectMeta{Name: "crowded", Namespace: ns, Annotations: map[string]string{key: notes}}, Spec: WidgetSpec{Size: 1}}
	if err := wc.Create(t.Context(), wd); err != nil {
		t.Fatal(err)
	}
	c.waitCount(t, "create", 1)
	waitEvent(t, wd, "Warning BookkeepingTooLarge: Setpoint cannot store its handler progress on this Widget")
	// Status writes wake the operator up without changing the object's
	// meaning; then a spec change, handled after them.
	for i := range 3 {
		writeSeen(t, wc, wd, 100+i)
	}
	mutateWith(t, wc, wd, func(w *Widget) { w.Spec.Size = 2 })
	c.waitCount(t, "size", 2)
	if got := c.of("size"); got[1] != "1->2" {
		t.Errorf("size handler got %v, want the change 1->2", got)
	}
	if n := c.count("create"); n != 1 {
		t.Errorf("create handler ran %d times, want 1", n)
	}
	if err := wc.Get(t.Context(), clientKey(wd), wd); err != nil {
		t.Fatal(err)
	}
	for k := range wd.Annotations {
		if strings.HasPrefix(k, "setpoint.dev/") {
			t.Errorf("bookkeeping %s stored on an object it does not fit", k)
		}
	}

	// With 2 KiB left the progress fits but the diff base is only the
	// digest of the whole object: a change still reaches the field
	// handler, which cannot be told the old value.
	tight := &Widget{ObjectMeta: metav1.ObjectMeta{Name: "tight", Namespace: ns, Annotations: map[string]string{key: notes[:len(notes)-2<<10]}}, Spec: WidgetSpec{Size: 1}}
	if err := wc.Create(t.Context(), tight); err != nil {
		t.Fatal(err)
	}
	c.waitCount(t, "create", 2)
	testkit.Eventually(t, wait, func() error {
		if err := wc.Get(t.Context(), clientKey(tight), tight); err != nil {
			return err
		}
		if base := tight.Annotations["setpoint.dev/last-handled-configuration"]; !strings.HasPrefix(base, `{"$sha256"`) {
			return fmt.Errorf("diff base %.40q, want the digest of the whole object", base)
		}
		return nil
	})
	mutateWith(t, wc, tight, func(w *Widget) { w.Spec.Size = 3 })
	c.waitCount(t, "size", 4)
	if got := c.of("size"); got[3] != "<nil>->3" {
		t.Errorf("size handler got %v, want a call for the change to 3", got)
	}

	// 1.4 MiB, near etcd's 1.5 MiB for one request: handled once, and a
	// change seen field by field.
	huge := &Widget{ObjectMeta: metav1.ObjectMeta{Name: "huge", Namespace: ns}, Spec: WidgetSpec{Size: 1, Blob: strings.Repeat("h", 1400<<10)}}
	if err := wc.Create(t.Context(), huge); err != nil {
		t.Fatal(err)
	}
	c.waitCount(t, "create", 3)
	mutateWith(t, wc, huge, func(w *Widget) { w.Spec.Size = 4 })
	c.waitCount(t, "size", 6)
	if got := c.of("size"); got[5] != "1->4" || c.count("create") != 3 {
		t.Errorf("size handler got %v, create handler ran %d times (want 3 for 3 objects)", got, c.count("create"))
	}
}

// TestHandlerLogLinesBecomeEvents: Info lines (at the configured level)
// and errors logged by a handler are Events on the object.
func TestHandlerLogLinesBecomeEvents(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	start(t, nil, opts(ns), func(op *operator.Operator) {
		operator.Watch[*corev1.ConfigMap](op).OnCreate(func(ctx context.Context, cs *operator.Cause[*corev1.ConfigMap]) error {
			cs.Log.Info("provisioned the bucket")
			cs.Log.V(1).Info("debug detail, not an event")
			cs.Log.Error(errors.New("quota at 90%"), "running out of space")
			return nil
		})
	})
	cm := configMap(ns, "logs")
	create(t, cm)
	waitEvent(t, get(t, cm), "Normal Logging: provisioned the bucket")
	waitEvent(t, cm, "Warning Logging: running out of space: quota at 90%")
	for _, e := range eventsFor(t, cm) {
		if strings.Contains(e, "debug detail") {
			t.Errorf("V(1) line posted as an event: %s", e)
		}
	}
}

// TestFiltersSelectObjects: labels, annotations (present, absent, value)
// and predicates decide which objects are handled at all.
func TestFiltersSelectObjects(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	c := newCalls()
	// One operator per filter, each with its own prefix: two Watches of
	// one kind with change handlers in one operator would share their
	// books (TestOneWatchWithChangeHandlersPerKind).
	filters := map[string][]operator.WatchOption{
		"labels":  {operator.Labels(map[string]string{"team": "a"})},
		"present": {operator.Annotation("x", operator.Present)},
		"absent":  {operator.Annotation("x", operator.Absent), operator.Labels(map[string]string{"team": "a"})},
		"value":   {operator.Annotation("x", operator.Value("yes"))},
		"when":    {operator.When(func(cm *corev1.ConfigMap) bool { return cm.Data["k"] == "special" })},
	}
	for name, f := range filters {
		o := opts(ns)
		o.Name, o.Prefix = o.Name+"-"+name, name+".example.com"
		start(t, nil, o, func(op *operator.Operator) {
			operator.Watch[*corev1.ConfigMap](op, f...).OnCreate(func(ctx context.Context, cs *operator.Cause[*corev1.ConfigMap]) error {
				c.add(name, cs.Object.Name)
				return nil
			}, operator.ID(name))
		})
	}
	mk := func(name string, labels, ann map[string]string, v string) {
		cm := configMap(ns, name)
		cm.Labels, cm.Annotations, cm.Data["k"] = labels, ann, v
		create(t, cm)
	}
	mk("team-a", map[string]string{"team": "a"}, nil, "v")
	mk("team-b", map[string]string{"team": "b"}, nil, "v")
	mk("x-no", nil, map[string]string{"x": "no"}, "v")
	mk("x-yes", nil, map[string]string{"x": "yes"}, "special")
	want := map[string]string{"labels": "team-a", "present": "x-no,x-yes", "absent": "team-a", "value": "x-yes", "when": "x-yes"}
	testkit.Eventually(t, wait, func() error {
		for h, names := range want {
			got := c.of(h)
			slicesSort(got)
			if strings.Join(got, ",") != names {
				return fmt.Errorf("%s handled %v, want %s", h, got, names)
			}
		}
		return nil
	})
}

// TestOneWatchWithChangeHandlersPerKind: two Watches of one kind with
// change handlers in one operator are refused at Run, with what to do.
func TestOneWatchWithChangeHandlersPerKind(t *testing.T) {
	op, err := operator.New(testkit.Env(t).Config, opts(testkit.Env(t).Namespace(t)))
	if err != nil {
		t.Fatal(err)
	}
	noop := func(ctx context.Context, cs *operator.Cause[*corev1.ConfigMap]) error { return nil }
	operator.Watch[*corev1.ConfigMap](op).OnCreate(noop, operator.ID("a"))
	operator.Watch[*corev1.ConfigMap](op).Every(time.Hour, func(context.Context, *corev1.ConfigMap, logr.Logger) error { return nil }) // no books: fine
	operator.Watch[*corev1.ConfigMap](op).OnUpdate(noop, operator.ID("b"))
	err = op.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "two Watch registrations of ConfigMap have change handlers") {
		t.Errorf("Run = %v, want the clash refused", err)
	}
}

// TestPrefixesKeepOperatorsApart: two operators on one kind, with their
// own prefixes, each run their handlers and keep their own books
// (zalando-incubator/kopf #372).
func TestPrefixesKeepOperatorsApart(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	c := newCalls()
	for _, p := range []string{"one.example.com", "two.example.com"} {
		o := opts(ns)
		o.Name, o.Prefix = o.Name+"-"+p, p
		start(t, nil, o, func(op *operator.Operator) {
			d := operator.Watch[*appsv1.Deployment](op)
			d.OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
				c.add(p, "create")
				return nil
			})
			d.OnUpdate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
				c.add(p, "update")
				return nil
			})
		})
	}
	dep := deployment(ns, "shared", 1)
	create(t, dep)
	c.waitCount(t, "one.example.com", 1)
	c.waitCount(t, "two.example.com", 1)
	mutate(t, dep, func(d *appsv1.Deployment) { d.Spec.Paused = true })
	c.waitCount(t, "one.example.com", 2)
	c.waitCount(t, "two.example.com", 2)
	a := get(t, dep).Annotations
	for _, p := range []string{"one.example.com", "two.example.com"} {
		if _, ok := a[p+"/last-handled-configuration"]; !ok {
			t.Errorf("no diff base under %s: %v", p, a)
		}
	}
}

// TestNamespaceScope: an operator limited to two namespaces handles
// objects there and never sees a third.
func TestNamespaceScope(t *testing.T) {
	env := testkit.Env(t)
	a, b, other := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	c := newCalls()
	o := opts(a)
	o.Namespaces = []string{a, b}
	start(t, nil, o, func(op *operator.Operator) {
		operator.Watch[*corev1.ConfigMap](op, operator.Labels(map[string]string{"scope": "test"})).OnCreate(func(ctx context.Context, cs *operator.Cause[*corev1.ConfigMap]) error {
			c.add("create", cs.Object.Namespace)
			return nil
		})
	})
	for _, ns := range []string{other, a, b} {
		cm := configMap(ns, "scoped")
		cm.Labels = map[string]string{"scope": "test"}
		create(t, cm)
	}
	c.waitCount(t, "create", 2)
	for _, ns := range c.of("create") {
		if ns == other {
			t.Errorf("object in unwatched namespace %s handled", other)
		}
	}
	if _, ok := get(t, configMap(other, "scoped")).Annotations["setpoint.dev/last-handled-configuration"]; ok {
		t.Errorf("bookkeeping written in unwatched namespace")
	}
}

// TestEventLevelAndRateLimit: with EventLevel 1, V(1) lines are Events
// too; a handler that logs 30 lines at once gets the burst of 10 posted,
// not 30.
func TestEventLevelAndRateLimit(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	o := opts(ns)
	o.EventLevel = 1
	start(t, nil, o, func(op *operator.Operator) {
		operator.Watch[*corev1.ConfigMap](op).OnCreate(func(ctx context.Context, cs *operator.Cause[*corev1.ConfigMap]) error {
			if cs.Object.Name != "chatty" {
				return nil
			}
			cs.Log.V(1).Info("detail at level one")
			for i := range 30 {
				cs.Log.Info(fmt.Sprintf("line %d", i))
			}
			return nil
		})
	})
	cm := configMap(ns, "chatty")
	create(t, cm)
	waitEvent(t, get(t, cm), "Normal Logging: detail at level one")
	waitEvent(t, cm, "Handler TestEventLevelAndRateLimit.func1.1 succeeded")
	// Events are posted asynchronously: wait for the burst to land.
	testkit.Eventually(t, wait, func() error {
		logging := 0
		for _, e := range eventsFor(t, cm) {
			if strings.Contains(e, "Logging: line ") {
				logging++
			}
		}
		if logging != 9 { // the burst of 10, one of which went to the V(1) line
			return fmt.Errorf("%d log-line events posted, want 9 of the 30 lines", logging)
		}
		return nil
	})
}

// TestDiffBaseFitsBesideOtherAnnotations: the diff base's size budget
// counts the annotations already on the object. A 60 KiB spec of small
// fields is stored whole when there is room; beside a 200 KiB
// last-applied copy it would take the object over the API server's 256
// KiB of annotations (the patch refused, the create handler run again on
// every backoff), so it is compacted instead, and the flow is handled
// once.
func TestDiffBaseFitsBesideOtherAnnotations(t *testing.T) {
	installWidgetCRD(t)
	ns := testkit.Env(t).Namespace(t)
	c := newCalls()
	o := opts(ns)
	o.Scheme = widgetScheme(t)
	start(t, nil, o, func(op *operator.Operator) {
		w := operator.Watch[*Widget](op)
		w.OnCreate(func(ctx context.Context, cs *operator.Cause[*Widget]) error { c.add("create", ""); return nil })
		// An update handler makes the base the whole essence.
		w.OnUpdate(func(ctx context.Context, cs *operator.Cause[*Widget]) error { c.add("update", ""); return nil })
	})
	parts := map[string]any{}
	for i := range 1000 {
		parts[fmt.Sprintf("p%04d", i)] = strings.Repeat("v", 50)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "test.setpoint.dev/v1", "kind": "Widget",
		"metadata": map[string]any{"name": "crowded", "namespace": ns, "annotations": map[string]any{
			"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("a", 200<<10),
		}},
		"spec": map[string]any{"size": int64(1), "parts": parts},
	}}
	env := testkit.Env(t)
	if err := env.Client.Create(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, func() error {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(u.GroupVersionKind())
		if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(u), got); err != nil {
			return err
		}
		base, ok := got.GetAnnotations()["setpoint.dev/last-handled-configuration"]
		if !ok {
			return fmt.Errorf("no diff base yet; create handler ran %d times", c.count("create"))
		}
		if !strings.Contains(base, "$sha256") {
			return fmt.Errorf("diff base of %d bytes stored whole", len(base))
		}
		return nil
	})
	if n := c.count("create"); n != 1 {
		t.Errorf("create handler ran %d times, want 1", n)
	}
}

// startSizeWatch runs an operator on Widgets of a new namespace whose
// create handler records "create" and whose spec.size handler records
// "old->new"; more registers further handlers.
func startSizeWatch(t *testing.T, more func(*operator.Kind[*Widget], *calls)) (string, client.Client, *calls) {
	t.Helper()
	installWidgetCRD(t)
	ns := testkit.Env(t).Namespace(t)
	c := newCalls()
	o := opts(ns)
	o.Scheme = widgetScheme(t)
	start(t, nil, o, func(op *operator.Operator) {
		w := operator.Watch[*Widget](op)
		w.OnCreate(func(ctx context.Context, cs *operator.Cause[*Widget]) error { c.add("create", ""); return nil })
		w.OnField("spec.size", func(ctx context.Context, cs *operator.Cause[*Widget]) error {
			c.add("size", fmt.Sprintf("%v->%v", cs.Old, cs.New))
			return nil
		})
		if more != nil {
			more(w, c)
		}
	})
	return ns, widgetClient(t), c
}

// writeSeen writes status.seen of wd, a status-only change.
func writeSeen(t *testing.T, wc client.Client, wd *Widget, seen int) {
	t.Helper()
	testkit.Eventually(t, wait, func() error {
		if err := wc.Get(t.Context(), clientKey(wd), wd); err != nil {
			return err
		}
		wd.Status.Seen = seen
		return wc.Status().Update(t.Context(), wd)
	})
}
