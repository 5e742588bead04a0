package processnode

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// nodeIP is every process node's address as the API server sees it.
const nodeIP = "127.0.0.1"

func (w *podWorker) setCondition(t corev1.PodConditionType, ok bool, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.setConditionLocked(t, ok, reason)
}

func (w *podWorker) setConditionLocked(t corev1.PodConditionType, ok bool, reason string) {
	s := corev1.ConditionFalse
	if ok {
		s = corev1.ConditionTrue
	}
	if c, found := w.conds[t]; found && c.Status == s && c.Reason == reason {
		return
	}
	w.conds[t] = corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: metav1.Now()}
}

// status computes what the kubelet would report now.
func (w *podWorker) status() corev1.PodStatus {
	pod := w.current()
	var st corev1.PodStatus
	for _, c := range w.inits {
		st.InitContainerStatuses = append(st.InitContainerStatuses, c.status())
	}
	for _, c := range w.ctrs {
		st.ContainerStatuses = append(st.ContainerStatuses, c.status())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	st.HostIP = nodeIP
	st.HostIPs = []corev1.HostIP{{IP: nodeIP}}
	if w.sb != nil {
		st.PodIP = w.ip.String()
		st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	}
	st.StartTime = w.startTime
	st.Phase = phase(pod, w.initDone, st)
	allReady := len(st.ContainerStatuses) > 0
	for _, c := range st.ContainerStatuses {
		allReady = allReady && c.Ready
	}
	if _, ok := w.conds[corev1.PodInitialized]; !ok {
		w.setConditionLocked(corev1.PodInitialized, len(w.inits) == 0, "")
	}
	if _, ok := w.conds[corev1.PodReadyToStartContainers]; !ok {
		w.setConditionLocked(corev1.PodReadyToStartContainers, false, "")
	}
	reason := ""
	if !allReady {
		reason = "ContainersNotReady"
	}
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		reason = "PodCompleted"
	}
	w.setConditionLocked(corev1.ContainersReady, allReady, reason)
	w.setConditionLocked(corev1.PodReady, allReady, reason)
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			st.Conditions = append(st.Conditions, c)
		}
	}
	for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		st.Conditions = append(st.Conditions, w.conds[t])
	}
	return st
}

// phase follows the kubelet's rules: Pending until the containers start,
// Succeeded or Failed when all have ended and none will restart.
func phase(pod *corev1.Pod, initDone bool, st corev1.PodStatus) corev1.PodPhase {
	policy := pod.Spec.RestartPolicy
	if !initDone {
		for _, c := range st.InitContainerStatuses {
			if t := c.State.Terminated; t != nil && t.ExitCode != 0 && policy == corev1.RestartPolicyNever {
				return corev1.PodFailed
			}
		}
		return corev1.PodPending
	}
	running, waiting, failed, ended := 0, 0, 0, 0
	for _, c := range st.ContainerStatuses {
		switch {
		case c.State.Running != nil:
			running++
		case c.State.Terminated != nil:
			ended++
			if c.State.Terminated.ExitCode != 0 {
				failed++
			}
		default:
			waiting++
			if c.RestartCount > 0 || c.LastTerminationState.Terminated != nil {
				running++ // restarting counts as running, as in the kubelet
			}
		}
	}
	switch {
	case running > 0:
		return corev1.PodRunning
	case ended == len(st.ContainerStatuses) && ended > 0 && policy == corev1.RestartPolicyNever:
		if failed > 0 {
			return corev1.PodFailed
		}
		return corev1.PodSucceeded
	case ended == len(st.ContainerStatuses) && ended > 0 && policy == corev1.RestartPolicyOnFailure && failed == 0:
		return corev1.PodSucceeded
	case ended > 0 && waiting == 0:
		return corev1.PodRunning
	}
	return corev1.PodPending
}

// syncStatus writes the pod's status whenever it changes, until ctx ends,
// and once more after that.
func (w *podWorker) syncStatus(ctx context.Context) {
	var last *corev1.PodStatus
	flush := func() {
		st := w.status()
		if last != nil && equality.Semantic.DeepEqual(*last, st) {
			return
		}
		if w.writeStatus(st) {
			last = &st
		}
	}
	retry := time.NewTicker(2 * time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			flush()
			return
		case <-w.dirty:
		case <-retry.C:
		}
		flush()
	}
}

func (w *podWorker) writeStatus(st corev1.PodStatus) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods := w.rt.cs.CoreV1().Pods(w.current().Namespace)
	for range 5 {
		pod, err := pods.Get(ctx, w.current().Name, metav1.GetOptions{})
		if err != nil || pod.UID != w.current().UID {
			return apierrors.IsNotFound(err)
		}
		pod.Status = st
		_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{FieldManager: "setpoint-process-node"})
		if err == nil {
			return true
		}
		if !apierrors.IsConflict(err) {
			return false
		}
	}
	return false
}
