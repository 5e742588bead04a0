package processnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podWorker does for one pod what the kubelet's pod worker does: set up the
// sandbox, run init containers in order, keep the containers running as
// the restart policy says, and take it all down when the pod is deleted.
type podWorker struct {
	rt  *Runtime
	dir string

	mu        sync.Mutex
	pod       *corev1.Pod // the latest seen
	ip        netip.Addr
	sb        *sandbox
	setupMsg  string // why the sandbox is not there yet
	inits     []*container
	ctrs      []*container
	initDone  bool
	startTime *metav1.Time
	conds     map[corev1.PodConditionType]corev1.PodCondition

	deleted chan struct{} // closed when the pod is being deleted
	delOnce sync.Once
	done    chan struct{}
	dirty   chan struct{}
}

func newPodWorker(rt *Runtime, pod *corev1.Pod) *podWorker {
	w := &podWorker{
		rt: rt, pod: pod, dir: filepath.Join(rt.dir, "pods", string(pod.UID)),
		deleted: make(chan struct{}), done: make(chan struct{}), dirty: make(chan struct{}, 1),
		conds: map[corev1.PodConditionType]corev1.PodCondition{},
	}
	for _, c := range pod.Spec.InitContainers {
		w.inits = append(w.inits, newContainer(c, true))
	}
	for _, c := range pod.Spec.Containers {
		w.ctrs = append(w.ctrs, newContainer(c, false))
	}
	return w
}

// update takes a newer version of the pod; a deletion starts the shutdown.
func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	w.pod = pod
	w.mu.Unlock()
	if pod.DeletionTimestamp != nil {
		w.delOnce.Do(func() { close(w.deleted) })
		return
	}
	w.respec(pod)
}

// respec restarts the containers whose image the pod now names otherwise
// (the one field of a running container an update may change), with their
// preStop hooks and grace period, as the kubelet does.
func (w *podWorker) respec(pod *corev1.Pod) {
	for i, c := range w.ctrs {
		if i >= len(pod.Spec.Containers) || pod.Spec.Containers[i].Name != c.spec.Name {
			continue
		}
		if !c.respec(pod.Spec.Containers[i].Image) {
			continue
		}
		w.rt.event(pod, corev1.EventTypeNormal, "Killing", fmt.Sprintf("Container %s definition changed, will be restarted", c.spec.Name))
		go func() {
			deadline := time.Now().Add(w.gracePeriod())
			w.preStop(c, deadline)
			c.kill("definition changed", max(time.Until(deadline), 0))
		}()
	}
}

func (w *podWorker) current() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

func (w *podWorker) changed() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

// run is the pod's life. stop ends it without deleting the pod (the plane
// is stopping); a deletion ends it and removes the pod from the API.
func (w *podWorker) run(stop context.Context) {
	defer close(w.done)
	statusDone := make(chan struct{})
	statusCtx, stopStatus := context.WithCancel(context.Background())
	go func() { defer close(statusDone); w.syncStatus(statusCtx) }()

	ctx, cancel := context.WithCancel(stop)
	go func() {
		select {
		case <-w.deleted:
		case <-ctx.Done():
		}
		cancel()
	}()
	// The containers are ended from here, while their supervisors still
	// wait for them, so each end is recorded as it happens.
	killed := make(chan struct{})
	go func() {
		<-ctx.Done()
		w.terminate(stop.Err() == nil)
		close(killed)
	}()
	w.changed()
	if err := w.setUp(ctx); err == nil {
		w.runContainers(ctx)
	}
	// A pod whose containers all ended stays, as on a kubelet, until it is
	// deleted or the plane stops.
	select {
	case <-w.deleted:
	case <-stop.Done():
	}
	deleting := stop.Err() == nil
	cancel()
	<-killed
	w.tearDown()
	w.changed()
	stopStatus()
	<-statusDone
	if deleting {
		w.rt.forget(w.current())
	}
}

