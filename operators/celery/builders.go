package celery

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator/configdata"
)

// Workers builds the Deployment of one pool with the replica count the
// autoscaler chose. Workers stop with SIGTERM, Celery's warm shutdown:
// they take no new task and finish the running ones within the pool's
// grace period, so a scale-down never kills a task mid-flight unless it
// outlasts that period.
func Workers(cc *v1alpha1.CeleryCluster, p v1alpha1.Pool, replicas int32) *appsv1.Deployment {
	concurrency, pool := p.Concurrency, p.Pool
	if concurrency == 0 {
		concurrency = 1
	}
	if pool == "" {
		pool = "prefork"
	}
	grace := int64(DefaultGracePeriod)
	if p.TerminationGracePeriodSeconds != nil {
		grace = *p.TerminationGracePeriodSeconds
	}
	c := container(cc, p.Name, cc.Spec.Image, []string{
		"celery", "--app", cc.Spec.App, "worker", "--loglevel", "INFO",
		"--queues", Queues(p), "--concurrency", strconv.Itoa(int(concurrency)), "--pool", string(pool),
		// Unique per pod, so Flower and `celery inspect` tell them apart.
		"--hostname", p.Name + "@%h",
	})
	c.Resources = p.Resources
	d := deployment(cc, p.Name, replicas, c)
	d.Spec.Template.Spec.TerminationGracePeriodSeconds = &grace
	return d
}

// Beat builds the beat Deployment: one pod, and on change the old one
// goes before the new one starts (Recreate), so two schedulers never send
// the same periodic task twice.
func Beat(cc *v1alpha1.CeleryCluster) *appsv1.Deployment {
	if cc.Spec.Beat == nil {
		return nil
	}
	c := container(cc, ComponentBeat, cc.Spec.Image, []string{
		"celery", "--app", cc.Spec.App, "beat", "--loglevel", "INFO",
		// The image's working directory may be read-only.
		"--schedule", "/tmp/celerybeat-schedule",
	})
	c.Resources = cc.Spec.Beat.Resources
	d := deployment(cc, ComponentBeat, 1, c)
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	return d
}

// Flower builds Flower's Deployment and Service, or nils without Flower.
// Basic auth comes from the named Secret through FLOWER_BASIC_AUTH.
func Flower(cc *v1alpha1.CeleryCluster) (*appsv1.Deployment, *corev1.Service) {
	f := cc.Spec.Flower
	if f == nil {
		return nil, nil
	}
	image := f.Image
	if image == "" {
		image = cc.Spec.Image
	}
	port := f.Port
	if port == 0 {
		port = DefaultFlowerPort
	}
	command := []string{"celery", "--app", cc.Spec.App, "flower"}
	if len(f.Command) > 0 {
		command = append([]string(nil), f.Command...)
	}
	c := container(cc, ComponentFlower, image, append(command, "--port="+strconv.Itoa(int(port))))
	c.Ports = []corev1.ContainerPort{{Name: FlowerPortName, ContainerPort: port, Protocol: corev1.ProtocolTCP}}
	c.ReadinessProbe = &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString(FlowerPortName)}},
		PeriodSeconds:    10,
		TimeoutSeconds:   1,
		SuccessThreshold: 1,
		FailureThreshold: 3,
	}
	if ref := f.BasicAuthSecretRef; ref != nil {
		c.Env = append(c.Env, corev1.EnvVar{Name: "FLOWER_BASIC_AUTH", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: ref.DeepCopy()}})
	}
	d := deployment(cc, ComponentFlower, 1, c)
	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      ComponentName(cc, ComponentFlower),
			Namespace: cc.Namespace,
			Labels:    podLabels(cc, ComponentFlower),
		},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: selector(cc, ComponentFlower),
			Ports: []corev1.ServicePort{{
				Name: FlowerPortName, Port: port, Protocol: corev1.ProtocolTCP,
				// Set explicitly: a zero would be defaulted by the server and
				// differ on every pass.
				TargetPort: intstr.FromString(FlowerPortName),
			}},
		},
	}
	return d, svc
}

// container is a Celery container: the broker URL from its Secret first,
// then the user's env, so the user may add to it but the URL never
// appears as text.
func container(cc *v1alpha1.CeleryCluster, name, image string, command []string) corev1.Container {
	env := make([]corev1.EnvVar, 0, len(cc.Spec.Env)+1)
	env = append(env, corev1.EnvVar{Name: BrokerURLEnv, ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: cc.Spec.Broker.URLSecretRef.DeepCopy(),
	}})
	env = append(env, cc.Spec.Env...)
	return corev1.Container{
		Name:    name,
		Image:   image,
		Command: command,
		Env:     env,
		EnvFrom: cc.Spec.EnvFrom,
	}
}

func deployment(cc *v1alpha1.CeleryCluster, component string, replicas int32, c corev1.Container) *appsv1.Deployment {
	return &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      ComponentName(cc, component),
			Namespace: cc.Namespace,
			Labels:    podLabels(cc, component),
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: selector(cc, component)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels(cc, component)},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{c}},
			},
		},
	}
}

// Uses lists what the workers' and beat's containers read: the broker
// URL's Secret key, env valueFrom and envFrom.
func Uses(cc *v1alpha1.CeleryCluster) []configdata.Use {
	ref := cc.Spec.Broker.URLSecretRef
	out := []configdata.Use{{Ref: configdata.Ref{Kind: configdata.KindSecret, Name: ref.Name}, Key: ref.Key}}
	return append(out, configdata.EnvUses(cc.Spec.Env, cc.Spec.EnvFrom)...)
}

// FlowerUses is Uses and Flower's basic-auth Secret key.
func FlowerUses(cc *v1alpha1.CeleryCluster) []configdata.Use {
	out := Uses(cc)
	if f := cc.Spec.Flower; f != nil && f.BasicAuthSecretRef != nil {
		ref := f.BasicAuthSecretRef
		out = append(out, configdata.Use{Ref: configdata.Ref{Kind: configdata.KindSecret, Name: ref.Name}, Key: ref.Key})
	}
	return out
}

// WithConfigHash puts hash (configdata.Key.Hash of what d's pods read)
// on d's pod template, so a change in that configuration rolls them; an
// empty hash adds nothing.
func WithConfigHash(d *appsv1.Deployment, hash string) *appsv1.Deployment {
	if hash == "" {
		return d
	}
	if d.Spec.Template.Annotations == nil {
		d.Spec.Template.Annotations = map[string]string{}
	}
	d.Spec.Template.Annotations[AnnotationConfigHash] = hash
	return d
}
