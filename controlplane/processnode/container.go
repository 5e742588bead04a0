package processnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Where the setpoint binary appears in every process pod: the entrypoint of
// Setpoint's own image.
const setpointInPod = "/setpoint"

// container is one container of a pod: its spec, what the kubelet would
// report of it, and its current process.
type container struct {
	spec corev1.Container
	init bool

	mu       sync.Mutex
	restarts int32
	state    corev1.ContainerState
	last     corev1.ContainerState
	ready    bool
	started  bool
	proc     *exec.Cmd
	pid      int           // the container's main process (host PID)
	runs     int           // how many times it was started
	exited   chan struct{} // closed when proc has been waited for
	killedBy string        // why we ended the process, if we did
	// nextImage is the image a pod update asked for, taken at the next
	// start; respecced says the running process was ended for it.
	nextImage string
	respecced bool
}

func newContainer(spec corev1.Container, init bool) *container {
	return &container{spec: spec, init: init, state: corev1.ContainerState{
		Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"},
	}}
}

func (c *container) status() corev1.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	started := c.started // a copy: the status outlives the lock
	st := corev1.ContainerStatus{
		Name: c.spec.Name, Image: c.spec.Image, ImageID: "process://" + c.spec.Image,
		State: c.state, LastTerminationState: c.last, Ready: c.ready, RestartCount: c.restarts,
		Started: &started,
	}
	if c.state.Running != nil && c.proc != nil {
		st.ContainerID = "process://" + strconv.Itoa(c.pid)
	} else if c.state.Terminated != nil {
		st.ContainerID = c.state.Terminated.ContainerID
	}
	return st
}

func (c *container) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state.Running != nil
}

// respec takes the image a pod update names. It reports whether the
// running process must end for it, as the kubelet restarts a container
// whose definition changed; a container not running takes it at its next
// start.
func (c *container) respec(image string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	want := c.spec.Image
	if c.nextImage != "" {
		want = c.nextImage
	}
	if image == want {
		return false
	}
	c.nextImage = image
	c.respecced = c.state.Running != nil
	return c.respecced
}

// takeImage makes the image asked for the container's own, before a start.
func (c *container) takeImage() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nextImage != "" {
		c.spec.Image, c.nextImage = c.nextImage, ""
	}
}

// startedStale reports whether an update asked for another image while
// this process was starting (respec saw it not running yet): it must end
// too.
func (c *container) startedStale() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nextImage == "" || c.respecced {
		return false
	}
	c.respecced = true
	return true
}

// endedForRespec reports, once, that the process ended because its
// definition changed: it starts again at once, whatever the restart policy
// and with no back-off, as on a kubelet.
func (c *container) endedForRespec() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.respecced
	c.respecced = false
	return r
}

// launch is what a container's process needs from its pod.
type launch struct {
	sandboxPid int
	env        []string
	logPath    string
}

// commandLine is the container's program and arguments, with $(VAR)
// expanded, as run inside the pod. The image is not pulled; a container of
// Setpoint's own image with no command runs /setpoint.
func commandLine(c corev1.Container, env map[string]string, setpoint bool) ([]string, error) {
	cmd := append([]string{}, c.Command...)
	if len(cmd) == 0 {
		if !setpoint || !isSetpointImage(c.Image) {
			return nil, fmt.Errorf("container %s has no command: process nodes run the command on the host and do not pull image %s", c.Name, c.Image)
		}
		cmd = []string{setpointInPod}
	}
	cmd = append(cmd, c.Args...)
	for i := range cmd {
		cmd[i] = expand(cmd[i], env)
	}
	return cmd, nil
}

func isSetpointImage(image string) bool {
	repo := image
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	return repo == "setpoint" || strings.HasSuffix(repo, "/setpoint")
}

func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// processArgs wraps argv so that it runs inside the sandbox: its
// namespaces and root (nsenter, which forks to enter the PID namespace and
// waits for the child, passing on how it ended), as the securityContext's
// user (setpriv) and in the working directory (env --chdir).
func processArgs(pid int, sc *securityIDs, workDir string, argv []string) []string {
	args := []string{"-t", strconv.Itoa(pid), "-m", "-n", "-u", "-i", "-p", "-r", "--"}
	if sc != nil {
		args = append(args, "/usr/bin/setpriv", "--reuid="+strconv.FormatInt(sc.uid, 10),
			"--regid="+strconv.FormatInt(sc.gid, 10), "--clear-groups", "--")
	}
	if workDir == "" {
		workDir = "/"
	}
	args = append(args, "/usr/bin/env", "--chdir="+workDir, "--")
	return append(args, argv...)
}

