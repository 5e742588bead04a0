package reloader

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// EnvName is the env var that carries a Ref's digest with the env
// strategy: RELOADER_CONFIGMAP_<NAME> or RELOADER_SECRET_<NAME>, the name
// upper-cased with every other character than a letter or digit as "_".
func EnvName(ref Ref) string {
	var b strings.Builder
	b.WriteString("RELOADER_")
	b.WriteString(strings.ToUpper(ref.Kind))
	b.WriteByte('_')
	for _, r := range strings.ToUpper(ref.Name) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Patch is the strategic merge patch of a pass over a workload: it
// records d.Record on the workload's metadata and, when d.Changed is not
// empty, rolls the pod template by strategy. Only what changes is in the
// patch, so it leaves every other field to its owner. Nil when there is
// nothing to write.
func Patch(spec *corev1.PodSpec, uses []Use, d Decision, strategy Strategy) ([]byte, error) {
	if d.Record == nil && len(d.Changed) == 0 {
		return nil, nil
	}
	record := d.Record
	if record == nil {
		return nil, fmt.Errorf("a roll must record the new digests")
	}
	patch := map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{AnnotationHashes: record.String()}},
	}
	if len(d.Changed) > 0 {
		var tmpl map[string]any
		switch strategy {
		case StrategyAnnotation:
			tmpl = map[string]any{"metadata": map[string]any{"annotations": map[string]any{AnnotationConfigHash: record.Combined()}}}
		case StrategyEnv:
			tmpl = map[string]any{"spec": envPatch(spec, uses, d.Changed, record)}
		default:
			return nil, fmt.Errorf("unknown reload strategy %q", strategy)
		}
		patch["spec"] = map[string]any{"template": tmpl}
	}
	return json.Marshal(patch)
}

// envPatch sets the digest env var of each changed object on the
// containers that use it; an object no container reads through env or a
// mount (named in an explicit list only) gets it on every container.
func envPatch(spec *corev1.PodSpec, uses []Use, changed []string, record Hashes) map[string]any {
	users := map[string][]string{}
	refs := map[string]Ref{}
	for _, u := range uses {
		users[u.String()] = u.Containers
		refs[u.String()] = u.Ref
	}
	env := map[string][]map[string]string{} // container -> env entries
	for _, key := range changed {
		ref := refs[key]
		names := users[key]
		if len(names) == 0 {
			for _, c := range spec.Containers {
				names = append(names, c.Name)
			}
		}
		for _, c := range names {
			env[c] = append(env[c], map[string]string{"name": EnvName(ref), "value": record[key]})
		}
	}
	out := map[string]any{}
	for _, list := range []struct {
		field      string
		containers []corev1.Container
	}{{"initContainers", spec.InitContainers}, {"containers", spec.Containers}} {
		var items []map[string]any
		for _, c := range list.containers {
			if e, ok := env[c.Name]; ok {
				items = append(items, map[string]any{"name": c.Name, "env": e})
			}
		}
		if len(items) > 0 {
			slices.SortFunc(items, func(a, b map[string]any) int { return strings.Compare(a["name"].(string), b["name"].(string)) })
			out[list.field] = items
		}
	}
	return out
}
