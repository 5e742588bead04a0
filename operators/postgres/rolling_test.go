package postgres

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
	"github.com/setpoint-dev/setpoint/operators/postgres/agent"
)

// world is what a rollout test's looks see: the pods as the kubelet keeps
// them and the agents' reports.
type world struct {
	pods    map[string]*corev1.Pod
	reports map[string]*agent.Report
}

func newWorld(image string, names ...string) *world {
	w := &world{pods: map[string]*corev1.Pod{}, reports: map[string]*agent.Report{}}
	for _, n := range names {
		w.pods[n] = &corev1.Pod{}
		w.pods[n].UID = types.UID("uid-" + n)
		w.pods[n].Spec.Containers = []corev1.Container{{Name: "postgres", Image: image}}
		w.pods[n].Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "postgres"}}
		w.reports[n] = replica("0/3000000", "0/3000000")
	}
	return w
}

// apply does what the children pass and the kubelet would: each pod takes
// the image Pod gives it, and a pod whose image changed restarts, its
// agent gone until finish.
func (w *world) apply(c *v1alpha1.PostgresCluster, finish bool) {
	for n, p := range w.pods {
		if img := InstanceImage(c, n); p.Spec.Containers[0].Image != img {
			p.Spec.Containers[0].Image = img
			w.reports[n] = nil
		}
		if finish && w.reports[n] == nil {
			p.Status.ContainerStatuses[0].RestartCount++
			w.reports[n] = replica("0/3000000", "0/3000000")
		}
	}
}

// look is one look of the operator, its status written back.
func (w *world) look(t *testing.T, c *v1alpha1.PostgresCluster) Decision {
	t.Helper()
	for n, r := range w.reports {
		if r != nil {
			r.Role, r.Leader = "replica", false
			if n == c.Status.TargetPrimary {
				r.Role, r.Leader = "primary", true // a switchover completes at once
			}
		}
	}
	d := Decide(Observation{Cluster: c, Reports: w.reports, Pods: w.pods, Now: now})
	c.Status = d.Status
	return d
}

// A rolling update restarts the replicas one at a time, each once ready
// on the new image, then moves the primary by a switchover, then restarts
// the old primary; no instance restarts twice and the primary never
// restarts while it is primary.
func TestRollingUpdateOrder(t *testing.T) {
	c := pgCluster(3, primaryIs("pg-1"))
	w := newWorld("postgres:15", "pg-1", "pg-2", "pg-3")
	w.look(t, c)
	for _, in := range c.Status.Instances {
		if in.Image != "postgres:15" {
			t.Fatalf("%s: image %q, want the pod's recorded", in.Name, in.Image)
		}
	}
	c.Spec.ImageName = "postgres:15.99"
	var restarts []string
	var events []string
	for i := 0; i < 20; i++ {
		primaryBefore := c.Status.CurrentPrimary
		d := w.look(t, c)
		if d.Event != nil {
			events = append(events, d.Event.Reason)
		}
		// Half the looks see a restart under way, half see it done.
		for n, p := range w.pods {
			if p.Spec.Containers[0].Image != InstanceImage(c, n) {
				if n == primaryBefore && n == c.Status.CurrentPrimary {
					t.Fatalf("look %d: the primary %s is given the new image while primary", i, n)
				}
				restarts = append(restarts, n)
			}
		}
		w.apply(c, i%2 == 1)
		if c.Status.Phase == PhaseHealthy && len(staleInstances(&c.Status, c.Spec.ImageName)) == 0 && c.Status.RollingUpdate == nil {
			break
		}
	}
	if want := []string{"pg-2", "pg-3", "pg-1"}; !equalStrings(restarts, want) {
		t.Errorf("restarted %v, want %v", restarts, want)
	}
	if c.Status.CurrentPrimary == "pg-1" || c.Status.Phase != PhaseHealthy {
		t.Errorf("primary %s phase %s, want another primary and Healthy", c.Status.CurrentPrimary, c.Status.Phase)
	}
	for _, in := range c.Status.Instances {
		if in.Image != "postgres:15.99" {
			t.Errorf("%s on %s", in.Name, in.Image)
		}
	}
	if want := []string{"RollingUpdate", "RollingUpdate", "ImageSwitchover", "PrimaryChanged", "RollingUpdate"}; !equalStrings(events, want) {
		t.Errorf("events %v, want %v", events, want)
	}
}

