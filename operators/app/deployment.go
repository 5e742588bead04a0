package app

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
)

// Deployment builds the Deployment of one process. configHash, when not
// empty, goes into the pod template so that a change in the referenced
// configuration rolls the pods.
//
// An autoscaled process leaves spec.replicas out, handed off with its
// live value (operator.HandOff), so switching a process from replicas to
// autoscaling keeps its pods until the autoscaler decides; the
// autoscaler owns the field from then on.
func Deployment(app *v1alpha1.App, p v1alpha1.Process, configHash string) *appsv1.Deployment {
	d := &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      ProcessName(app, p.Name),
			Namespace: app.Namespace,
			Labels:    podLabels(app, p.Name),
		},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector(app, p.Name)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      podLabels(app, p.Name),
					Annotations: podAnnotations(app, configHash),
				},
				Spec: corev1.PodSpec{Containers: []corev1.Container{container(app, p)}},
			},
		},
	}
	if p.Autoscaling != nil {
		return operator.HandOff(d, "spec.replicas")
	}
	d.Spec.Replicas = new(replicas(p))
	return d
}

// replicas is a fixed-size process's pod count.
func replicas(p v1alpha1.Process) int32 {
	if p.Replicas == nil {
		return 1
	}
	return *p.Replicas
}

func podAnnotations(app *v1alpha1.App, configHash string) map[string]string {
	a := map[string]string{}
	if configHash != "" {
		a[AnnotationConfigHash] = configHash
	}
	if m := app.Spec.Metrics; m != nil {
		a["prometheus.io/scrape"] = "true"
		a["prometheus.io/port"] = strconv.Itoa(int(metricsPort(app)))
		path := m.Path
		if path == "" {
			path = "/metrics"
		}
		a["prometheus.io/path"] = path
	}
	if len(a) == 0 {
		return nil
	}
	return a
}

func metricsPort(app *v1alpha1.App) int32 {
	if app.Spec.Metrics.Port != 0 {
		return app.Spec.Metrics.Port
	}
	return port(app)
}

func container(app *v1alpha1.App, p v1alpha1.Process) corev1.Container {
	c := corev1.Container{
		Name:      p.Name,
		Image:     app.Spec.Image,
		Command:   p.Command,
		Args:      p.Args,
		Env:       env(app, p),
		EnvFrom:   app.Spec.EnvFrom,
		Resources: p.Resources,
	}
	if p.Name == WebProcess {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: PortName, ContainerPort: port(app), Protocol: corev1.ProtocolTCP})
		if app.Spec.HealthCheckPath != "" {
			c.ReadinessProbe = httpProbe(app.Spec.HealthCheckPath, 1)
			// Liveness waits longer and tolerates more failures than
			// readiness, so a slow start is not a restart loop.
			c.LivenessProbe = httpProbe(app.Spec.HealthCheckPath, 6)
			c.LivenessProbe.InitialDelaySeconds = 10
		}
	}
	if app.Spec.Metrics != nil && (p.Name != WebProcess || metricsPort(app) != port(app)) {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: "metrics", ContainerPort: metricsPort(app), Protocol: corev1.ProtocolTCP})
	}
	return c
}

func httpProbe(path string, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path:   path,
			Port:   intstr.FromString(PortName),
			Scheme: corev1.URISchemeHTTP,
		}},
		PeriodSeconds:    10,
		TimeoutSeconds:   1,
		SuccessThreshold: 1,
		FailureThreshold: failures,
	}
}

// env is the App's environment, with $PORT for the web process unless the
// user set PORT.
func env(app *v1alpha1.App, p v1alpha1.Process) []corev1.EnvVar {
	if p.Name != WebProcess {
		return app.Spec.Env
	}
	for _, e := range app.Spec.Env {
		if e.Name == "PORT" {
			return app.Spec.Env
		}
	}
	out := make([]corev1.EnvVar, 0, len(app.Spec.Env)+1)
	out = append(out, corev1.EnvVar{Name: "PORT", Value: strconv.Itoa(int(port(app)))})
	return append(out, app.Spec.Env...)
}
