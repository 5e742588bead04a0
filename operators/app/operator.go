package app

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/configdata"
	"github.com/setpoint-dev/setpoint/operator/rollout"
)

// Setup registers the App operator's handlers on op, whose scheme must
// hold the App types (v1alpha1.AddToScheme) besides client-go's.
func Setup(op *operator.Operator) error {
	r := &reconciler{configReader: op.ConfigReader(), key: op.DigestKey, now: time.Now,
		earlier: &earlierHashes{api: op.APIReader(), live: op.Manager().GetCache(), seen: map[types.UID]earlierHash{}}}
	// Through an index: a label-selected List of the cache looks at every
	// ControllerRevision of the namespace, on each pass of each App
	// (at 1,000 Apps, 43 % of the operator's allocations went there).
	r.revisions = operator.NewIndex(op, "app-releases", func(cr *appsv1.ControllerRevision) []string {
		if name := cr.Labels[LabelApp]; name != "" {
			return []string{cr.Namespace + "/" + name}
		}
		return nil
	})
	apps := operator.Watch[*v1alpha1.App](op)
	apps.Children(r.children,
		&appsv1.Deployment{}, &corev1.Service{}, &networkingv1.Ingress{},
		&autoscalingv2.HorizontalPodAutoscaler{}, &policyv1.PodDisruptionBudget{},
		&appsv1.ControllerRevision{})
	apps.Status(r.status)
	apps.Reconcile(r.rollback)
	apps.OnValidate(admit(op.APIReader(), op.DryRunApply))

	// A change in a referenced ConfigMap or Secret must reach the Apps
	// that use it.
	operator.WatchConfig(apps, "app-config", ConfigRefs)
	return nil
}

type reconciler struct {
	// configReader reads ConfigMaps and Secrets as digests
	// (operator.ConfigReader).
	configReader client.Reader
	// revisions finds an App's releases (ControllerRevisions, children
	// the library already caches) by "namespace/app".
	revisions *operator.Index[*appsv1.ControllerRevision]
	// key digests the configuration (the install's digest key).
	key func() configdata.Key
	now func() time.Time
	// earlier keeps hashes made over values (before the caches held
	// digests) while they still say the same.
	earlier *earlierHashes
}

// children is the App's desired children, its releases included.
func (r *reconciler) children(ctx context.Context, app *v1alpha1.App) ([]client.Object, error) {
	configs, err := r.configs(ctx, app)
	if err != nil {
		return nil, err
	}
	recorded, err := r.releases(ctx, app)
	if err != nil {
		return nil, err
	}
	key := r.key()
	hash, err := r.earlier.keep(ctx, app, key, ConfigHash(key, configs))
	if err != nil {
		return nil, err
	}
	out := Children(app, hash)
	_, keep := Releases(app, recorded)
	for _, cr := range keep {
		out = append(out, cr)
	}
	return out, nil
}

// releases reads the App's recorded releases from the cache.
func (r *reconciler) releases(ctx context.Context, app *v1alpha1.App) ([]Release, error) {
	crs, err := r.revisions.Lookup(ctx, app.Namespace+"/"+app.Name)
	if err != nil {
		return nil, fmt.Errorf("list releases of %s/%s: %w", app.Namespace, app.Name, err)
	}
	var out []Release
	for _, cr := range crs {
		if !metav1.IsControlledBy(cr, app) {
			continue
		}
		rel, err := ReleaseOf(cr)
		if err != nil {
			return nil, err
		}
		out = append(out, rel)
	}
	return out, nil
}

// Children builds every child of the App: per process a Deployment and,
// where they apply, an autoscaler and a disruption budget; the web
// Service; the Ingress of the routes. configHash is ConfigHash of the
// configuration the App references.
func Children(app *v1alpha1.App, configHash string) []client.Object {
	var out []client.Object
	for _, p := range app.Spec.Processes {
		out = append(out, Deployment(app, p, configHash))
		if h := HorizontalPodAutoscaler(app, p); h != nil {
			out = append(out, h)
		}
		if pdb := PodDisruptionBudget(app, p); pdb != nil {
			out = append(out, pdb)
		}
	}
	if s := Service(app); s != nil {
		out = append(out, s)
	}
	if ing := Ingress(app); ing != nil {
		out = append(out, ing)
	}
	return out
}

// status is the App's status from the Deployments observed after the pass.
func (r *reconciler) status(ctx context.Context, app *v1alpha1.App, observed *operator.Observed) (any, error) {
	deployments := map[string]*appsv1.Deployment{}
	for _, p := range app.Spec.Processes {
		d := &appsv1.Deployment{}
		ok, err := observed.Get(d, ProcessName(app, p.Name))
		if err != nil {
			return nil, err
		}
		if ok {
			deployments[p.Name] = d
		}
	}
	configs, err := r.configs(ctx, app)
	if err != nil {
		return nil, err
	}
	recorded, err := r.releases(ctx, app)
	if err != nil {
		return nil, err
	}
	release, _ := Releases(app, recorded)
	st := Status(app, deployments, Missing(configs), rollout.Refused(observed), metav1.NewTime(r.now()))
	st.Release = release
	return st, nil
}

// configs reads the referenced ConfigMaps and Secrets from the cache.
func (r *reconciler) configs(ctx context.Context, app *v1alpha1.App) ([]Config, error) {
	return ReadConfigs(ctx, r.configReader, app)
}
