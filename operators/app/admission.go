package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

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
		app := r.Object
		found := map[ConfigRef]map[string][]byte{}
		read := func(ref ConfigRef) (map[string][]byte, bool, error) {
			if data, ok := found[ref]; ok {
				return data, data != nil, nil
			}
			data, ok, err := configdata.Read(ctx, c, ref.Kind, app.Namespace, ref.Name)
			if err != nil {
				return nil, false, err
			}
			found[ref] = data
			return data, ok, nil
		}
		problems, warnings, err := Check(app, read)
		for _, w := range warnings {
			r.Warn("%s", w)
		}
		if err != nil {
			return err
		}
		if len(problems) > 0 {
			return errors.New(strings.Join(problems, "; "))
		}
		return nil
	}
}

// Check returns what is wrong with the App's references (problems refuse
// it) and what may be (warnings), reading each ConfigMap or Secret with
// read.
func Check(app *v1alpha1.App, read func(ConfigRef) (map[string][]byte, bool, error)) (problems, warnings []string, err error) {
	missing := map[ConfigRef]bool{}
	key := func(what string, ref ConfigRef, k string, optional *bool) error {
		data, ok, err := read(ref)
		if err != nil {
			return err
		}
		if !ok {
			if !(optional != nil && *optional) && !missing[ref] {
				missing[ref] = true
				warnings = append(warnings, fmt.Sprintf("%s %s does not exist yet: the App will not be Ready until it does", ref.Kind, ref.Name))
			}
			return nil
		}
		if _, has := data[k]; !has && !(optional != nil && *optional) {
			problems = append(problems, fmt.Sprintf("%s: %s %s has no key %q (it has: %s)", what, ref.Kind, ref.Name, k, keyList(data)))
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
				return nil, nil, err
			}
		}
		if cm := v.ConfigMapKeyRef; cm != nil {
			if err := key(what, ConfigRef{Kind: KindConfigMap, Name: cm.Name}, cm.Key, cm.Optional); err != nil {
				return nil, nil, err
			}
		}
	}
	for _, ref := range ConfigRefs(app) {
		if _, ok, err := read(ref); err != nil {
			return nil, nil, err
		} else if !ok && !ref.Optional && !missing[ref] {
			missing[ref] = true
			warnings = append(warnings, fmt.Sprintf("%s %s does not exist yet: the App will not be Ready until it does", ref.Kind, ref.Name))
		}
	}
	for i, route := range app.Spec.Routes {
		if route.TLSSecretName == "" {
			continue
		}
		ref := ConfigRef{Kind: KindSecret, Name: route.TLSSecretName}
		data, ok, err := read(ref)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			warnings = append(warnings, fmt.Sprintf("spec.routes[%d]: TLS Secret %s does not exist yet: %s is served without TLS until it does", i, ref.Name, route.Host))
			continue
		}
		if len(data[corev1.TLSCertKey]) == 0 || len(data[corev1.TLSPrivateKeyKey]) == 0 {
			problems = append(problems, fmt.Sprintf("spec.routes[%d]: Secret %s cannot serve TLS for %s: it needs the keys tls.crt and tls.key (it has: %s)", i, ref.Name, route.Host, keyList(data)))
		}
	}
	return problems, warnings, nil
}

func keyList(data map[string][]byte) string {
	if len(data) == 0 {
		return "no keys"
	}
	return strings.Join(slices.Sorted(maps.Keys(data)), ", ")
}
