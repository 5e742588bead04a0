package celery

import (
	"strings"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
)

// Labels the operator puts on what it makes. LabelCluster and
// LabelComponent select a component's pods and never change for it,
// because a Deployment's selector cannot.
const (
	LabelCluster   = "celery.setpoint.dev/cluster"
	LabelComponent = "celery.setpoint.dev/component"

	// ComponentBeat and ComponentFlower are the components besides the
	// pools (whose component is the pool's name).
	ComponentBeat   = "beat"
	ComponentFlower = "flower"

	// BrokerURLEnv carries the broker URL into every container, from the
	// Secret the spec names; Celery reads it as its broker_url.
	BrokerURLEnv = "CELERY_BROKER_URL"

	// FlowerPortName names Flower's port on the container and Service.
	FlowerPortName = "http"
)

// Defaults for objects built in Go (the CRD defaults them too).
const (
	DefaultFlowerPort  = 5555
	DefaultGracePeriod = 300
)

// ComponentName is the name of a component's Deployment (and Flower's
// Service): <cluster>-<pool>, <cluster>-beat, <cluster>-flower.
func ComponentName(cc *v1alpha1.CeleryCluster, component string) string {
	return cc.Name + "-" + component
}

func selector(cc *v1alpha1.CeleryCluster, component string) map[string]string {
	return map[string]string{LabelCluster: cc.Name, LabelComponent: component}
}

// podLabels are the selector plus the recommended labels.
func podLabels(cc *v1alpha1.CeleryCluster, component string) map[string]string {
	l := selector(cc, component)
	l["app.kubernetes.io/name"] = cc.Name
	l["app.kubernetes.io/component"] = component
	return l
}

// Queues is a pool's -Q argument.
func Queues(p v1alpha1.Pool) string { return strings.Join(p.Queues, ",") }

// PodDeletionCost is the annotation by which the ReplicaSet controller
// removes pods of lower cost first; the autoscaler sets it on workers.
const PodDeletionCost = "controller.kubernetes.io/pod-deletion-cost"

// WorkerHostname is the Celery node name of a pool's worker in a pod
// (--hostname <pool>@%h, and a pod's host name is its name).
func WorkerHostname(p v1alpha1.Pool, pod string) string { return p.Name + "@" + pod }

// AnnotationConfigHash on a pod template digests the configuration its
// containers read (see Uses): a change in it rolls the Deployment.
const AnnotationConfigHash = "celery.setpoint.dev/config-hash"
