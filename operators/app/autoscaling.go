package app

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
)

// HorizontalPodAutoscaler builds the autoscaler of a process, or nil when
// the process has a fixed size.
func HorizontalPodAutoscaler(app *v1alpha1.App, p v1alpha1.Process) *autoscalingv2.HorizontalPodAutoscaler {
	a := p.Autoscaling
	if a == nil {
		return nil
	}
	minReplicas := max(a.MinReplicas, 1)
	return &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta: metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      ProcessName(app, p.Name),
			Namespace: app.Namespace,
			Labels:    podLabels(app, p.Name),
		},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: ProcessName(app, p.Name)},
			MinReplicas:    &minReplicas,
			MaxReplicas:    a.MaxReplicas,
			Metrics:        metrics(a),
			Behavior:       a.Behavior,
		},
	}
}

// metrics are the autoscaler's targets: CPU and memory utilisation as
// set, CPU at 80 % when neither is.
func metrics(a *v1alpha1.Autoscaling) []autoscalingv2.MetricSpec {
	cpu, mem := a.TargetCPUUtilizationPercentage, a.TargetMemoryUtilizationPercentage
	if cpu == 0 && mem == 0 {
		cpu = 80
	}
	var out []autoscalingv2.MetricSpec
	add := func(name corev1.ResourceName, target int32) {
		if target == 0 {
			return
		}
		out = append(out, autoscalingv2.MetricSpec{
			Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricSource{
				Name:   name,
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &target},
			},
		})
	}
	add(corev1.ResourceCPU, cpu)
	add(corev1.ResourceMemory, mem)
	return out
}

// PodDisruptionBudget builds a budget that lets voluntary disruptions
// (node drains) take one pod of the process at a time, or nil when the
// process never has more than one pod.
func PodDisruptionBudget(app *v1alpha1.App, p v1alpha1.Process) *policyv1.PodDisruptionBudget {
	if mostPods(p) <= 1 {
		return nil
	}
	return &policyv1.PodDisruptionBudget{
		TypeMeta: metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      ProcessName(app, p.Name),
			Namespace: app.Namespace,
			Labels:    podLabels(app, p.Name),
		},
		Spec: policyv1.PodDisruptionBudgetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: selector(app, p.Name)},
			MaxUnavailable: new(intstr.FromInt32(1)),
		},
	}
}