// Nothing moves while an instance is not ready; a replica that never
// comes back on the new image holds the rollout (the primary is never
// touched), and setting the image back restarts it on the old one.
func TestRollingUpdateHoldsAndRollsBack(t *testing.T) {
	c := pgCluster(2, primaryIs("pg-1"))
	w := newWorld("postgres:15", "pg-1", "pg-2")
	w.look(t, c)
	c.Spec.ImageName = "postgres:16"
	w.reports["pg-2"].Ready = false
	if w.look(t, c); c.Status.RollingUpdate != nil {
		t.Fatalf("a rollout began with a replica not ready: %+v", c.Status.RollingUpdate)
	}
	w.reports["pg-2"].Ready = true
	w.look(t, c)
	if ru := c.Status.RollingUpdate; ru == nil || ru.Instance != "pg-2" || c.Status.Phase != PhaseUpdating {
		t.Fatalf("rolling update %+v phase %s, want pg-2 restarting", ru, c.Status.Phase)
	}
	w.apply(c, true)
	w.reports["pg-2"] = &agent.Report{Role: "down", Message: "data directory is PostgreSQL 15, the binaries 16"}
	w.pods["pg-2"].Status.ContainerStatuses[0].RestartCount++
	for range 3 {
		w.look(t, c)
	}
	if c.Status.TargetPrimary != "pg-1" || c.Status.RollingUpdate == nil || imageOf(&c.Status, "pg-1") != "postgres:15" {
		t.Fatalf("the rollout went past a replica that does not start: %+v", c.Status)
	}
	c.Spec.ImageName = "postgres:15"
	w.look(t, c)
	if ru := c.Status.RollingUpdate; ru == nil || ru.Instance != "pg-2" || imageOf(&c.Status, "pg-2") != "postgres:15" {
		t.Fatalf("rollback: %+v, want pg-2 restarting on postgres:15", c.Status)
	}
	w.reports["pg-2"] = nil
	w.apply(c, true)
	w.look(t, c)
	if c.Status.Phase != PhaseHealthy || c.Status.RollingUpdate != nil || c.Status.CurrentPrimary != "pg-1" {
		t.Errorf("after the rollback: phase %s, rolling %+v, primary %s", c.Status.Phase, c.Status.RollingUpdate, c.Status.CurrentPrimary)
	}
}

// A lone primary restarts in place, and its restart is no failover.
func TestRollingUpdateOfALonePrimary(t *testing.T) {
	c := pgCluster(1, primaryIs("pg-1"))
	w := newWorld("postgres:15", "pg-1")
	w.look(t, c)
	c.Spec.ImageName = "postgres:15.99"
	w.look(t, c)
	if ru := c.Status.RollingUpdate; ru == nil || ru.Instance != "pg-1" {
		t.Fatalf("rolling update %+v, want pg-1 restarting", ru)
	}
	w.apply(c, false)
	d := w.look(t, c)
	if c.Status.Phase != PhaseUpdating || c.Status.PrimaryUnhealthySince != nil || d.Event != nil {
		t.Errorf("phase %s, unhealthy since %v, event %+v: want RollingUpdate and no alarm", c.Status.Phase, c.Status.PrimaryUnhealthySince, d.Event)
	}
	w.pods["pg-1"].Status.ContainerStatuses[0].RestartCount++
	w.reports["pg-1"] = primary("0/3000000")
	w.look(t, c)
	if c.Status.Phase != PhaseHealthy || c.Status.RollingUpdate != nil {
		t.Errorf("phase %s rolling %+v, want Healthy", c.Status.Phase, c.Status.RollingUpdate)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
