package app

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
)

// probes are the process's startup, readiness and liveness probes: the
// ones it sets, and for web the HTTP probes healthCheckPath implies where
// it sets none.
func probes(app *v1alpha1.App, p v1alpha1.Process) (startup, readiness, liveness *corev1.Probe) {
	if p.Name == WebProcess && app.Spec.HealthCheckPath != "" {
		path := app.Spec.HealthCheckPath
		readiness = httpProbe(path, 1)
		// Liveness waits longer and tolerates more failures than
		// readiness, so a slow start is not a restart loop.
		liveness = httpProbe(path, 6)
		liveness.InitialDelaySeconds = 10
	}
	if ps := p.Probes; ps != nil {
		if ps.Startup != nil {
			startup = probe(*ps.Startup)
		}
		if ps.Readiness != nil {
			readiness = probe(*ps.Readiness)
		}
		if ps.Liveness != nil {
			liveness = probe(*ps.Liveness)
		}
	}
	return startup, readiness, liveness
}

func httpProbe(path string, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path:   path,
			Port:   intstr.FromString(PortName),
			Scheme: corev1.URISchemeHTTP,
		}},
		PeriodSeconds:    10,
		TimeoutSeconds:   1,
		SuccessThreshold: 1,
		FailureThreshold: failures,
	}
}

// probe is the Kubernetes probe of a process's probe, with the timings
// Kubernetes would default written out (so the applied intent is what
// runs) and the web port where no port is named: admission refuses a
// worker's probe without one.
func probe(p v1alpha1.Probe) *corev1.Probe {
	out := &corev1.Probe{
		InitialDelaySeconds: p.InitialDelaySeconds,
		PeriodSeconds:       orDefault(p.PeriodSeconds, 10),
		TimeoutSeconds:      orDefault(p.TimeoutSeconds, 1),
		SuccessThreshold:    orDefault(p.SuccessThreshold, 1),
		FailureThreshold:    orDefault(p.FailureThreshold, 3),
	}
	switch {
	case p.HTTPGet != nil:
		out.HTTPGet = &corev1.HTTPGetAction{Path: p.HTTPGet.Path, Port: probePort(p.HTTPGet.Port), Scheme: corev1.URISchemeHTTP}
	case p.TCPSocket != nil:
		out.TCPSocket = &corev1.TCPSocketAction{Port: probePort(p.TCPSocket.Port)}
	case p.Exec != nil:
		out.Exec = &corev1.ExecAction{Command: p.Exec.Command}
	}
	return out
}

func probePort(p *intstr.IntOrString) intstr.IntOrString {
	if p == nil {
		return intstr.FromString(PortName)
	}
	return *p
}

func orDefault(v, d int32) int32 {
	if v == 0 {
		return d
	}
	return v
}

// probesWithoutPort lists, for a process other than web, the probes that
// name no port ("readiness", ...): only web has a port to default to.
func probesWithoutPort(p v1alpha1.Process) []string {
	if p.Name == WebProcess || p.Probes == nil {
		return nil
	}
	var out []string
	check := func(name string, pr *v1alpha1.Probe) {
		switch {
		case pr == nil:
		case pr.HTTPGet != nil && pr.HTTPGet.Port == nil, pr.TCPSocket != nil && pr.TCPSocket.Port == nil:
			out = append(out, name)
		}
	}
	check("startup", p.Probes.Startup)
	check("readiness", p.Probes.Readiness)
	check("liveness", p.Probes.Liveness)
	return out
}
