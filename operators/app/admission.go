package app

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/configdata"
)

// admit checks, at admission, what the CRD's schema cannot: that the
// ConfigMaps and Secrets an App names have the keys it uses, that a
// route's TLS Secret is one an Ingress can serve, that a worker's probe
// names its port, that no other App's children have the names this
// one's would, and, when all that holds, that the API server accepts
// every child the App would make (a server-side dry-run of each, under
// the operator's field manager). It reads the API server directly, not
// the cache, so a Secret made a moment before the App is seen. One that
// does not exist yet only warns: GitOps tools and cert-manager often
// create it after the App.
func admit(c client.Reader, dryRun func(context.Context, client.Object) error) operator.AdmitFunc[*v1alpha1.App] {
	return func(ctx context.Context, r *operator.Review[*v1alpha1.App]) error {
		app := r.Object
		read := func(ref ConfigRef) (map[string][]byte, bool, error) {
			return configdata.Read(ctx, c, ref.Kind, app.Namespace, ref.Name)
		}
		mayRead := func(ref ConfigRef) bool {
			return r.Allowed(ctx, "get", "", configdata.Resource(ref.Kind), app.Namespace, ref.Name)
		}
		if err := Check(app, read, mayRead, &r.Findings); err != nil {
			return err
		}
		CheckProbes(app, &r.Findings)
		others := &v1alpha1.AppList{}
		if err := c.List(ctx, others, client.InNamespace(app.Namespace)); err != nil {
			return fmt.Errorf("list Apps in %s: %w", app.Namespace, err)
		}
		CheckNames(app, others.Items, &r.Findings)
		if len(r.Problems) > 0 {
			return nil
		}
		DryRun(ctx, dryRun, app, &r.Findings)
		return nil
	}
}

// CheckProbes refuses probes of a process other than web that name no
// port: only web has a port to default to.
func CheckProbes(app *v1alpha1.App, f *operator.Findings) {
	for _, p := range app.Spec.Processes {
		for _, probe := range probesWithoutPort(p) {
			f.Refuse("spec.processes[%s].probes.%s: name a port (a number or a port name): only the web process has a default port", p.Name, probe)
		}
	}
}

// CheckNames refuses an App whose children would have the name of
// another App's: App shop with process admin-web and App shop-admin
// with process web both make a Deployment shop-admin-web.
func CheckNames(app *v1alpha1.App, others []v1alpha1.App, f *operator.Findings) {
	taken := map[string]string{}
	for i := range others {
		o := &others[i]
		if o.Name == app.Name {
			continue
		}
		for _, p := range o.Spec.Processes {
			taken[ProcessName(o, p.Name)] = fmt.Sprintf("App %s's process %s", o.Name, p.Name)
		}
	}
	for _, p := range app.Spec.Processes {
		name := ProcessName(app, p.Name)
		if owner, ok := taken[name]; ok {
			f.Refuse("spec.processes[%s]: its Deployment %s would have the name of %s; rename the process", p.Name, name, owner)
		}
	}
}

// DryRun asks the API server to validate every child the App would
// make, as the operator would apply it, without storing anything, and
// refuses the App with the server's own message for each child it
// refuses. The children are checked concurrently, so the added latency
// is about one round trip.
func DryRun(ctx context.Context, dryRun func(context.Context, client.Object) error, app *v1alpha1.App, f *operator.Findings) {
	children := Children(app, "dry-run")
	errs := make([]error, len(children))
	var wg sync.WaitGroup
	for i, child := range children {
		wg.Go(func() { errs[i] = dryRun(ctx, child) })
	}
	wg.Wait()
	for i, err := range errs {
		switch {
		case err == nil:
		case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
			f.Refuse("%s: %s", childField(app, children[i]), err.Error())
		default:
			// Not a verdict on the App (the server is busy, the operator
			// may not create that kind here): do not refuse for it.
			f.Warn("could not check the %s %s the App makes: %v", children[i].GetObjectKind().GroupVersionKind().Kind, children[i].GetName(), err)
		}
	}
}

// childField is the part of the spec a child comes from, for messages.
func childField(app *v1alpha1.App, child client.Object) string {
	for _, p := range app.Spec.Processes {
		if child.GetName() == ProcessName(app, p.Name) {
			return "spec.processes[" + p.Name + "]"
		}
	}
	if _, ok := child.(*networkingv1.Ingress); ok {
		return "spec.routes"
	}
	return "spec"
}

// Check records in f what is wrong with the App's references (problems
// refuse it) and what may be (warnings), reading each ConfigMap or Secret
// once with read; an error is one reading. A message lists the keys an
// object has only when mayRead says the requester may read it.
func Check(app *v1alpha1.App, read func(ConfigRef) (map[string][]byte, bool, error), mayRead func(ConfigRef) bool, f *operator.Findings) error {
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
			f.Refuse("%s: %s %s has no key %q (%s)", what, ref.Kind, ref.Name, k, configdata.Keys(ref.Kind, ref.Name, data, mayRead(ref)))
		}
		return nil
	}
	envKeys := func(field string, env []corev1.EnvVar) error {
		for _, e := range env {
			v := e.ValueFrom
			if v == nil {
				continue
			}
			what := field + "[" + e.Name + "]"
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
		return nil
	}
	if err := envKeys("spec.env", app.Spec.Env); err != nil {
		return err
	}
	for _, p := range app.Spec.Processes {
		if err := envKeys("spec.processes["+p.Name+"].env", p.Env); err != nil {
			return err
		}
	}
	for _, file := range app.Spec.Files {
		ref, k := fileRef(file)
		if err := key("spec.files["+file.Path+"]", ref, k, nil); err != nil {
			return err
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
			ref := ConfigRef{Kind: KindSecret, Name: route.TLSSecretName}
			f.Refuse("spec.routes[%d]: Secret %s cannot serve TLS for %s: it needs the keys tls.crt and tls.key (%s)", i, route.TLSSecretName, route.Host, configdata.Keys(ref.Kind, ref.Name, data, mayRead(ref)))
		}
	}
	return nil
}

func hasKey(data map[string][]byte, k string) bool {
	_, ok := data[k]
	return ok
}
