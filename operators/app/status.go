package app

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator/rollout"
)

// Condition types and reasons of an App: the library's rollout
// conditions, and one reason of the App's own.
const (
	ConditionReady       = rollout.ConditionReady
	ConditionProgressing = rollout.ConditionProgressing
	ConditionDegraded    = rollout.ConditionDegraded

	ReasonRolledOut        = rollout.ReasonRolledOut
	ReasonRollingOut       = rollout.ReasonRollingOut
	ReasonDeploymentFailed = rollout.ReasonDeploymentFailed
	ReasonAsExpected       = rollout.ReasonAsExpected
	ReasonConfigMissing    = "ConfigMissing"
)

// Status computes the App's status from its Deployments (by process
// name; a missing one is not created yet), the required configuration
// that does not exist and the children the API server refused (a
// blocker, or nil). Conditions keep their transition time unless their
// status changes; now stamps the ones that change.
func Status(app *v1alpha1.App, deployments map[string]*appsv1.Deployment, missing []string, refused *rollout.Blocker, now metav1.Time) v1alpha1.AppStatus {
	st := v1alpha1.AppStatus{
		ObservedGeneration: app.Generation,
		URLs:               URLs(app),
		Conditions:         append([]metav1.Condition(nil), app.Status.Conditions...),
	}
	if len(st.URLs) > 0 {
		st.URL = st.URLs[0]
	}
	components := make([]rollout.Component, 0, len(app.Spec.Processes))
	for _, p := range app.Spec.Processes {
		c := rollout.Component{Name: p.Name, Deployment: deployments[p.Name]}
		if a := p.Autoscaling; a != nil {
			// Ready is the floor the user asked for being available, not
			// the autoscaler's latest count.
			c.Scaled, c.MinAvailable = true, max(a.MinReplicas, 1)
		} else {
			c.Want = replicas(p)
		}
		components = append(components, c)
	}
	sum := rollout.Summarise(components)
	for _, o := range sum.Components {
		st.Processes = append(st.Processes, v1alpha1.ProcessStatus{
			Name: o.Name, Replicas: o.Replicas, ReadyReplicas: o.ReadyReplicas, UpdatedReplicas: o.UpdatedReplicas,
		})
	}
	st.Replicas = sum.Pods()
	blocker := refused
	if blocker == nil && len(missing) > 0 {
		blocker = &rollout.Blocker{Reason: ReasonConfigMissing, Message: "missing " + strings.Join(missing, ", ")}
	}
	rollout.Conditions(&st.Conditions, app.Generation, now, sum, blocker)
	return st
}
