package processnode

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probe runs c's startup, readiness and liveness probes while it runs, as
// the kubelet does: startup first, readiness and liveness after it; a
// container without a readiness probe is ready once started; liveness
// failures end the process so that the restart policy takes over.
func (w *podWorker) probe(ctx context.Context, c *container) {
	spec := c.spec
	if spec.StartupProbe != nil && !w.untilStarted(ctx, c, spec.StartupProbe) {
		return
	}
	c.mu.Lock()
	c.started = true
	c.ready = spec.ReadinessProbe == nil
	c.mu.Unlock()
	w.changed()
	if spec.ReadinessProbe != nil {
		go w.probeLoop(ctx, c, spec.ReadinessProbe, func(ok bool) {
			c.mu.Lock()
			changed := c.ready != ok
			c.ready = ok
			c.mu.Unlock()
			if changed {
				w.changed()
			}
		})
	}
	if spec.LivenessProbe != nil {
		go w.probeLoop(ctx, c, spec.LivenessProbe, func(ok bool) {
			if !ok {
				w.rt.event(w.current(), corev1.EventTypeNormal, "Killing",
					fmt.Sprintf("Container %s failed liveness probe, will be restarted", spec.Name))
				go c.kill("liveness probe failed", w.grace(spec.LivenessProbe))
			}
		})
	}
	<-ctx.Done()
}

func (w *podWorker) grace(p *corev1.Probe) time.Duration {
	if p.TerminationGracePeriodSeconds != nil {
		return time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
	}
	if s := w.current().Spec.TerminationGracePeriodSeconds; s != nil {
		return time.Duration(*s) * time.Second
	}
	return 30 * time.Second
}

// untilStarted runs the startup probe until it succeeds (true) or fails
// failureThreshold times (the container is killed; false).
func (w *podWorker) untilStarted(ctx context.Context, c *container, p *corev1.Probe) bool {
	if sleepCtx(ctx, seconds(p.InitialDelaySeconds, 0)) != nil {
		return false
	}
	failures := 0
	for {
		if w.check(ctx, c, p) == nil {
			return true
		}
		failures++
		if failures >= int(max(p.FailureThreshold, 1)) {
			w.rt.event(w.current(), corev1.EventTypeNormal, "Killing",
				fmt.Sprintf("Container %s failed startup probe, will be restarted", c.spec.Name))
			go c.kill("startup probe failed", w.grace(p))
			return false
		}
		if sleepCtx(ctx, seconds(p.PeriodSeconds, 10)) != nil {
			return false
		}
	}
}

// probeLoop reports the probe's verdict after successThreshold successes
// or failureThreshold failures in a row.
func (w *podWorker) probeLoop(ctx context.Context, c *container, p *corev1.Probe, verdict func(bool)) {
	if sleepCtx(ctx, seconds(p.InitialDelaySeconds, 0)) != nil {
		return
	}
	ok, bad := 0, 0
	for {
		if err := w.check(ctx, c, p); err == nil {
			ok, bad = ok+1, 0
			if ok >= int(max(p.SuccessThreshold, 1)) {
				verdict(true)
			}
		} else if ctx.Err() == nil {
			ok, bad = 0, bad+1
			if bad >= int(max(p.FailureThreshold, 1)) {
				verdict(false)
				bad = 0
			}
		}
		if sleepCtx(ctx, seconds(p.PeriodSeconds, 10)) != nil {
			return
		}
	}
}

func seconds(s int32, def int32) time.Duration {
	if s <= 0 {
		s = def
	}
	return time.Duration(s) * time.Second
}

// check runs one probe against the pod.
func (w *podWorker) check(ctx context.Context, c *container, p *corev1.Probe) error {
	ctx, cancel := context.WithTimeout(ctx, seconds(p.TimeoutSeconds, 1))
	defer cancel()
	return w.handler(ctx, c, p.ProbeHandler.Exec, p.ProbeHandler.HTTPGet, p.ProbeHandler.TCPSocket)
}

// handler runs an exec, httpGet or tcpSocket action (of a probe or a hook).
func (w *podWorker) handler(ctx context.Context, c *container, ex *corev1.ExecAction, hg *corev1.HTTPGetAction, tcp *corev1.TCPSocketAction) error {
	w.mu.Lock()
	ip, sb := w.ip.String(), w.sb
	w.mu.Unlock()
	if sb == nil {
		return fmt.Errorf("no sandbox")
	}
	switch {
	case ex != nil:
		out, err := w.execOutput(ctx, c, ex.Command)
		if err != nil {
			return fmt.Errorf("exec %v: %w: %s", ex.Command, err, trimMsg(string(out)))
		}
		return nil
	case hg != nil:
		return w.httpGet(ctx, c, ip, hg)
	case tcp != nil:
		port, err := resolvePort(tcp.Port, c.spec)
		if err != nil {
			return err
		}
		host := ip
		if tcp.Host != "" {
			host = tcp.Host
		}
		conn, err := w.dial(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	}
	return fmt.Errorf("probe has no action")
}

func (w *podWorker) httpGet(ctx context.Context, c *container, ip string, hg *corev1.HTTPGetAction) error {
	port, err := resolvePort(hg.Port, c.spec)
	if err != nil {
		return err
	}
	host := ip
	if hg.Host != "" {
		host = hg.Host
	}
	scheme := "http"
	if hg.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	url := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), hg.Path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	for _, h := range hg.HTTPHeaders {
		req.Header.Add(h.Name, h.Value)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: w.dial, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}

// resolvePort turns a port number or a named containerPort into a number.
func resolvePort(p intstr.IntOrString, c corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("container %s has no port named %q", c.Name, p.StrVal)
}

// execOutput runs a command inside the pod as container c would, with its
// env and user, and returns its combined output.
func (w *podWorker) execOutput(ctx context.Context, c *container, argv []string) ([]byte, error) {
	cmd, err := w.execCommand(ctx, c, argv)
	if err != nil {
		return nil, err
	}
	return cmd.CombinedOutput()
}

func (w *podWorker) execCommand(ctx context.Context, c *container, argv []string) (*exec.Cmd, error) {
	pod := w.current()
	w.mu.Lock()
	sb := w.sb
	w.mu.Unlock()
	if sb == nil {
		return nil, fmt.Errorf("pod %s has no sandbox", podKey(pod))
	}
	env, err := containerEnv(pod, &c.spec, serviceEnv(pod, w.rt.services()), apiLookup{ctx: ctx, cs: w.rt.cs, ns: pod.Namespace})
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, w.rt.nsenter, processArgs(sb.pid(), userOf(pod, c.spec), c.spec.WorkingDir, argv)...)
	cmd.Env = env
	return cmd, nil
}

// preStop runs c's preStop hook, bounded by the pod's deadline.
func (w *podWorker) preStop(c *container, deadline time.Time) {
	h := c.spec.Lifecycle
	if h == nil || h.PreStop == nil {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := w.handler(ctx, c, h.PreStop.Exec, h.PreStop.HTTPGet, h.PreStop.TCPSocket); err != nil {
		w.rt.event(w.current(), corev1.EventTypeWarning, "FailedPreStopHook",
			fmt.Sprintf("PreStopHook failed for container %s: %v", c.spec.Name, err))
	}
}
