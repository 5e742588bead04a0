package processnode

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// respec asks for a restart only when a running container's image really
// changes, and a container not running takes the image at its next start.
func TestRespec(t *testing.T) {
	running := func() *container {
		c := newContainer(corev1.Container{Name: "main", Image: "a"}, false)
		c.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
		return c
	}
	c := running()
	if c.respec("a") {
		t.Error("the same image restarted the container")
	}
	if !c.respec("b") {
		t.Fatal("a new image did not restart a running container")
	}
	if c.respec("b") {
		t.Error("the image asked for twice restarted it twice")
	}
	if !c.endedForRespec() || c.endedForRespec() {
		t.Error("endedForRespec must say yes once")
	}
	c.takeImage()
	if c.spec.Image != "b" || c.nextImage != "" {
		t.Errorf("after takeImage: image %q, next %q", c.spec.Image, c.nextImage)
	}

	waiting := newContainer(corev1.Container{Name: "main", Image: "a"}, false)
	if waiting.respec("b") {
		t.Error("a container not running was restarted")
	}
	if !waiting.startedStale() || waiting.startedStale() {
		t.Error("a process started before it took the new image must end, once")
	}
}
