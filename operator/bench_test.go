package operator_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// BenchmarkDispatch compares, on the real control plane, the time from a
// change of a ConfigMap to its handler running, and the writes made per
// handled change, for a Setpoint update handler and for a plain
// controller-runtime reconciler that does the same work by hand: detect
// that the data changed since it was last handled (a hash in an
// annotation), run the work, record the new hash.
//
//	go test -run '^$' -bench Dispatch -benchtime 200x ./operator/
func BenchmarkDispatch(b *testing.B) {
	env := testkit.Env(b)
	for _, impl := range []string{"setpoint", "plain"} {
		b.Run(impl, func(b *testing.B) {
			ns := env.Namespace(b)
			seen := make(chan string, 1024)
			var counter testkit.WriteCounter
			cfg := counter.Wrap(env.Config)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			switch impl {
			case "setpoint":
				op, err := operator.New(cfg, operator.Options{Name: "bench-" + ns, Namespaces: []string{ns}})
				if err != nil {
					b.Fatal(err)
				}
				operator.Watch[*corev1.ConfigMap](op).OnUpdate(func(ctx context.Context, c *operator.Cause[*corev1.ConfigMap]) error {
					seen <- c.Object.Data["v"]
					return nil
				})
				go func() { done <- op.Run(ctx) }()
			case "plain":
				mgr, err := newPlain(cfg, ns, seen)
				if err != nil {
					b.Fatal(err)
				}
				go func() { done <- mgr.Start(ctx) }()
			}
			defer func() { cancel(); <-done }()

			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: ns}, Data: map[string]string{"v": "0"}}
			if err := env.Client.Create(ctx, cm); err != nil {
				b.Fatal(err)
			}
			// Let the first pass (the create flow) settle before timing.
			if err := testkit.Poll(ctx, 30*time.Second, func() error {
				got := &corev1.ConfigMap{}
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(cm), got); err != nil {
					return err
				}
				if len(got.Annotations) == 0 {
					return fmt.Errorf("not handled yet")
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			startWrites := counter.Count()
			i := 0
			for b.Loop() {
				i++
				v := strconv.Itoa(i)
				patch := []byte(`{"data":{"v":"` + v + `"}}`)
				if err := env.Client.Patch(ctx, cm, client.RawPatch(types.MergePatchType, patch)); err != nil {
					b.Fatal(err)
				}
				for got := range seen {
					if got == v {
						break
					}
				}
			}
			b.StopTimer()
			// Count the bookkeeping write of the last change too.
			last := strconv.Itoa(i)
			_ = testkit.Poll(ctx, 10*time.Second, func() error {
				got := &corev1.ConfigMap{}
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(cm), got); err != nil {
					return err
				}
				for _, a := range got.Annotations {
					if strings.Contains(a, `"v":"`+last+`"`) || a == dataHash(got.Data) {
						return nil
					}
				}
				return fmt.Errorf("last change not recorded yet")
			})
			b.ReportMetric(float64(counter.Count()-startWrites)/float64(b.N), "writes/event")
		})
	}
}

// plainReconciler is the hand-written equivalent of one Setpoint update
// handler: the way a careful team writes it without a library.
type plainReconciler struct {
	c    client.Client
	seen chan<- string
}

func newPlain(cfg *rest.Config, ns string, seen chan<- string) (ctrl.Manager, error) {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Cache:   cacheIn(ns),
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		return nil, err
	}
	err = ctrl.NewControllerManagedBy(mgr).For(&corev1.ConfigMap{}).Named("plain-" + ns).
		WithOptions(controller.Options{MaxConcurrentReconciles: 8, SkipNameValidation: new(true)}).
		Complete(&plainReconciler{c: mgr.GetClient(), seen: seen})
	return mgr, err
}

const plainAnnotation = "bench.setpoint.dev/last-handled"

func (p *plainReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var cm corev1.ConfigMap
	if err := p.c.Get(ctx, req.NamespacedName, &cm); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	h := dataHash(cm.Data)
	last, handled := cm.Annotations[plainAnnotation]
	if last == h {
		return reconcile.Result{}, nil
	}
	if handled {
		p.seen <- cm.Data["v"]
	}
	patch := []byte(`{"metadata":{"annotations":{"` + plainAnnotation + `":"` + h + `"}}}`)
	return reconcile.Result{}, p.c.Patch(ctx, &cm, client.RawPatch(types.MergePatchType, patch))
}

func dataHash(data map[string]string) string {
	b, _ := json.Marshal(data)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
