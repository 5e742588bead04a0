package postgres

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
	"github.com/setpoint-dev/setpoint/operators/postgres/agent"
)

// PhaseUpdating: a rolling update of the image is under way; the primary
// serves.
const PhaseUpdating = "RollingUpdate"

// carryImages keeps each instance's image across looks (the statuses are
// made afresh from the reports): the one recorded, else the one its pod
// was made with. Empty means spec.imageName.
func carryImages(o Observation, st *v1alpha1.PostgresClusterStatus) {
	before := map[string]string{}
	for _, in := range o.Cluster.Status.Instances {
		before[in.Name] = in.Image
	}
	for i := range st.Instances {
		in := &st.Instances[i]
		if in.Image == "" {
			in.Image = before[in.Name]
		}
		if p := o.Pods[in.Name]; in.Image == "" && p != nil {
			in.Image = podImage(p)
		}
	}
}

// rollImage moves the instances to spec.imageName one at a time. A
// replica's pod gets the new image (the kubelet restarts its container,
// keeping the pod and its volume) and must be ready on it before the
// next one goes; the primary goes last, by a switchover to an updated
// replica, and is then restarted as a replica. A lone primary restarts
// in place: there is no one to hand over to. Nothing moves while an
// instance is not ready or the primary is changing.
func rollImage(o Observation, st *v1alpha1.PostgresClusterStatus, d *Decision) {
	want := o.Cluster.Spec.ImageName
	abandoned := ""
	if ru := st.RollingUpdate; ru != nil {
		// Waiting for the restart, unless the spec moved on meanwhile (a
		// rollback of an image that does not start, say).
		if imageOf(st, ru.Instance) == want && !restarted(o, st, ru) {
			if st.Phase == PhaseHealthy {
				st.Phase = PhaseUpdating
			}
			return
		}
		if imageOf(st, ru.Instance) != want {
			abandoned = ru.Instance
		}
		st.RollingUpdate = nil
	}
	stale := staleInstances(st, want)
	if len(stale) == 0 || st.Phase != PhaseHealthy {
		return
	}
	st.Phase = PhaseUpdating
	next := stale[0]
	if abandoned != "" {
		// Its image changed again before it came back: it goes first,
		// ready or not (it may never start on the image it was given).
		next = abandoned
	}
	for _, in := range st.Instances {
		if !in.Ready && in.Name != abandoned {
			return
		}
	}
	if next == st.CurrentPrimary && len(st.Instances) > 1 {
		updated := map[string]*agent.Report{}
		for _, in := range st.Instances {
			if r := o.Reports[in.Name]; in.Name != next && in.Image == want && r != nil && r.Ready {
				updated[in.Name] = r
			}
		}
		switchTo(o, st, d, updated, "ImageSwitchover", "to move the primary to image "+want)
		return
	}
	p := o.Pods[next]
	if p == nil || d.Event != nil {
		// A pod being made again takes the image it is recorded with; a
		// look that has news (a new primary) tells it first.
		return
	}
	setImage(st, next, want)
	st.RollingUpdate = &v1alpha1.RollingUpdate{Instance: next, PodUID: string(p.UID), RestartCount: postgresRestarts(p)}
	d.Event = &Event{corev1.EventTypeNormal, "RollingUpdate",
		fmt.Sprintf("restarting %s on image %s (%d of %d instances still to update)", next, want, len(stale), len(st.Instances))}
}

// staleInstances are the instances whose pods run another image than
// want, replicas first (by name), the current primary last.
func staleInstances(st *v1alpha1.PostgresClusterStatus, want string) []string {
	var out []string
	primary := false
	for _, in := range st.Instances {
		if in.Image == "" || in.Image == want {
			continue
		}
		if in.Name == st.CurrentPrimary {
			primary = true
			continue
		}
		out = append(out, in.Name)
	}
	if primary {
		out = append(out, st.CurrentPrimary)
	}
	return out
}

// restarted: the instance's pod names its new image, its postgres
// container restarted since (or the pod is a new one) and its agent says
// it is ready.
func restarted(o Observation, st *v1alpha1.PostgresClusterStatus, ru *v1alpha1.RollingUpdate) bool {
	p := o.Pods[ru.Instance]
	if p == nil || podImage(p) != imageOf(st, ru.Instance) {
		return false
	}
	if string(p.UID) == ru.PodUID && postgresRestarts(p) <= ru.RestartCount {
		return false
	}
	r := o.Reports[ru.Instance]
	return r != nil && r.Ready
}

// lonePrimaryRestarting: a one-instance cluster's primary is down because
// the rolling update restarts it, which is no reason for alarm.
func lonePrimaryRestarting(st *v1alpha1.PostgresClusterStatus) bool {
	ru := st.RollingUpdate
	return ru != nil && len(st.Instances) == 1 && ru.Instance == st.CurrentPrimary
}

func imageOf(st *v1alpha1.PostgresClusterStatus, instance string) string {
	for _, in := range st.Instances {
		if in.Name == instance {
			return in.Image
		}
	}
	return ""
}

func setImage(st *v1alpha1.PostgresClusterStatus, instance, image string) {
	for i := range st.Instances {
		if st.Instances[i].Name == instance {
			st.Instances[i].Image = image
		}
	}
}

func podImage(p *corev1.Pod) string {
	for _, c := range p.Spec.Containers {
		if c.Name == "postgres" {
			return c.Image
		}
	}
	return ""
}

func postgresRestarts(p *corev1.Pod) int32 {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "postgres" {
			return cs.RestartCount
		}
	}
	return 0
}

// rollingMessage says where a rolling update stands, for the conditions.
func rollingMessage(c *v1alpha1.PostgresCluster, st *v1alpha1.PostgresClusterStatus, waiting string) string {
	togo := len(staleInstances(st, c.Spec.ImageName))
	if st.RollingUpdate != nil {
		togo++
	}
	msg := fmt.Sprintf("rolling update to image %s: %d of %d instances to go", c.Spec.ImageName, togo, len(st.Instances))
	if ru := st.RollingUpdate; ru != nil {
		msg += "; restarting " + ru.Instance
	}
	if waiting != "" {
		msg += "; waiting for " + waiting
	}
	return msg
}
