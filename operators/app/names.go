package app

import (
	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
)

// Labels and annotations the operator puts on what it makes.
const (
	// LabelApp and LabelProcess select an App's pods; they never change
	// for a process, because a Deployment's selector cannot.
	LabelApp     = "apps.setpoint.dev/app"
	LabelProcess = "apps.setpoint.dev/process"

	// AnnotationConfigHash on the pod template is a digest of the
	// ConfigMaps and Secrets the App references; when it changes the
	// Deployment rolls.
	AnnotationConfigHash = "apps.setpoint.dev/config-hash"

	// WebProcess is the process that gets the Service and Ingress.
	WebProcess = "web"

	// PortName names the web port on the container and the Service.
	PortName = "http"
	// ServicePort is the port the Service listens on.
	ServicePort = 80
)

// DefaultPort is the web port when spec.port is not set (the CRD
// defaults it too; this covers objects built in Go).
const DefaultPort = 8080

// ProcessName is the name of a process's Deployment, autoscaler and
// disruption budget.
func ProcessName(app *v1alpha1.App, process string) string {
	return app.Name + "-" + process
}

// selector is the pod selector of a process.
func selector(app *v1alpha1.App, process string) map[string]string {
	return map[string]string{LabelApp: app.Name, LabelProcess: process}
}

// podLabels are the selector plus the recommended labels.
func podLabels(app *v1alpha1.App, process string) map[string]string {
	l := selector(app, process)
	l["app.kubernetes.io/name"] = app.Name
	l["app.kubernetes.io/component"] = process
	return l
}

func port(app *v1alpha1.App) int32 {
	if app.Spec.Port == 0 {
		return DefaultPort
	}
	return app.Spec.Port
}

// hasWeb reports whether the App has a web process.
func hasWeb(app *v1alpha1.App) bool {
	for _, p := range app.Spec.Processes {
		if p.Name == WebProcess {
			return true
		}
	}
	return false
}
