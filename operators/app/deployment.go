package app

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
					Labels:      templateLabels(app, p.Name),
					Annotations: podAnnotations(app, configHash),
				},
				Spec: podSpec(app, p),
			},
		},
	}
	if p.Autoscaling != nil {
		return operator.HandOff(d, "spec.replicas")
	}
	d.Spec.Replicas = new(replicas(p))
	return d
}

// podSpec is a process's pod: its container and the App's placement,
// identity, pull secrets and files.
func podSpec(app *v1alpha1.App, p v1alpha1.Process) corev1.PodSpec {
	spec := corev1.PodSpec{
		Containers:       []corev1.Container{container(app, p)},
		ImagePullSecrets: app.Spec.ImagePullSecrets,
		Volumes:          fileVolumes(app),
	}
	s := app.Spec.Pod
	if s == nil {
		s = &v1alpha1.PodSettings{}
	}
	spec.NodeSelector = s.NodeSelector
	spec.Tolerations = s.Tolerations
	spec.Affinity = s.Affinity
	spec.ServiceAccountName = s.ServiceAccountName
	spec.SecurityContext = s.SecurityContext
	spec.PriorityClassName = s.PriorityClassName
	spec.TopologySpreadConstraints = spread(app, p, s.TopologySpreadConstraints)
	return spec
}

// spread is the process's topology spread: the user's constraints, each
// selecting the process's pods unless it says otherwise, or by default
// one best-effort spread over nodes for a process that can have more
// than one pod.
func spread(app *v1alpha1.App, p v1alpha1.Process, user []corev1.TopologySpreadConstraint) []corev1.TopologySpreadConstraint {
	sel := &metav1.LabelSelector{MatchLabels: selector(app, p.Name)}
	if len(user) > 0 {
		out := make([]corev1.TopologySpreadConstraint, len(user))
		for i, c := range user {
			if c.LabelSelector == nil {
				c.LabelSelector = sel
			}
			out[i] = c
		}
		return out
	}
	if mostPods(p) <= 1 {
		return nil
	}
	return []corev1.TopologySpreadConstraint{{
		MaxSkew:           1,
		TopologyKey:       corev1.LabelHostname,
		WhenUnsatisfiable: corev1.ScheduleAnyway,
		LabelSelector:     sel,
	}}
}

// replicas is a fixed-size process's pod count.
func replicas(p v1alpha1.Process) int32 {
	if p.Replicas == nil {
		return 1
	}
	return *p.Replicas
}

// mostPods is the most pods a process can have.
func mostPods(p v1alpha1.Process) int32 {
	if p.Autoscaling != nil {
		return p.Autoscaling.MaxReplicas
	}
	return replicas(p)
}

// templateLabels are the pod labels: the user's, then Setpoint's (the
// CRD refuses the user's in Setpoint's prefix, and the recommended ones
// are ours to set).
func templateLabels(app *v1alpha1.App, process string) map[string]string {
	l := map[string]string{}
	if s := app.Spec.Pod; s != nil {
		for k, v := range s.Labels {
			l[k] = v
		}
	}
	for k, v := range podLabels(app, process) {
		l[k] = v
	}
	return l
}

func podAnnotations(app *v1alpha1.App, configHash string) map[string]string {
	a := map[string]string{}
	if s := app.Spec.Pod; s != nil {
		for k, v := range s.Annotations {
			a[k] = v
		}
	}
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
		Name:         p.Name,
		Image:        app.Spec.Image,
		Command:      p.Command,
		Args:         p.Args,
		Env:          env(app, p),
		EnvFrom:      app.Spec.EnvFrom,
		Resources:    p.Resources,
		VolumeMounts: fileMounts(app),
	}
	if p.Image != "" {
		c.Image = p.Image
	}
	if s := app.Spec.Pod; s != nil {
		c.SecurityContext = s.ContainerSecurityContext
	}
	if p.Name == WebProcess {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: PortName, ContainerPort: port(app), Protocol: corev1.ProtocolTCP})
		for _, extra := range app.Spec.Ports {
			c.Ports = append(c.Ports, corev1.ContainerPort{Name: extra.Name, ContainerPort: extra.Port, Protocol: protocol(extra)})
		}
	}
	if app.Spec.Metrics != nil && (p.Name != WebProcess || metricsPort(app) != port(app)) {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: "metrics", ContainerPort: metricsPort(app), Protocol: corev1.ProtocolTCP})
	}
	c.StartupProbe, c.ReadinessProbe, c.LivenessProbe = probes(app, p)
	return c
}

func protocol(p v1alpha1.Port) corev1.Protocol {
	if p.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return p.Protocol
}

// env is the App's environment with the process's over it (by name),
// and $PORT for the web process unless the user set PORT.
func env(app *v1alpha1.App, p v1alpha1.Process) []corev1.EnvVar {
	out := make([]corev1.EnvVar, 0, len(app.Spec.Env)+len(p.Env)+1)
	own := map[string]bool{}
	for _, e := range p.Env {
		own[e.Name] = true
	}
	if p.Name == WebProcess && !own["PORT"] && !hasVar(app.Spec.Env, "PORT") {
		out = append(out, corev1.EnvVar{Name: "PORT", Value: strconv.Itoa(int(port(app)))})
	}
	for _, e := range app.Spec.Env {
		if !own[e.Name] {
			out = append(out, e)
		}
	}
	out = append(out, p.Env...)
	if len(out) == 0 {
		return nil
	}
	return out
}

func hasVar(env []corev1.EnvVar, name string) bool {
	for _, e := range env {
		if e.Name == name {
			return true
		}
	}
	return false
}
