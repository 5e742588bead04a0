package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
)

// Event reasons of rollbacks.
const (
	ReasonRolledBack     = "RolledBack"
	ReasonRollbackFailed = "RollbackFailed"
)

// rollback carries out AnnotationRollbackTo: it writes the release's
// pod-shaping spec into the App and removes the annotation, in one
// patch guarded by the resourceVersion it read, so a rollback is done
// once even when passes race. A release that is not kept is reported
// with a Warning Event, and the annotation removed.
func (r *reconciler) rollback(ctx context.Context, p *operator.Pass[*v1alpha1.App]) (time.Duration, error) {
	app := p.Object
	want, ok := app.Annotations[AnnotationRollbackTo]
	if !ok || app.DeletionTimestamp != nil {
		return 0, nil
	}
	spec, msg, err := r.rollbackSpec(ctx, app, want)
	if err != nil {
		return 0, err
	}
	patch, err := rollbackPatch(app.ResourceVersion, spec)
	if err != nil {
		return 0, err
	}
	if err := p.Patch(ctx, types.JSONPatchType, patch); err != nil {
		return 0, operator.Temporary(fmt.Errorf("roll back %s/%s: %w", app.Namespace, app.Name, err), time.Second)
	}
	if spec == nil {
		p.Event(corev1.EventTypeWarning, ReasonRollbackFailed, msg)
	} else {
		p.Event(corev1.EventTypeNormal, ReasonRolledBack, msg)
	}
	return 0, nil
}

// rollbackSpec is the spec a rollback to release want gives, or nil
// with the reason it cannot be done.
func (r *reconciler) rollbackSpec(ctx context.Context, app *v1alpha1.App, want string) (*v1alpha1.AppSpec, string, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(want), 10, 64)
	if err != nil || n < 1 {
		return nil, fmt.Sprintf("%s=%q is not a release number", AnnotationRollbackTo, want), nil
	}
	recorded, err := r.releases(ctx, app)
	if err != nil {
		return nil, "", err
	}
	var kept []string
	for _, rel := range recorded {
		if rel.Number == n {
			spec := RolledBack(app.Spec, rel)
			return &spec, fmt.Sprintf("rolled back to release %d", n), nil
		}
		kept = append(kept, strconv.FormatInt(rel.Number, 10))
	}
	return nil, fmt.Sprintf("cannot roll back to release %d: it is not kept (kept: %s)", n, strings.Join(kept, ", ")), nil
}

// rollbackPatch removes the annotation and, when spec is not nil,
// replaces the spec, if the App is still at resourceVersion rv.
func rollbackPatch(rv string, spec *v1alpha1.AppSpec) ([]byte, error) {
	ops := []map[string]any{
		{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
		{"op": "remove", "path": "/metadata/annotations/" + strings.ReplaceAll(AnnotationRollbackTo, "/", "~1")},
	}
	if spec != nil {
		ops = append(ops, map[string]any{"op": "replace", "path": "/spec", "value": spec})
	}
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encode rollback patch: %w", err)
	}
	return b, nil
}
