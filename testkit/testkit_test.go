package testkit_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }

func TestNamespacesAreFreshAndSeparate(t *testing.T) {
	env := testkit.Env(t)
	a, b := env.Namespace(t), env.Namespace(t)
	if a == b {
		t.Fatalf("two namespaces share the name %s", a)
	}
	if !strings.HasPrefix(a, "testnamespacesarefreshandseparate-") {
		t.Errorf("namespace %q is not named after the test", a)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "only-in-a"}}
	if err := env.Client.Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: cm.Name, Namespace: a}}); err != nil {
		t.Fatal(err)
	}
	var list corev1.ConfigMapList
	if err := env.Client.List(t.Context(), &list, &client.ListOptions{Namespace: b}); err != nil {
		t.Fatal(err)
	}
	for _, c := range list.Items {
		if c.Name == cm.Name {
			t.Errorf("object of namespace %s visible in %s", a, b)
		}
	}
}

func TestNamespaceIsDeletedAfterTheTest(t *testing.T) {
	env := testkit.Env(t)
	var ns string
	t.Run("inner", func(t *testing.T) { ns = env.Namespace(t) })
	testkit.Eventually(t, 30*time.Second, func() error {
		got, err := env.Clientset.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if got.DeletionTimestamp == nil {
			return errors.New("namespace not being deleted")
		}
		return nil
	})
}

func TestPollReturnsTheLastReason(t *testing.T) {
	calls := 0
	err := testkit.Poll(context.Background(), 300*time.Millisecond, func() error {
		calls++
		return errors.New("replicas 3/5")
	})
	if err == nil || !strings.Contains(err.Error(), "replicas 3/5") {
		t.Fatalf("err = %v, want the condition's last reason", err)
	}
	if calls < 2 {
		t.Errorf("condition polled %d times, want several", calls)
	}
	if err := testkit.Poll(context.Background(), time.Second, func() error { return nil }); err != nil {
		t.Errorf("met condition: %v", err)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 20; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Second)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 10 * time.Second}, {0.95, 19 * time.Second}, {1, 20 * time.Second}, {0.01, time.Second}} {
		if got := testkit.Percentile(ds, tc.p); got != tc.want {
			t.Errorf("p%v = %s, want %s", tc.p, got, tc.want)
		}
	}
	if got := testkit.Percentile(nil, 0.5); got != 0 {
		t.Errorf("of none: %s", got)
	}
}
