package app

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
)

// Releases: each change of what shapes the App's pods is recorded as a
// numbered ControllerRevision owned by the App, <app>-release-<n>,
// holding the whole spec of that moment. The last
// spec.revisionHistoryLimit are kept. Annotating the App with
// AnnotationRollbackTo=<n> puts release n's pod-shaping fields back into
// its spec, which records a new release (as Heroku's releases:rollback).
const (
	// LabelRelease on a release is its number.
	LabelRelease = "apps.setpoint.dev/release"
	// AnnotationReleaseHash on a release digests its pod-shaping spec.
	AnnotationReleaseHash = "apps.setpoint.dev/release-hash"
	// AnnotationRollbackTo on an App asks for a rollback to a release.
	AnnotationRollbackTo = "apps.setpoint.dev/rollback-to"

	// DefaultRevisionHistoryLimit is the releases kept when
	// spec.revisionHistoryLimit is not set.
	DefaultRevisionHistoryLimit = 10
)

// ReleaseName names release n of the App.
func ReleaseName(app *v1alpha1.App, n int64) string {
	return app.Name + "-release-" + strconv.FormatInt(n, 10)
}

// podShaping is the part of a spec a release is about: everything but
// scale (replicas, autoscaling) and the ways in (routes, Ingress,
// Service), which neither make a release nor are rolled back.
func podShaping(spec v1alpha1.AppSpec) v1alpha1.AppSpec {
	s := *spec.DeepCopy()
	for i := range s.Processes {
		s.Processes[i].Replicas, s.Processes[i].Autoscaling = nil, nil
	}
	s.Routes, s.IngressClassName, s.Ingress, s.Service = nil, nil, nil, nil
	s.RevisionHistoryLimit = 0
	return s
}

// ReleaseHash digests the pod-shaping part of a spec.
func ReleaseHash(spec v1alpha1.AppSpec) string {
	b, err := json.Marshal(podShaping(spec))
	if err != nil {
		// An AppSpec always marshals; a failure is a bug, not input.
		panic(fmt.Sprintf("marshal app spec: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// Release is one recorded release.
type Release struct {
	Number int64
	Hash   string
	Spec   v1alpha1.AppSpec
	// raw is the recorded data, kept as it is: a release never changes.
	raw []byte
}

// ReleaseOf reads a release back from its ControllerRevision.
func ReleaseOf(cr *appsv1.ControllerRevision) (Release, error) {
	r := Release{Number: cr.Revision, Hash: cr.Annotations[AnnotationReleaseHash], raw: cr.Data.Raw}
	if err := json.Unmarshal(cr.Data.Raw, &r.Spec); err != nil {
		return Release{}, fmt.Errorf("read release %s: %w", cr.Name, err)
	}
	return r, nil
}

// Releases decides the App's releases from the ones recorded (any
// order): the current one (the newest when its pod-shaping spec is the
// App's, else a new one numbered after it) and the ControllerRevisions
// to keep, newest first, the current one included.
func Releases(app *v1alpha1.App, recorded []Release) (current int64, keep []*appsv1.ControllerRevision) {
	slices.SortFunc(recorded, func(a, b Release) int { return int(b.Number - a.Number) })
	limit := int(app.Spec.RevisionHistoryLimit)
	if limit <= 0 {
		limit = DefaultRevisionHistoryLimit
	}
	hash := ReleaseHash(app.Spec)
	if len(recorded) == 0 || recorded[0].Hash != hash {
		next := int64(1)
		if len(recorded) > 0 {
			next = recorded[0].Number + 1
		}
		recorded = append([]Release{{Number: next, Hash: hash, Spec: app.Spec}}, recorded...)
	}
	for _, r := range recorded[:min(limit, len(recorded))] {
		keep = append(keep, ReleaseRevision(app, r))
	}
	return recorded[0].Number, keep
}

// ReleaseRevision is the ControllerRevision recording a release.
func ReleaseRevision(app *v1alpha1.App, r Release) *appsv1.ControllerRevision {
	data := r.raw
	if data == nil {
		var err error
		if data, err = json.Marshal(r.Spec); err != nil {
			panic(fmt.Sprintf("marshal app spec: %v", err))
		}
	}
	labels := map[string]string{LabelApp: app.Name, LabelRelease: strconv.FormatInt(r.Number, 10), "app.kubernetes.io/name": app.Name}
	return &appsv1.ControllerRevision{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ControllerRevision"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        ReleaseName(app, r.Number),
			Namespace:   app.Namespace,
			Labels:      labels,
			Annotations: map[string]string{AnnotationReleaseHash: r.Hash},
		},
		Data:     runtime.RawExtension{Raw: data},
		Revision: r.Number,
	}
}

// RolledBack is the App's spec with release r's pod-shaping fields put
// back: scale stays as it is now for the processes that exist now (the
// release's for the others), and the routes, Ingress and Service are
// left alone.
func RolledBack(current v1alpha1.AppSpec, r Release) v1alpha1.AppSpec {
	out := *r.Spec.DeepCopy()
	now := map[string]v1alpha1.Process{}
	for _, p := range current.Processes {
		now[p.Name] = p
	}
	for i, p := range out.Processes {
		if c, ok := now[p.Name]; ok {
			out.Processes[i].Replicas, out.Processes[i].Autoscaling = c.Replicas, c.Autoscaling
		}
	}
	cur := current.DeepCopy()
	out.Routes, out.IngressClassName, out.Ingress, out.Service = cur.Routes, cur.IngressClassName, cur.Ingress, cur.Service
	out.RevisionHistoryLimit = current.RevisionHistoryLimit
	return out
}