type securityIDs struct{ uid, gid int64 }

// userOf is the user a container runs as: its securityContext's, else the
// pod's; nil for root.
func userOf(pod *corev1.Pod, c corev1.Container) *securityIDs {
	var uid, gid *int64
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
	}
	if uid == nil && gid == nil {
		return nil
	}
	ids := &securityIDs{}
	if uid != nil {
		ids.uid = *uid
	}
	if gid != nil {
		ids.gid = *gid
	} else {
		ids.gid = ids.uid
	}
	return ids
}

// start runs the container's process. The process waited for is nsenter,
// whose child is the container's own (see mainPid).
func (c *container) start(l launch, argv []string, user *securityIDs, nsenter string) error {
	if err := os.MkdirAll(filepath.Dir(l.logPath), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(l.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	cmd := exec.Command(nsenter, processArgs(l.sandboxPid, user, c.spec.WorkingDir, argv)...)
	cmd.Env = l.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start: %w", err)
	}
	exited := make(chan struct{})
	pid := mainPid(cmd)
	c.mu.Lock()
	if c.runs > 0 {
		c.restarts++
	}
	c.runs++
	c.proc, c.pid, c.exited, c.killedBy = cmd, pid, exited, ""
	c.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
	c.ready, c.started = false, false
	c.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	return nil
}

// wait blocks until the current process exits and records how it ended.
// It returns the exit code.
func (c *container) wait() int32 {
	c.mu.Lock()
	cmd, exited := c.proc, c.exited
	c.mu.Unlock()
	<-exited
	code, signal := exitCode(cmd.ProcessState)
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &corev1.ContainerStateTerminated{
		ExitCode: code, Signal: signal, Reason: "Completed", FinishedAt: metav1.Now(),
		ContainerID: "process://" + strconv.Itoa(c.pid),
	}
	if c.state.Running != nil {
		t.StartedAt = c.state.Running.StartedAt
	}
	if code != 0 {
		t.Reason = "Error"
	}
	if c.killedBy != "" {
		t.Message = c.killedBy
	}
	c.state = corev1.ContainerState{Terminated: t}
	if c.respecced {
		// It starts again at once, as a kubelet does in the same sync:
		// never a terminated container (a pod of restartPolicy Never
		// would be reported Succeeded, a phase there is no way back from).
		c.last = c.state
		c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	}
	c.ready = false
	return code
}

func exitCode(ps *os.ProcessState) (code, signal int32) {
	if ps == nil {
		return 128, 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int32(ws.Signal()), int32(ws.Signal())
	}
	return int32(ps.ExitCode()), 0
}

// backingOff records the process's end as the last state while the
// restart waits, as the kubelet's CrashLoopBackOff does. The restart count
// goes up when the next run starts.
func (c *container) backingOff(delay time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = c.state
	c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
		Reason:  "CrashLoopBackOff",
		Message: fmt.Sprintf("back-off %s restarting failed container=%s", delay, c.spec.Name),
	}}
}

func (c *container) setWaiting(reason, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
}

// kill ends the running process: SIGTERM to its process group, SIGKILL
// after grace. why is kept in the terminated state's message.
func (c *container) kill(why string, grace time.Duration) {
	c.mu.Lock()
	cmd, pid, exited := c.proc, c.pid, c.exited
	if c.state.Running == nil || cmd == nil {
		c.mu.Unlock()
		return
	}
	if c.killedBy == "" {
		c.killedBy = why
	}
	c.mu.Unlock()
	// As a container runtime does: SIGTERM to the container's main process
	// only (Celery's pool children must not get it), SIGKILL to all.
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-exited:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// mainPid is the container's main process (host PID): nsenter's child,
// once it has forked; nsenter itself before.
func mainPid(cmd *exec.Cmd) int {
	pid := cmd.Process.Pid
	for range 50 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err != nil {
			break
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			if child, err := strconv.Atoi(f[0]); err == nil {
				return child
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return pid
}

func (c *container) logPath(dir string, restarts int32) string {
	return filepath.Join(dir, "logs", c.spec.Name, strconv.Itoa(int(restarts))+".log")
}

var errStopped = errors.New("stopped")

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return errStopped
	case <-t.C:
		return nil
	}
}