// setUp makes the pod's directory, volumes, address and sandbox, retrying
// what is not ready yet (a claim being bound, a missing ConfigMap).
func (w *podWorker) setUp(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := w.setUpOnce(ctx)
		if err == nil {
			w.setCondition(corev1.PodReadyToStartContainers, true, "")
			return nil
		}
		w.mu.Lock()
		w.setupMsg = err.Error()
		w.mu.Unlock()
		for _, c := range append(append([]*container{}, w.inits...), w.ctrs...) {
			c.setWaiting("ContainerCreating", err.Error())
		}
		w.changed()
		if !errors.Is(err, errNotReady) {
			w.rt.event(w.current(), corev1.EventTypeWarning, "FailedSetup", err.Error())
		}
		if sleepCtx(ctx, backoff(time.Second, attempt, 10*time.Second)) != nil {
			return errStopped
		}
	}
}

func (w *podWorker) setUpOnce(ctx context.Context) error {
	pod := w.current()
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	binds, err := prepareVolumes(ctx, w.rt.cs, pod, w.dir)
	if err != nil {
		return err
	}
	hostNet := pod.Spec.HostNetwork
	if hostNet {
		// The host's network, its names and resolv.conf, as a kubelet gives.
		w.ip = netip.MustParseAddr(nodeIP)
	} else {
		if !w.ip.IsValid() {
			if w.ip, err = w.rt.net.allocate(); err != nil {
				return err
			}
		}
		etc, err := writeEtc(w.dir, pod, w.ip)
		if err != nil {
			return err
		}
		binds = append(etc, binds...)
	}
	if w.rt.setpoint != "" {
		binds = append(binds, bind{Source: w.rt.setpoint, Target: setpointInPod, ReadOnly: true, File: true})
	}
	for _, f := range w.rt.imageFiles {
		binds = append(binds, bind{Source: f, Target: "/" + filepath.Base(f), ReadOnly: true, File: true})
	}
	sb, err := startSandbox(podView{Dir: w.dir, Hostname: hostname(pod), Binds: binds, HostMounts: w.rt.hostMounts, HostNetwork: hostNet})
	if err != nil {
		return err
	}
	if !hostNet {
		if err := w.rt.net.attach(sb.pid(), w.ip); err != nil {
			sb.stop()
			return err
		}
	}
	w.mu.Lock()
	w.sb, w.setupMsg = sb, ""
	now := metav1.Now()
	w.startTime = &now
	w.mu.Unlock()
	return nil
}

// runContainers runs the init containers to completion, then keeps the
// containers running until ctx ends or, for a pod that does not restart
// them, until every one has ended. Sidecars (init containers with
// restartPolicy Always) start in their turn, run beside the containers
// and are stopped after them.
func (w *podWorker) runContainers(ctx context.Context) {
	sidecarCtx, stopSidecars := context.WithCancel(ctx)
	var sidecars sync.WaitGroup
	defer func() {
		stopSidecars()
		// The containers ended by themselves: so do the sidecars. On a
		// deletion terminate stops them, after the containers.
		if ctx.Err() == nil {
			w.killAll(w.inits, "", w.gracePeriod())
		}
		sidecars.Wait()
	}()
	for _, c := range w.inits {
		if isSidecar(c.spec) {
			sidecars.Add(1)
			go func() { defer sidecars.Done(); w.supervise(sidecarCtx, c, corev1.RestartPolicyAlways) }()
			if !waitStarted(ctx, c) {
				return
			}
			continue
		}
		if !w.runInit(ctx, c) {
			return
		}
	}
	w.mu.Lock()
	w.initDone = true
	w.mu.Unlock()
	w.setCondition(corev1.PodInitialized, true, "")
	var wg sync.WaitGroup
	for _, c := range w.ctrs {
		wg.Add(1)
		go func() { defer wg.Done(); w.supervise(ctx, c, w.current().Spec.RestartPolicy) }()
	}
	wg.Wait()
}

