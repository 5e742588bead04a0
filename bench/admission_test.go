package bench

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	crdmanifests "github.com/setpoint-dev/setpoint/config/crd"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/crd"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/testkit"
)

// admissionCalls is how many requests each figure of
// BenchmarkAppAdmission is taken over.
const admissionCalls = 200

// BenchmarkAppAdmission measures what the App webhook's server-side
// dry-run of the children adds to an App's admission: the latency of a
// dry-run create of an App (two processes, autoscaling, a route: five
// children) in a namespace the webhook serves and in one it does not, and
// the dry-run of the children alone. p50 and p99 over admissionCalls
// sequential requests, in milliseconds.
func BenchmarkAppAdmission(b *testing.B) {
	env := testkit.Env(b)
	if err := crd.Install(b.Context(), env.Config, time.Minute, crdmanifests.MustGet(appsv1alpha1.GroupVersion.Group, "apps")); err != nil {
		b.Fatal(err)
	}
	served, unserved := env.Namespace(b), env.Namespace(b)
	op, err := operator.New(env.Config, operator.Options{
		Name: "admission-bench-" + served, Scheme: scheme, Namespaces: []string{served},
		MetricsAddr: "0", ProbeAddr: "0", Webhooks: testkit.Webhooks(b),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := app.Setup(op); err != nil {
		b.Fatal(err)
	}
	testkit.StartOperator(b, op)
	c := env.Client
	// Served once the webhook refuses what it should.
	testkit.Eventually(b, time.Minute, func() error {
		bad := admissionApp(served)
		bad.Spec.Processes[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}
		if err := c.Create(b.Context(), bad, client.DryRunAll); err == nil {
			return fmt.Errorf("webhook not serving yet")
		}
		return nil
	})
	for range b.N {
		with := timeCalls(b, func() error { return c.Create(b.Context(), admissionApp(served), client.DryRunAll) })
		without := timeCalls(b, func() error { return c.Create(b.Context(), admissionApp(unserved), client.DryRunAll) })
		children := timeCalls(b, func() error {
			f := &operator.Findings{}
			app.DryRun(b.Context(), op.DryRunApply, admissionApp(served), f)
			if len(f.Problems)+len(f.Warnings) > 0 {
				return fmt.Errorf("dry-run found %v %v", f.Problems, f.Warnings)
			}
			return nil
		})
		for name, d := range map[string][]time.Duration{"webhook": with, "no-webhook": without, "children-dry-run": children} {
			b.ReportMetric(percentile(d, 0.50), name+"-p50-ms")
			b.ReportMetric(percentile(d, 0.99), name+"-p99-ms")
		}
	}
}

func admissionApp(ns string) *appsv1alpha1.App {
	return &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "admitted", Namespace: ns},
		Spec: appsv1alpha1.AppSpec{
			Image:  "example/admitted:1",
			Routes: []appsv1alpha1.Route{{Host: "admitted.example.com"}},
			Processes: []appsv1alpha1.Process{
				{Name: "web", Autoscaling: &appsv1alpha1.Autoscaling{MinReplicas: 2, MaxReplicas: 5},
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}},
				{Name: "worker"},
			},
		},
	}
}

// timeCalls runs call admissionCalls times, one after another, and
// returns each one's duration.
func timeCalls(b *testing.B, call func() error) []time.Duration {
	b.Helper()
	out := make([]time.Duration, 0, admissionCalls)
	for range admissionCalls {
		start := time.Now()
		if err := call(); err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(start))
	}
	return out
}
