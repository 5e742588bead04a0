package controlplane

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// kwokNodeAnnotation marks the nodes kwok manages; kwok is started with a
// selector on it, so nodes made by anyone else are left alone.
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// NodeName is the name of the i-th simulated node (0-based).
func NodeName(i int) string { return fmt.Sprintf("kwok-node-%d", i) }

// Node builds a simulated node. It carries no taint of its own, so ordinary
// pods schedule on it without tolerations, as they would on a real cluster;
// kwok fills in its status (Ready, capacity, addresses).
func Node(name string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{kwokNodeAnnotation: "fake"},
			Labels: map[string]string{
				"type":                   "kwok",
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
	}
}

// nodeReady reports whether a node is Ready and free of the taints the
// node-lifecycle controller puts on nodes that are not (yet) Ready.
func nodeReady(n *corev1.Node) bool {
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
			return false
		}
	}
	return ready
}

// registerNodes creates the simulated nodes (keeping ones that exist, as
// after a restart with the same Dir) and waits until all are Ready.
func (c *ControlPlane) registerNodes(ctx context.Context, kwok *process) error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("clientset: %w", err)
	}
	for i := range c.opts.Nodes {
		_, err := cs.CoreV1().Nodes().Create(ctx, Node(NodeName(i)), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node %s: %w", NodeName(i), err)
		}
	}
	return c.waitFor(ctx, kwok, fmt.Sprintf("%d Ready node(s)", c.opts.Nodes), func() error {
		for i := range c.opts.Nodes {
			n, err := cs.CoreV1().Nodes().Get(ctx, NodeName(i), metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !nodeReady(n) {
				return fmt.Errorf("node %s not Ready yet (taints %v)", n.Name, n.Spec.Taints)
			}
		}
		return nil
	})
}
