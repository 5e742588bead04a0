package app

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/configdata"
)

// admit checks, at admission, what the CRD's schema cannot: that the
// ConfigMaps and Secrets an App names have the keys it uses, and that a
// route's TLS Secret is one an Ingress can serve. It reads the API server
// directly, not the cache, so a Secret made a moment before the App is
// seen. One that does not exist yet only warns: GitOps tools and
// cert-manager often create it after the App.
func admit(c client.Reader) operator.AdmitFunc[*v1alpha1.App] {
	return func(ctx context.Context, r *operator.Review[*v1alpha1.App]) error {
		read := func(ref ConfigRef) (map[string][]byte, bool, error) {
			return configdata.Read(ctx, c, ref.Kind, r.Object.Namespace, ref.Name)
		}
		return Check(r.Object, read, &r.Findings)
	}
}

// Check records in f what is wrong with the App's references (problems
// refuse it) and what may be (warnings), reading each ConfigMap or Secret
// once with read; an error is one reading.
func Check(app *v1alpha1.App, read func(ConfigRef) (map[string][]byte, bool, error), f *operator.Findings) error {
	type content struct {
		data  map[string][]byte
		found bool
	}
	seen := map[ConfigRef]content{}
	get := func(ref ConfigRef) (map[string][]byte, bool, error) {
		if c, ok := seen[ref]; ok {
			return c.data, c.found, nil
		}
		data, found, err := read(ref)
		if err != nil {
			return nil, false, err
		}
		seen[ref] = content{data, found}
		return data, found, nil
	}
	missing := map[ConfigRef]bool{}
	absent := func(ref ConfigRef) {
		if !missing[ref] {
			missing[ref] = true
			f.Warn("%s %s does not exist yet: the App will not be Ready until it does", ref.Kind, ref.Name)
		}
	}
	key := func(what string, ref ConfigRef, k string, optional *bool) error {
		if optional != nil && *optional {
			return nil
		}
		data, ok, err := get(ref)
		switch {
		case err != nil:
			return err
		case !ok:
			absent(ref)
		case !hasKey(data, k):
			f.Refuse("%s: %s %s has no key %q (it has: %s)", what, ref.Kind, ref.Name, k, configdata.KeyList(data))
		}
		return nil
	}
	for _, e := range app.Spec.Env {
		v := e.ValueFrom
		if v == nil {
			continue
		}
		what := "spec.env[" + e.Name + "]"
		if s := v.SecretKeyRef; s != nil {
			if err := key(what, ConfigRef{Kind: KindSecret, Name: s.Name}, s.Key, s.Optional); err != nil {
				return err
			}
		}
		if cm := v.ConfigMapKeyRef; cm != nil {
			if err := key(what, ConfigRef{Kind: KindConfigMap, Name: cm.Name}, cm.Key, cm.Optional); err != nil {
				return err
			}
		}
	}
	for _, ref := range ConfigRefs(app) {
		if ref.Optional {
			continue
		}
		if _, ok, err := get(ref); err != nil {
			return err
		} else if !ok {
			absent(ref)
		}
	}
	for i, route := range app.Spec.Routes {
		if route.TLSSecretName == "" {
			continue
		}
		data, ok, err := get(ConfigRef{Kind: KindSecret, Name: route.TLSSecretName})
		switch {
		case err != nil:
			return err
		case !ok:
			f.Warn("spec.routes[%d]: TLS Secret %s does not exist yet: %s is served without TLS until it does", i, route.TLSSecretName, route.Host)
		case len(data[corev1.TLSCertKey]) == 0 || len(data[corev1.TLSPrivateKeyKey]) == 0:
			f.Refuse("spec.routes[%d]: Secret %s cannot serve TLS for %s: it needs the keys tls.crt and tls.key (it has: %s)", i, route.TLSSecretName, route.Host, configdata.KeyList(data))
		}
	}
	return nil
}

func hasKey(data map[string][]byte, k string) bool {
	_, ok := data[k]
	return ok
}
