package operator_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/configdata"
	"github.com/setpoint-dev/setpoint/testkit"
)

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// The caches keep only what Setpoint reads (#19): handlers see objects
// without kubectl's last-applied copy and without other writers'
// managedFields, while a child keeps the operator's own apply entry (a
// pass needs it to know the child needs no apply); the API server keeps
// all of it.
func TestCachesKeepOnlyWhatSetpointReads(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	installWidgetCRD(t)
	o := opts(ns)
	o.Scheme = widgetScheme(t)
	o.ConcealConfigValues = true
	seen := make(chan *Widget, 1)
	r := start(t, nil, o, func(op *operator.Operator) {
		w := operator.Watch[*Widget](op)
		w.Children(widgetChildren, &corev1.ConfigMap{})
		w.OnCreate(func(ctx context.Context, cs *operator.Cause[*Widget]) error {
			select {
			case seen <- cs.Object.DeepCopyObject().(*Widget):
			default:
			}
			return nil
		})
	})
	w := &Widget{ObjectMeta: metav1.ObjectMeta{Name: "w", Namespace: ns, Annotations: map[string]string{lastApplied: `{"a":"copy"}`, "keep": "me"}}}
	w.Spec.Size = 1
	wc := widgetClient(t)
	if err := wc.Create(t.Context(), w, client.FieldOwner("kubectl-client-side-apply")); err != nil {
		t.Fatal(err)
	}
	var got *Widget
	select {
	case got = <-seen:
	case <-time.After(time.Minute):
		t.Fatal("the create handler did not run")
	}
	if got.Annotations[lastApplied] != "" || got.Annotations["keep"] != "me" || len(got.ManagedFields) != 0 {
		t.Errorf("handler saw annotations %v and managedFields %v; want no last-applied copy, the other annotation, no managedFields", got.Annotations, got.ManagedFields)
	}
	stored := &Widget{}
	if err := r.op.APIReader().Get(t.Context(), client.ObjectKeyFromObject(w), stored); err != nil {
		t.Fatal(err)
	}
	if stored.Annotations[lastApplied] == "" || len(stored.ManagedFields) == 0 {
		t.Errorf("the stored Widget lost annotations %v or managedFields %v", stored.Annotations, stored.ManagedFields)
	}

	// A child that another writer also changed keeps only the
	// operator's apply entry in the cache.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "w-0", Namespace: ns}}
	testkit.Eventually(t, time.Minute, func() error { return wc.Get(t.Context(), client.ObjectKeyFromObject(cm), cm) })
	if err := wc.Patch(t.Context(), cm, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"labels":{"other":"x"}}}`)), client.FieldOwner("other")); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, func() error {
		cached := &corev1.ConfigMap{}
		if err := r.op.Client().Get(t.Context(), client.ObjectKeyFromObject(cm), cached); err != nil {
			return err
		}
		if cached.Labels["other"] != "x" {
			return fmt.Errorf("the cache has not seen the other writer's label yet")
		}
		if len(cached.ManagedFields) != 1 || cached.ManagedFields[0].Manager != o.Name || cached.ManagedFields[0].Operation != metav1.ManagedFieldsOperationApply {
			return fmt.Errorf("cached child's managedFields: %+v; want only %s's apply", cached.ManagedFields, o.Name)
		}
		return nil
	})
	// A Secret is cached with its keys and the digests of its values,
	// and the API server keeps the values.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns}, Data: map[string][]byte{"password": []byte("hunter2")}}
	if err := wc.Create(t.Context(), secret); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, func() error {
		cached := &corev1.Secret{}
		if err := r.op.Client().Get(t.Context(), client.ObjectKeyFromObject(secret), cached); err != nil {
			return err
		}
		if want := configdata.Key(nil).Value([]byte("hunter2")); string(cached.Data["password"]) != string(want) || len(cached.Data) != 1 {
			return fmt.Errorf("cached Secret's data %q; want only the digest of its value, %s", cached.Data, want)
		}
		if !configdata.Concealed(cached.Annotations) {
			return fmt.Errorf("cached Secret's annotations %v lack the mark %s", cached.Annotations, configdata.AnnotationValues)
		}
		return nil
	})
	storedSecret := &corev1.Secret{}
	if err := r.op.APIReader().Get(t.Context(), client.ObjectKeyFromObject(secret), storedSecret); err != nil {
		t.Fatal(err)
	}
	if string(storedSecret.Data["password"]) != "hunter2" || configdata.Concealed(storedSecret.Annotations) {
		t.Errorf("the API server's Secret changed: %q, annotations %v", storedSecret.Data, storedSecret.Annotations)
	}
}

// TestOneCachePerKind: every way the library reads a kind shares one
// cache of it, and so one watch: here Deployments are a handled kind
// (with a raw event handler), the children of another kind (whose status
// reads them back), an index, a related kind and a typed read through
// the operator's client. Each form (typed, unstructured) would otherwise
// be a watch and a copy of every Deployment of its own.
func TestOneCachePerKind(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	installWidgetCRD(t)
	o := opts(ns)
	o.Scheme = widgetScheme(t)
	var watches testkit.WatchCounter
	handled, raw := newCalls(), newCalls()
	var byImage *operator.Index[*appsv1.Deployment]
	r := start(t, watches.Wrap(testkit.Env(t).Config), o, func(op *operator.Operator) {
		d := operator.Watch[*appsv1.Deployment](op)
		d.OnCreate(func(ctx context.Context, c *operator.Cause[*appsv1.Deployment]) error {
			handled.add("create", c.Object.Name)
			return nil
		})
		d.OnEvent(func(ctx context.Context, e operator.Event[*appsv1.Deployment]) error {
			raw.add("event", e.Object.Name)
			return nil
		})
		byImage = operator.NewIndex(op, "deployment-images", func(d *appsv1.Deployment) []string {
			var out []string
			for _, c := range d.Spec.Template.Spec.Containers {
				out = append(out, c.Image)
			}
			return out
		})
		w := operator.Watch[*Widget](op)
		w.Children(func(ctx context.Context, w *Widget) ([]client.Object, error) {
			return []client.Object{deployment("", w.Name+"-d", int32(w.Spec.Size))}, nil
		}, &appsv1.Deployment{})
		w.Status(func(ctx context.Context, w *Widget, children *operator.Observed) (any, error) {
			d := &appsv1.Deployment{}
			found, err := children.Get(d, w.Name+"-d")
			if err != nil || !found || d.Spec.Replicas == nil || *d.Spec.Replicas != int32(w.Spec.Size) {
				return WidgetStatus{}, err
			}
			return WidgetStatus{Children: 1, ObservedGeneration: w.Generation}, nil
		})
		operator.WatchRelated(w, func(ctx context.Context, d *appsv1.Deployment) []types.NamespacedName { return nil })
	})
	w := &Widget{ObjectMeta: metav1.ObjectMeta{Name: "w", Namespace: ns}}
	w.Spec.Size = 2
	wc := widgetClient(t)
	if err := wc.Create(t.Context(), w); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, func() error {
		got := &Widget{}
		if err := wc.Get(t.Context(), client.ObjectKeyFromObject(w), got); err != nil {
			return err
		}
		if got.Status.Children != 1 {
			return fmt.Errorf("status %+v: the status function has not read its Deployment back", got.Status)
		}
		return nil
	})
	handled.waitCount(t, "create", 1)
	if raw.count("event") == 0 {
		t.Error("the raw event handler of Deployments was not called")
	}
	found, err := byImage.Lookup(t.Context(), "busybox")
	if err != nil || len(found) != 1 || found[0].Name != "w-d" {
		t.Fatalf("index lookup: %v, %v; want the Deployment w-d", found, err)
	}
	if err := r.op.Client().Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "w-d"}, &appsv1.Deployment{}); err != nil {
		t.Fatal(err)
	}
	path := "/apis/apps/v1/namespaces/" + ns + "/deployments"
	// Polled: a watch the server ends is reopened, and is not counted
	// for that moment.
	testkit.Eventually(t, wait, func() error {
		if n := watches.Open(path); n != 1 {
			return fmt.Errorf("%d watches of Deployments open, want 1", n)
		}
		return nil
	})
}
