package app

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
)

func deploymentWith(gen, observed int64, replicas, updated, ready int32, conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Generation: gen},
		Spec:       appsv1.DeploymentSpec{Replicas: &replicas},
		Status: appsv1.DeploymentStatus{
			ObservedGeneration: observed, Replicas: replicas, UpdatedReplicas: updated,
			ReadyReplicas: ready, AvailableReplicas: ready, Conditions: conds,
		},
	}
}

func TestStatus(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	twoProcs := newApp(withProcess(v1alpha1.Process{Name: "worker", Replicas: new(int32(2))}))
	tests := []struct {
		name         string
		app          *v1alpha1.App
		deployments  map[string]*appsv1.Deployment
		missing      []string
		ready        metav1.ConditionStatus
		reason       string
		degraded     metav1.ConditionStatus
		replicas     string
		wantMessage  string
		processReady []int32
	}{{
		name:        "nothing yet",
		app:         twoProcs,
		ready:       metav1.ConditionFalse,
		reason:      ReasonRollingOut,
		degraded:    metav1.ConditionFalse,
		replicas:    "0/3",
		wantMessage: "waiting for web (no Deployment yet), worker (no Deployment yet)",
	}, {
		name: "all rolled out",
		app:  twoProcs,
		deployments: map[string]*appsv1.Deployment{
			"web":    deploymentWith(2, 2, 1, 1, 1),
			"worker": deploymentWith(1, 1, 2, 2, 2),
		},
		ready: metav1.ConditionTrue, reason: ReasonRolledOut, degraded: metav1.ConditionFalse,
		replicas: "3/3", wantMessage: "3/3 pods ready", processReady: []int32{1, 2},
	}, {
		name: "a new generation not yet seen by the deployment controller",
		app:  twoProcs,
		deployments: map[string]*appsv1.Deployment{
			"web":    deploymentWith(3, 2, 1, 1, 1),
			"worker": deploymentWith(1, 1, 2, 2, 2),
		},
		ready: metav1.ConditionFalse, reason: ReasonRollingOut, degraded: metav1.ConditionFalse,
		replicas: "3/3", wantMessage: "waiting for web (1/1 updated and ready)",
	}, {
		name: "progress deadline exceeded",
		app:  newApp(),
		deployments: map[string]*appsv1.Deployment{"web": deploymentWith(1, 1, 1, 1, 0, appsv1.DeploymentCondition{
			Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: "too slow"})},
		ready: metav1.ConditionFalse, reason: ReasonDeploymentFailed, degraded: metav1.ConditionTrue,
		replicas: "0/1", wantMessage: "web: too slow",
	}, {
		name:        "missing config",
		app:         newApp(),
		deployments: map[string]*appsv1.Deployment{"web": deploymentWith(1, 1, 1, 1, 1)},
		missing:     []string{"ConfigMap cfg"},
		ready:       metav1.ConditionFalse, reason: ReasonConfigMissing, degraded: metav1.ConditionTrue,
		replicas: "1/1", wantMessage: "missing ConfigMap cfg",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := Status(tt.app, tt.deployments, tt.missing, nil, now)
			ready := meta.FindStatusCondition(st.Conditions, ConditionReady)
			eq(t, "ready", ready.Status, tt.ready)
			eq(t, "reason", ready.Reason, tt.reason)
			eq(t, "message", ready.Message, tt.wantMessage)
			eq(t, "observed generation", ready.ObservedGeneration, tt.app.Generation)
			eq(t, "degraded", meta.FindStatusCondition(st.Conditions, ConditionDegraded).Status, tt.degraded)
			eq(t, "replicas", st.Replicas, tt.replicas)
			eq(t, "status generation", st.ObservedGeneration, tt.app.Generation)
			eq(t, "url", st.URL, "http://shop.prod.svc")
			for i, want := range tt.processReady {
				eq(t, "process ready "+st.Processes[i].Name, st.Processes[i].ReadyReplicas, want)
			}
		})
	}
}

func TestStatusKeepsTransitionTimes(t *testing.T) {
	earlier := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	app := newApp()
	app.Status.Conditions = []metav1.Condition{{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonRolledOut, LastTransitionTime: earlier}}
	st := Status(app, map[string]*appsv1.Deployment{"web": deploymentWith(1, 1, 1, 1, 1)}, nil, nil, metav1.Now())
	eq(t, "unchanged Ready keeps its time", meta.FindStatusCondition(st.Conditions, ConditionReady).LastTransitionTime, earlier)
}
