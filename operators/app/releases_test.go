package app

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
)

// recorded turns the kept revisions back into releases, as the next pass
// reads them.
func recorded(t *testing.T, keep []*appsv1.ControllerRevision) []Release {
	t.Helper()
	var out []Release
	for _, cr := range keep {
		r, err := ReleaseOf(cr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func TestReleases(t *testing.T) {
	a := newApp(func(a *v1alpha1.App) { a.Spec.RevisionHistoryLimit = 3 })
	n, keep := Releases(a, nil)
	eq(t, "first release", n, int64(1))
	eq(t, "name", keep[0].Name, "shop-release-1")
	eq(t, "revision", keep[0].Revision, int64(1))
	eq(t, "label", keep[0].Labels[LabelRelease], "1")

	// The same spec again is the same release, and the revision is
	// built byte for byte as recorded.
	n, again := Releases(a, recorded(t, keep))
	eq(t, "unchanged", n, int64(1))
	eq(t, "same data", string(again[0].Data.Raw), string(keep[0].Data.Raw))

	// Scale and the ways in make no release.
	b := a.DeepCopy()
	b.Spec.Processes[0].Replicas = new(int32(5))
	b.Spec.Routes = []v1alpha1.Route{{Host: "shop.example.com"}}
	b.Spec.Service = &v1alpha1.ServiceSettings{Type: corev1.ServiceTypeNodePort}
	n, _ = Releases(b, recorded(t, keep))
	eq(t, "scale is not a release", n, int64(1))

	// Pod-shaping changes are; only the limit is kept, newest first.
	history := recorded(t, keep)
	for i, image := range []string{"example/shop:2", "example/shop:3", "example/shop:4"} {
		c := a.DeepCopy()
		c.Spec.Image = image
		n, keep = Releases(c, history)
		eq(t, "number", n, int64(i+2))
		history = recorded(t, keep)
	}
	var names []string
	for _, cr := range keep {
		names = append(names, cr.Name)
	}
	eq(t, "kept", names, []string{"shop-release-4", "shop-release-3", "shop-release-2"})

	// Going back to an older spec is a new release, not the old one.
	n, _ = Releases(a, history)
	eq(t, "back to image 1", n, int64(5))
}

func TestRolledBack(t *testing.T) {
	old := newApp(func(a *v1alpha1.App) {
		a.Spec.Image = "example/shop:1"
		a.Spec.Env = []corev1.EnvVar{{Name: "MODE", Value: "old"}}
		a.Spec.Processes = append(a.Spec.Processes, v1alpha1.Process{Name: "gone", Replicas: new(int32(2))})
	})
	_, keep := Releases(old, nil)
	rel := recorded(t, keep)[0]
	now := newApp(func(a *v1alpha1.App) {
		a.Spec.Image = "example/shop:2"
		a.Spec.Processes[0].Replicas = new(int32(7))
		a.Spec.Routes = []v1alpha1.Route{{Host: "shop.example.com"}}
		a.Spec.RevisionHistoryLimit = 4
	})
	got := RolledBack(now.Spec, rel)
	eq(t, "image", got.Image, "example/shop:1")
	eq(t, "env", got.Env, old.Spec.Env)
	eq(t, "web keeps its scale", *got.Processes[0].Replicas, int32(7))
	eq(t, "a process back from the release has its scale", *got.Processes[1].Replicas, int32(2))
	eq(t, "routes stay", got.Routes, now.Spec.Routes)
	eq(t, "limit stays", got.RevisionHistoryLimit, int32(4))
	eq(t, "pod-shaping is the release's", ReleaseHash(got), rel.Hash)
}
