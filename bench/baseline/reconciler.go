package main

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operators/app"
)

const (
	configIndex = "config-refs"
	ownerLabel  = "baseline.setpoint.dev/app"
)

var _ reconcile.Reconciler = (*reconciler)(nil)

type reconciler struct {
	c client.Client
}

func setup(ctx context.Context, mgr manager.Manager, workers int) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &appsv1alpha1.App{}, configIndex, func(o client.Object) []string {
		a := o.(*appsv1alpha1.App)
		var keys []string
		for _, r := range app.ConfigRefs(a) {
			keys = append(keys, r.Key(a.Namespace))
		}
		return keys
	}); err != nil {
		return err
	}
	r := &reconciler{c: mgr.GetClient()}
	users := func(kind string) handler.EventHandler {
		return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			var apps appsv1alpha1.AppList
			if err := r.c.List(ctx, &apps, client.MatchingFields{configIndex: app.ConfigRef{Kind: kind, Name: o.GetName()}.Key(o.GetNamespace())}); err != nil {
				return nil
			}
			reqs := make([]reconcile.Request, 0, len(apps.Items))
			for _, a := range apps.Items {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&a)})
			}
			return reqs
		})
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&appsv1alpha1.App{}).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&networkingv1.Ingress{}).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&appsv1.ControllerRevision{}).
		Watches(&corev1.ConfigMap{}, users(app.KindConfigMap)).
		Watches(&corev1.Secret{}, users(app.KindSecret)).
		Named("app").
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}

