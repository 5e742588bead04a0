package operator_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// Get never returns a copy older than the operator's own last status
// write: a daemon that decides from Get and writes only what changed
// would otherwise see "no change" in a stale copy and leave its last
// write standing (a PostgresCluster kept a primary's unhealthy mark it
// had cleared, and failed over on it later).
func TestGetSeesItsOwnStatusWrites(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	installWidgetCRD(t)
	o := opts(ns)
	o.Scheme = widgetScheme(t)
	var widgets *operator.Kind[*Widget]
	start(t, nil, o, func(op *operator.Operator) { widgets = operator.Watch[*Widget](op) })
	w := &Widget{}
	w.Name, w.Namespace = "w", ns
	if err := widgetClient(t).Create(t.Context(), w); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: ns, Name: "w"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testkit.Eventually(t, time.Minute, func() error { _, err := widgets.Get(ctx, key); return err })
	stale := 0
	for i := 1; i <= 50; i++ {
		before, err := widgets.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if before.Status.Seen != i-1 {
			stale++
			testkit.Eventually(t, 10*time.Second, func() error {
				before, err = widgets.Get(ctx, key)
				if err == nil && before.Status.Seen != i-1 {
					return fmt.Errorf("seen %d, want %d", before.Status.Seen, i-1)
				}
				return err
			})
		}
		after := before.DeepCopyObject().(*Widget)
		after.Status.Seen = i
		if err := widgets.PatchStatus(ctx, before, after); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if stale > 0 {
		t.Errorf("%d of 50 reads right after a status write returned the copy from before it", stale)
	}
}
