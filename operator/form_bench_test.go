package operator_test

import (
	"encoding/json"
	"runtime"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operators/app"
)

// BenchmarkCachedDeployment reports the heap one App's Deployment (as
// the API server sends it, with its status and the operator's own apply
// entry) holds in a cache, in each form the caches can keep it in:
// unstructured after the caches' transform (field set compacted, keys
// shared), and typed (why Kubernetes' own kinds are cached typed, see
// form.go). B/object is the heap retained per object, over 2,000.
func BenchmarkCachedDeployment(b *testing.B) {
	data := appDeploymentJSON(b)
	forms := map[string]func() any{
		"unstructured": func() any {
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(data); err != nil {
				b.Fatal(err)
			}
			operator.LeanUnstructured(u.Object, "setpoint")
			return u
		},
		"typed": func() any {
			d := &appsv1.Deployment{}
			if err := json.Unmarshal(data, d); err != nil {
				b.Fatal(err)
			}
			return d
		},
	}
	for _, name := range []string{"unstructured", "typed"} {
		b.Run(name, func(b *testing.B) {
			var per float64
			for b.Loop() {
				per = retainedPerObject(2000, forms[name])
			}
			b.ReportMetric(per, "B/object")
		})
	}
}

func retainedPerObject(n int, decode func() any) float64 {
	keep := make([]any, n)
	before := heapInUse()
	for i := range keep {
		keep[i] = decode()
	}
	after := heapInUse()
	runtime.KeepAlive(keep)
	return float64(after-before) / float64(n)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// appDeploymentJSON is an App's web Deployment as the API server would
// send it once rolled out.
func appDeploymentJSON(b *testing.B) []byte {
	a := &v1alpha1.App{ObjectMeta: metav1.ObjectMeta{Name: "web-app-0001", Namespace: "bench", UID: "0a1b2c3d-0000-4000-8000-000000000001"},
		Spec: v1alpha1.AppSpec{Image: "example/app:1", Processes: []v1alpha1.Process{{Name: "web", Replicas: new(int32(2))}}}}
	d := app.Deployment(a, a.Spec.Processes[0], "0123456789abcdef")
	d.UID, d.ResourceVersion, d.Generation = "0a1b2c3d-0000-4000-8000-000000000002", "123456", 1
	d.CreationTimestamp = metav1.Now()
	desired, err := json.Marshal(d.Spec)
	if err != nil {
		b.Fatal(err)
	}
	// The operator's field set: one entry per field it applies.
	var spec map[string]any
	if err := json.Unmarshal(desired, &spec); err != nil {
		b.Fatal(err)
	}
	fields, err := json.Marshal(map[string]any{"f:spec": fieldSet(spec)})
	if err != nil {
		b.Fatal(err)
	}
	d.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "setpoint", Operation: metav1.ManagedFieldsOperationApply,
		APIVersion: "apps/v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: fields}}}
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, ReadyReplicas: 2, AvailableReplicas: 2, UpdatedReplicas: 2,
		Conditions: []appsv1.DeploymentCondition{
			{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", Message: "Deployment has minimum availability."},
			{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable", Message: `ReplicaSet "web-app-0001-web-5d8f9c" has successfully progressed.`}}}
	data, err := json.Marshal(d)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// fieldSet is the fieldsV1 form of a JSON value's fields (lists as
// whole values, which is coarser than the API server's keyed entries).
func fieldSet(v any) map[string]any {
	out := map[string]any{}
	if m, ok := v.(map[string]any); ok {
		for k, e := range m {
			out["f:"+k] = fieldSet(e)
		}
	}
	return out
}
