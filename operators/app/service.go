package app

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
)

// Service builds the web process's Service, named like the App: the web
// port on port 80, then the extra ports, of the type spec.service asks
// for. It returns nil when the App has no web process.
func Service(app *v1alpha1.App) *corev1.Service {
	if !hasWeb(app) {
		return nil
	}
	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      app.Name,
			Namespace: app.Namespace,
			Labels:    podLabels(app, WebProcess),
		},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: selector(app, WebProcess),
			Ports: []corev1.ServicePort{{
				Name:       PortName,
				Port:       ServicePort,
				TargetPort: intstr.FromString(PortName),
				Protocol:   corev1.ProtocolTCP,
			}},
		},
	}
	for _, p := range app.Spec.Ports {
		sp := p.ServicePort
		if sp == 0 {
			sp = p.Port
		}
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: p.Name, Port: sp, TargetPort: intstr.FromString(p.Name), Protocol: protocol(p),
		})
	}
	if s := app.Spec.Service; s != nil {
		if s.Type != "" {
			svc.Spec.Type = s.Type
		}
		svc.Annotations = s.Annotations
	}
	return svc
}
