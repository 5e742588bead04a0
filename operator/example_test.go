package operator_test

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/setpoint-dev/setpoint/operator"
)

// An operator that reacts to Deployments being created, scaled and
// deleted, and checks on each one every minute.
func Example() {
	op, err := operator.New(ctrl.GetConfigOrDie(), operator.Options{Name: "watcher"})
	if err != nil {
		panic(err)
	}
	deps := operator.Watch[*appsv1.Deployment](op, operator.Labels(map[string]string{"team": "web"}))
	deps.OnCreate(func(ctx context.Context, c *operator.Cause[*appsv1.Deployment]) error {
		c.Log.Info("new deployment") // logged, and an Event on the Deployment
		return nil
	})
	deps.OnField("spec.replicas", func(ctx context.Context, c *operator.Cause[*appsv1.Deployment]) error {
		if c.New == nil {
			return operator.Permanent(fmt.Errorf("replicas removed"))
		}
		c.Log.Info(fmt.Sprintf("scaled from %v to %v", c.Old, c.New))
		return nil
	}, operator.ID("scaled"), operator.Retries(3))
	deps.OnDelete(func(ctx context.Context, c *operator.Cause[*appsv1.Deployment]) error {
		return nil // release what the deployment held outside Kubernetes
	})
	deps.Every(time.Minute, func(ctx context.Context, d *appsv1.Deployment, log logr.Logger) error {
		if d.Status.ReadyReplicas == 0 {
			log.Error(nil, "no ready replicas") // a Warning Event
		}
		return nil
	}, operator.Idle(5*time.Minute))
	_ = op.Run(ctrl.SetupSignalHandler())
}
