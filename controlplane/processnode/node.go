package processnode

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// ProcessNodeLabel labels process nodes and is the key of their taint: a
// pod runs as real processes when it tolerates the taint and selects the
// label (see PodOnProcessNode).
const ProcessNodeLabel = "setpoint.dev/process-node"

// NodeName is the name of the i-th process node (0-based).
func NodeName(i int) string { return fmt.Sprintf("process-node-%d", i) }

// nodeCapacity is what every process node offers the scheduler: the
// machine is shared, so these are generous bounds, not measurements.
var nodeCapacity = corev1.ResourceList{
	corev1.ResourceCPU:              resource.MustParse("16"),
	corev1.ResourceMemory:           resource.MustParse("32Gi"),
	corev1.ResourcePods:             resource.MustParse("110"),
	corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
}

// Node builds process node name. Its status is filled in by the runtime.
func Node(name string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				ProcessNodeLabel:         "true",
				"type":                   "process",
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: ProcessNodeLabel, Value: "true", Effect: corev1.TaintEffectNoSchedule}}},
	}
}

// PodOnProcessNode makes spec run on a process node: it selects the label
// and tolerates the taint.
func PodOnProcessNode(spec *corev1.PodSpec) {
	if spec.NodeSelector == nil {
		spec.NodeSelector = map[string]string{}
	}
	spec.NodeSelector[ProcessNodeLabel] = "true"
	spec.Tolerations = append(spec.Tolerations, corev1.Toleration{
		Key: ProcessNodeLabel, Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoSchedule,
	})
}

// The annotations of the PodNodeSelector and PodTolerationRestriction
// admission plugins, which a plane with process nodes enables.
const (
	nodeSelectorAnnotation       = "scheduler.alpha.kubernetes.io/node-selector"
	defaultTolerationsAnnotation = "scheduler.alpha.kubernetes.io/defaultTolerations"
)

// NamespaceOnProcessNodes annotates ns so that every pod made in it runs
// on a process node, whoever makes it (a Deployment of an operator, a
// StatefulSet): `kubectl annotate namespace` with the same two annotations
// does it by hand.
func NamespaceOnProcessNodes(ns *corev1.Namespace) {
	if ns.Annotations == nil {
		ns.Annotations = map[string]string{}
	}
	ns.Annotations[nodeSelectorAnnotation] = ProcessNodeLabel + "=true"
	ns.Annotations[defaultTolerationsAnnotation] = `[{"key":"` + ProcessNodeLabel + `","operator":"Equal","value":"true","effect":"NoSchedule"}]`
}

func nodeStatus(kubeletPort int) corev1.NodeStatus {
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return corev1.NodeStatus{
		Capacity:    nodeCapacity,
		Allocatable: nodeCapacity,
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
		},
		// Only an InternalIP: the API server would try to resolve a
		// Hostname address first when it calls the kubelet API.
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodeIP}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(kubeletPort)}},
		NodeInfo: corev1.NodeSystemInfo{
			OperatingSystem: "linux", Architecture: "amd64",
			KubeletVersion: "setpoint-process-node", ContainerRuntimeVersion: "process://",
		},
	}
}

// registerNode creates (or takes back) a node and writes its status.
func registerNode(ctx context.Context, cs kubernetes.Interface, name string, kubeletPort int) error {
	_, err := cs.CoreV1().Nodes().Create(ctx, Node(name), metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("register node %s: %w", name, err)
	}
	// Controllers write to a new Node too; retry on their changes.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status = nodeStatus(kubeletPort)
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("node %s status: %w", name, err)
	}
	return nil
}

// heartbeat renews the node's Lease every 10 s and its Ready condition
// every minute, as a kubelet does, until ctx ends.
func heartbeat(ctx context.Context, cs kubernetes.Interface, name string, kubeletPort int) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	lastStatus := time.Now()
	for {
		renewLease(ctx, cs, name)
		if time.Since(lastStatus) > time.Minute {
			if err := registerNode(ctx, cs, name, kubeletPort); err == nil {
				lastStatus = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func renewLease(ctx context.Context, cs kubernetes.Interface, name string) {
	leases := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, _ = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now},
		}, metav1.CreateOptions{})
		return
	}
	if err != nil {
		return
	}
	l.Spec.RenewTime = &now
	_, _ = leases.Update(ctx, l, metav1.UpdateOptions{})
}
