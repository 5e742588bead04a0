package rollout

import (
	"reflect"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func dep(replicas, ready, updated int32, conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Generation: 2},
		Spec:       appsv1.DeploymentSpec{Replicas: &replicas},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: max(ready, updated), ReadyReplicas: ready,
			AvailableReplicas: ready, UpdatedReplicas: updated, Conditions: conds},
	}
}

func TestSummariseAndConditions(t *testing.T) {
	stuck := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
		Reason: "ProgressDeadlineExceeded", Message: "deadline exceeded"}
	tests := []struct {
		name       string
		components []Component
		blocker    *Blocker
		pods       string
		ready      metav1.ConditionStatus
		reason     string
		message    string
	}{
		{"all rolled out", []Component{{Name: "a", Deployment: dep(2, 2, 2)}, {Name: "b", Deployment: dep(1, 1, 1)}}, nil,
			"3/3", metav1.ConditionTrue, ReasonRolledOut, "3/3 pods ready"},
		{"not created yet counts what it wants", []Component{{Name: "a", Want: 3}}, nil,
			"0/3", metav1.ConditionFalse, ReasonRollingOut, "waiting for a (no Deployment yet)"},
		{"rolling", []Component{{Name: "a", Deployment: dep(3, 3, 1)}}, nil,
			"3/3", metav1.ConditionFalse, ReasonRollingOut, "waiting for a (1/3 updated and ready)"},
		{"failed wins over rolling", []Component{{Name: "a", Deployment: dep(3, 3, 1)}, {Name: "b", Deployment: dep(1, 0, 1, stuck)}}, nil,
			"3/4", metav1.ConditionFalse, ReasonDeploymentFailed, "b: deadline exceeded"},
		{"a blocker wins over all", []Component{{Name: "a", Deployment: dep(1, 1, 1)}}, &Blocker{Reason: "BrokerUnreachable", Message: "no broker"},
			"1/1", metav1.ConditionFalse, "BrokerUnreachable", "no broker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Summarise(tt.components)
			if s.Pods() != tt.pods {
				t.Errorf("pods %s, want %s", s.Pods(), tt.pods)
			}
			var conds []metav1.Condition
			Conditions(&conds, 7, metav1.Now(), s, tt.blocker)
			c := meta.FindStatusCondition(conds, ConditionReady)
			if c.Status != tt.ready || c.Reason != tt.reason || c.Message != tt.message || c.ObservedGeneration != 7 {
				t.Errorf("Ready = %s %s %q (generation %d), want %s %s %q", c.Status, c.Reason, c.Message, c.ObservedGeneration, tt.ready, tt.reason, tt.message)
			}
			if len(conds) != 3 {
				t.Errorf("%d conditions, want Ready, Progressing and Degraded", len(conds))
			}
		})
	}
}

func TestConditionsKeepTransitionTimes(t *testing.T) {
	s := Summarise([]Component{{Name: "a", Deployment: dep(1, 1, 1)}})
	var conds []metav1.Condition
	first := metav1.NewTime(time.Unix(1000, 0))
	Conditions(&conds, 1, first, s, nil)
	before := append([]metav1.Condition(nil), conds...)
	Conditions(&conds, 1, metav1.NewTime(time.Unix(2000, 0)), s, nil)
	if !reflect.DeepEqual(before, conds) {
		t.Errorf("an unchanged state moved the conditions:\n%v\n%v", before, conds)
	}
}