func (r *reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	a := &appsv1alpha1.App{}
	if err := r.c.Get(ctx, req.NamespacedName, a); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if a.DeletionTimestamp != nil {
		return reconcile.Result{}, nil // owner references let the garbage collector clean up
	}
	configs, err := app.ReadConfigs(ctx, r.c, a)
	if err != nil {
		return reconcile.Result{}, err
	}
	hash := app.ConfigHash(nil, configs)
	desired := app.Children(a, hash)
	release, revisions, err := r.releases(ctx, a)
	if err != nil {
		return reconcile.Result{}, err
	}
	for _, cr := range revisions {
		desired = append(desired, cr)
	}
	deployments := map[string]*appsv1.Deployment{}
	for _, d := range desired {
		live, err := r.ensure(ctx, a, d)
		if err != nil {
			return reconcile.Result{}, err
		}
		if dep, ok := live.(*appsv1.Deployment); ok {
			deployments[dep.Labels[app.LabelProcess]] = dep
		}
	}
	if err := r.prune(ctx, a, desired); err != nil {
		return reconcile.Result{}, err
	}
	st := app.Status(a, deployments, app.Missing(configs), nil, metav1.NewTime(time.Now()))
	st.Release = release
	if !equality.Semantic.DeepEqual(st, a.Status) {
		a.Status = st
		if err := r.c.Status().Update(ctx, a); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{}, nil
}

// ensure creates the child, or updates it when the live one does not
// have what is desired (semantic comparison: unset desired fields match
// anything, so server defaults are not a difference).
func (r *reconciler) ensure(ctx context.Context, a *appsv1alpha1.App, desired client.Object) (client.Object, error) {
	desired.GetLabels()[ownerLabel] = a.Name
	if err := controllerutil.SetControllerReference(a, desired, r.c.Scheme()); err != nil {
		return nil, err
	}
	live := desired.DeepCopyObject().(client.Object)
	err := r.c.Get(ctx, client.ObjectKeyFromObject(desired), live)
	if apierrors.IsNotFound(err) {
		if err := r.c.Create(ctx, desired); err != nil {
			return nil, fmt.Errorf("create %T %s: %w", desired, desired.GetName(), err)
		}
		return desired, nil
	}
	if err != nil {
		return nil, err
	}
	if !metav1.IsControlledBy(live, a) {
		return nil, fmt.Errorf("%T %s exists and is not ours", live, live.GetName())
	}
	if equality.Semantic.DeepDerivative(specOf(desired), specOf(live)) && equality.Semantic.DeepDerivative(desired.GetLabels(), live.GetLabels()) {
		return live, nil
	}
	updated := live.DeepCopyObject().(client.Object)
	setSpec(updated, desired)
	updated.SetLabels(desired.GetLabels())
	if err := r.c.Update(ctx, updated); err != nil {
		return nil, fmt.Errorf("update %T %s: %w", updated, updated.GetName(), err)
	}
	return updated, nil
}

func specOf(o client.Object) any {
	switch t := o.(type) {
	case *appsv1.Deployment:
		return t.Spec
	case *corev1.Service:
		return t.Spec
	case *networkingv1.Ingress:
		return t.Spec
	case *autoscalingv2.HorizontalPodAutoscaler:
		return t.Spec
	case *policyv1.PodDisruptionBudget:
		return t.Spec
	}
	return nil
}

// setSpec copies the desired spec onto the live object, keeping what the
// server or others set that we do not declare where it matters (the
// Service's cluster IPs, the replicas an autoscaler owns).
func setSpec(live, desired client.Object) {
	switch l := live.(type) {
	case *appsv1.Deployment:
		d := desired.(*appsv1.Deployment)
		replicas := l.Spec.Replicas
		l.Spec = d.Spec
		if d.Spec.Replicas == nil {
			l.Spec.Replicas = replicas
		}
	case *corev1.Service:
		d := desired.(*corev1.Service)
		ip, ips := l.Spec.ClusterIP, l.Spec.ClusterIPs
		l.Spec = d.Spec
		l.Spec.ClusterIP, l.Spec.ClusterIPs = ip, ips
	case *networkingv1.Ingress:
		l.Spec = desired.(*networkingv1.Ingress).Spec
	case *autoscalingv2.HorizontalPodAutoscaler:
		l.Spec = desired.(*autoscalingv2.HorizontalPodAutoscaler).Spec
	case *policyv1.PodDisruptionBudget:
		l.Spec = desired.(*policyv1.PodDisruptionBudget).Spec
	}
}

func (r *reconciler) prune(ctx context.Context, a *appsv1alpha1.App, desired []client.Object) error {
	want := map[string]bool{}
	for _, d := range desired {
		want[fmt.Sprintf("%T/%s", d, d.GetName())] = true
	}
	lists := []client.ObjectList{&appsv1.DeploymentList{}, &corev1.ServiceList{}, &networkingv1.IngressList{},
		&autoscalingv2.HorizontalPodAutoscalerList{}, &policyv1.PodDisruptionBudgetList{}, &appsv1.ControllerRevisionList{}}
	for _, list := range lists {
		if err := r.c.List(ctx, list, client.InNamespace(a.Namespace), client.MatchingLabels{ownerLabel: a.Name}); err != nil {
			return err
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return err
		}
		for _, it := range items {
			o := it.(client.Object)
			if want[fmt.Sprintf("%T/%s", o, o.GetName())] || !metav1.IsControlledBy(o, a) {
				continue
			}
			if err := r.c.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
	}
	return nil
}

// releases are the App's releases as Setpoint's App operator keeps them
// (the same pure function decides), so both record the same history.
func (r *reconciler) releases(ctx context.Context, a *appsv1alpha1.App) (int64, []*appsv1.ControllerRevision, error) {
	var list appsv1.ControllerRevisionList
	if err := r.c.List(ctx, &list, client.InNamespace(a.Namespace), client.MatchingLabels{app.LabelApp: a.Name}); err != nil {
		return 0, nil, err
	}
	var recorded []app.Release
	for i := range list.Items {
		if !metav1.IsControlledBy(&list.Items[i], a) {
			continue
		}
		rel, err := app.ReleaseOf(&list.Items[i])
		if err != nil {
			return 0, nil, err
		}
		recorded = append(recorded, rel)
	}
	n, keep := app.Releases(a, recorded)
	return n, keep, nil
}