func isSidecar(c corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// waitStarted waits until a sidecar has started (its startup probe, if
// any, passed), as the kubelet does before the next init container.
func waitStarted(ctx context.Context, c *container) bool {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		c.mu.Lock()
		started := c.started && c.state.Running != nil
		c.mu.Unlock()
		if started {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// runInit runs an init container until it succeeds; it reports whether
// the pod may go on.
func (w *podWorker) runInit(ctx context.Context, c *container) bool {
	for failures := 0; ; failures++ {
		code, err := w.runOnce(ctx, c)
		if ctx.Err() != nil {
			return false
		}
		if err == nil && code == 0 {
			return true
		}
		if w.current().Spec.RestartPolicy == corev1.RestartPolicyNever {
			return false
		}
		if !w.backOff(ctx, c, failures) {
			return false
		}
	}
}

// supervise keeps one container running as policy says.
func (w *podWorker) supervise(ctx context.Context, c *container, policy corev1.RestartPolicy) {
	failures := 0
	for {
		started := time.Now()
		code, err := w.runOnce(ctx, c)
		if ctx.Err() != nil {
			return
		}
		if c.endedForRespec() {
			continue
		}
		if policy == corev1.RestartPolicyNever || (policy == corev1.RestartPolicyOnFailure && err == nil && code == 0) {
			return
		}
		if time.Since(started) > 10*time.Minute {
			failures = 0
		}
		if !w.backOff(ctx, c, failures) {
			return
		}
		failures++
	}
}

// backOff waits before a restart as the kubelet does: 10 s doubling up to
// 5 minutes (Options.RestartBackoff sets the first step).
func (w *podWorker) backOff(ctx context.Context, c *container, failures int) bool {
	d := backoff(w.rt.restartBackoff, failures, 5*time.Minute)
	c.backingOff(d)
	w.changed()
	return sleepCtx(ctx, d) == nil
}

func backoff(base time.Duration, n int, max time.Duration) time.Duration {
	d := base
	for range n {
		d *= 2
		if d >= max {
			return max
		}
	}
	return d
}

// runOnce starts c, runs its probes and post-start work, and waits for it
// to end. A start that fails (no such command) counts as exit code 128.
func (w *podWorker) runOnce(ctx context.Context, c *container) (int32, error) {
	pod := w.current()
	c.takeImage()
	l, argv, err := w.prepareLaunch(ctx, pod, c)
	if ctx.Err() != nil {
		return 0, errStopped
	}
	if err == nil {
		err = c.start(l, argv, userOf(pod, c.spec), w.rt.nsenter)
	}
	if err != nil {
		c.setWaiting("CreateContainerConfigError", err.Error())
		w.rt.event(pod, corev1.EventTypeWarning, "Failed", fmt.Sprintf("container %s: %v", c.spec.Name, err))
		w.changed()
		return 128, err
	}
	w.changed()
	if ctx.Err() != nil {
		// Stopped while starting: terminate may have looked before this
		// process existed, so it is ended here.
		c.kill("", w.gracePeriod())
	}
	if c.startedStale() {
		go c.kill("definition changed", w.gracePeriod())
	}
	probeCtx, stopProbes := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.probe(probeCtx, c) }()
	code := c.wait()
	stopProbes()
	<-done
	w.changed()
	return code, nil
}

func (w *podWorker) prepareLaunch(ctx context.Context, pod *corev1.Pod, c *container) (launch, []string, error) {
	w.mu.Lock()
	sb, ip := w.sb, w.ip
	w.mu.Unlock()
	withIP := pod.DeepCopy()
	withIP.Status.PodIP, withIP.Status.HostIP = ip.String(), nodeIP
	withIP.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	env, err := containerEnv(withIP, &c.spec, serviceEnv(pod, w.rt.services()), apiLookup{ctx: ctx, cs: w.rt.cs, ns: pod.Namespace})
	if err != nil {
		return launch{}, nil, err
	}
	argv, err := commandLine(c.spec, envMap(env), w.rt.setpoint != "")
	if err != nil {
		return launch{}, nil, err
	}
	c.mu.Lock()
	run := c.runs
	c.mu.Unlock()
	return launch{sandboxPid: sb.pid(), env: env, logPath: c.logPath(w.dir, int32(run))}, argv, nil
}

// terminate ends every running container: preStop hooks, then SIGTERM and
// SIGKILL after the grace period; sidecars go after the containers. The
// plane's own stop is quicker.
func (w *podWorker) terminate(deleting bool) {
	grace := w.gracePeriod()
	if !deleting {
		grace = min(grace, 2*time.Second)
	}
	deadline := time.Now().Add(grace)
	stop := func(cs []*container) {
		var wg sync.WaitGroup
		for _, c := range cs {
			if !c.running() {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if deleting {
					w.preStop(c, deadline)
				}
				c.kill("", max(time.Until(deadline), 0))
			}()
		}
		wg.Wait()
	}
	stop(w.ctrs)
	stop(w.inits)
}

// killAll ends the running containers of cs, without hooks.
func (w *podWorker) killAll(cs []*container, why string, grace time.Duration) {
	var wg sync.WaitGroup
	for _, c := range cs {
		if c.running() {
			wg.Add(1)
			go func() { defer wg.Done(); c.kill(why, grace) }()
		}
	}
	wg.Wait()
}

// gracePeriod is the pod's terminationGracePeriodSeconds, or the one its
// deletion asked for.
func (w *podWorker) gracePeriod() time.Duration {
	pod := w.current()
	grace := 30 * time.Second
	if s := pod.Spec.TerminationGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	if s := pod.DeletionGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	return grace
}

func (w *podWorker) tearDown() {
	w.mu.Lock()
	sb, ip := w.sb, w.ip
	w.sb = nil
	w.mu.Unlock()
	if sb != nil {
		sb.stop()
	}
	if ip.IsValid() && !w.current().Spec.HostNetwork {
		w.rt.net.release(ip)
	}
}

// removeDir deletes the pod's directory (logs, emptyDirs) once the pod is
// gone from the API.
func (w *podWorker) removeDir() { _ = os.RemoveAll(w.dir) }

// writeEtc writes the pod's resolv.conf, hosts and hostname, bound over the
// host's in the pod's view.
func writeEtc(dir string, pod *corev1.Pod, ip netip.Addr) ([]bind, error) {
	etc := filepath.Join(dir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return nil, err
	}
	h := hostname(pod)
	names := h
	if pod.Spec.Subdomain != "" {
		names = fmt.Sprintf("%s.%s.%s.svc.%s %s", h, pod.Spec.Subdomain, pod.Namespace, clusterDomain, h)
	}
	files := map[string]string{
		"resolv.conf": fmt.Sprintf("nameserver %s\nsearch %s.svc.%s svc.%s %s\noptions ndots:5\n",
			dnsServiceIP, pod.Namespace, clusterDomain, clusterDomain, clusterDomain),
		"hosts":    fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", ip, names),
		"hostname": h + "\n",
	}
	var binds []bind
	for _, name := range []string{"resolv.conf", "hosts", "hostname"} {
		p := filepath.Join(etc, name)
		if err := os.WriteFile(p, []byte(files[name]), 0o644); err != nil {
			return nil, err
		}
		binds = append(binds, bind{Source: p, Target: "/etc/" + name, File: true})
	}
	return binds, nil
}

func podKey(pod *corev1.Pod) string { return pod.Namespace + "/" + pod.Name }

func trimMsg(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 1024 {
		s = s[:1024]
	}
	return s
}

// dial connects to addr as seen from the pod's network: the plane's, or
// the host's for a hostNetwork pod.
func (w *podWorker) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if w.current().Spec.HostNetwork {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return w.rt.net.dial(ctx, network, addr)
}
