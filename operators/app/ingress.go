package app

import (
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
)

// Ingress builds the Ingress for the App's routes, one rule per host, all
// to the web Service. It returns nil when there are no routes.
func Ingress(app *v1alpha1.App) *networkingv1.Ingress {
	if len(app.Spec.Routes) == 0 || !hasWeb(app) {
		return nil
	}
	ing := &networkingv1.Ingress{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      app.Name,
			Namespace: app.Namespace,
			Labels:    podLabels(app, WebProcess),
		},
		Spec: networkingv1.IngressSpec{IngressClassName: app.Spec.IngressClassName},
	}
	if s := app.Spec.Ingress; s != nil {
		ing.Annotations = s.Annotations
	}
	backend := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
		Name: app.Name,
		Port: networkingv1.ServiceBackendPort{Name: PortName},
	}}
	for _, r := range app.Spec.Routes {
		rule := networkingv1.IngressRule{Host: r.Host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}
		for _, path := range routePaths(r) {
			rule.HTTP.Paths = append(rule.HTTP.Paths, networkingv1.HTTPIngressPath{
				Path:     path,
				PathType: new(networkingv1.PathTypePrefix),
				Backend:  backend,
			})
		}
		ing.Spec.Rules = append(ing.Spec.Rules, rule)
		if r.TLSSecretName != "" {
			ing.Spec.TLS = append(ing.Spec.TLS, networkingv1.IngressTLS{Hosts: []string{r.Host}, SecretName: r.TLSSecretName})
		}
	}
	return ing
}

func routePaths(r v1alpha1.Route) []string {
	if len(r.Paths) == 0 {
		return []string{"/"}
	}
	return r.Paths
}

// URLs are the App's external URLs, one per route and path, or the
// in-cluster URL of its Service when it has no routes.
func URLs(app *v1alpha1.App) []string {
	if !hasWeb(app) {
		return nil
	}
	if len(app.Spec.Routes) == 0 {
		return []string{"http://" + app.Name + "." + app.Namespace + ".svc"}
	}
	var out []string
	for _, r := range app.Spec.Routes {
		scheme := "http://"
		if r.TLSSecretName != "" {
			scheme = "https://"
		}
		for _, path := range routePaths(r) {
			out = append(out, scheme+r.Host+path)
		}
	}
	return out
}
