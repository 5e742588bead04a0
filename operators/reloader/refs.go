package reloader

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Kinds of object a workload can use.
const (
	KindConfigMap = "ConfigMap"
	KindSecret    = "Secret"
)

// Annotations a workload opts in with, and those the reloader writes.
const (
	// AnnotationAuto "true": reload on a change of anything the pod
	// template references.
	AnnotationAuto = "reloader.setpoint.dev/auto"
	// AnnotationConfigMaps and AnnotationSecrets: comma-separated names to
	// reload on, referenced by the pod template or not.
	AnnotationConfigMaps = "reloader.setpoint.dev/configmaps"
	AnnotationSecrets    = "reloader.setpoint.dev/secrets"
	// AnnotationStrategy overrides the operator's strategy for one
	// workload: "annotation" or "env".
	AnnotationStrategy = "reloader.setpoint.dev/strategy"
	// AnnotationHashes, on the workload's metadata, records the digest of
	// each object as last seen: the baseline a change is measured from.
	AnnotationHashes = "reloader.setpoint.dev/hashes"
	// AnnotationConfigHash, on the pod template, is what a roll changes
	// with the annotation strategy.
	AnnotationConfigHash = "reloader.setpoint.dev/config-hash"
)

// Ref names a ConfigMap or Secret in the workload's namespace.
type Ref struct {
	Kind string // KindConfigMap or KindSecret
	Name string
}

func (r Ref) String() string { return r.Kind + "/" + r.Name }

// Key is the reference's index key, "<Kind>/<namespace>/<name>".
func (r Ref) Key(namespace string) string { return r.Kind + "/" + namespace + "/" + r.Name }

// Use is how a pod template uses one ConfigMap or Secret.
type Use struct {
	Ref
	// Keys are the keys it uses, sorted; nil means the whole object
	// (envFrom, or a volume without items).
	Keys []string
	// Containers are the names of the containers (init containers
	// included) that read it through env or a volume mount.
	Containers []string
}

// usage accumulates one object's uses while a pod spec is walked.
type usage struct {
	whole      bool
	keys       map[string]bool
	containers map[string]bool
}

// Uses lists the ConfigMaps and Secrets a pod spec uses, sorted by kind
// and name: env valueFrom (single keys), envFrom (whole), volumes and
// projected volume sources (their items' keys, or whole without items).
func Uses(spec *corev1.PodSpec) []Use {
	found := map[Ref]*usage{}
	use := func(ref Ref, keys []string, whole bool, container string) {
		if ref.Name == "" {
			return
		}
		u := found[ref]
		if u == nil {
			u = &usage{keys: map[string]bool{}, containers: map[string]bool{}}
			found[ref] = u
		}
		u.whole = u.whole || whole
		for _, k := range keys {
			u.keys[k] = true
		}
		if container != "" {
			u.containers[container] = true
		}
	}
	mountedBy := map[string][]string{} // volume -> containers mounting it
	containers := slices.Concat(spec.InitContainers, spec.Containers)
	for _, c := range containers {
		for _, e := range c.Env {
			if v := e.ValueFrom; v != nil {
				if r := v.ConfigMapKeyRef; r != nil {
					use(Ref{KindConfigMap, r.Name}, []string{r.Key}, false, c.Name)
				}
				if r := v.SecretKeyRef; r != nil {
					use(Ref{KindSecret, r.Name}, []string{r.Key}, false, c.Name)
				}
			}
		}
		for _, e := range c.EnvFrom {
			if r := e.ConfigMapRef; r != nil {
				use(Ref{KindConfigMap, r.Name}, nil, true, c.Name)
			}
			if r := e.SecretRef; r != nil {
				use(Ref{KindSecret, r.Name}, nil, true, c.Name)
			}
		}
		for _, m := range c.VolumeMounts {
			mountedBy[m.Name] = append(mountedBy[m.Name], c.Name)
		}
	}
	volume := func(vol string, ref Ref, items []corev1.KeyToPath) {
		keys := make([]string, 0, len(items))
		for _, it := range items {
			keys = append(keys, it.Key)
		}
		use(ref, keys, len(items) == 0, "")
		for _, c := range mountedBy[vol] {
			use(ref, nil, false, c)
		}
	}
	for _, v := range spec.Volumes {
		if s := v.ConfigMap; s != nil {
			volume(v.Name, Ref{KindConfigMap, s.Name}, s.Items)
		}
		if s := v.Secret; s != nil {
			volume(v.Name, Ref{KindSecret, s.SecretName}, s.Items)
		}
		if p := v.Projected; p != nil {
			for _, src := range p.Sources {
				if s := src.ConfigMap; s != nil {
					volume(v.Name, Ref{KindConfigMap, s.Name}, s.Items)
				}
				if s := src.Secret; s != nil {
					volume(v.Name, Ref{KindSecret, s.Name}, s.Items)
				}
			}
		}
	}
	out := make([]Use, 0, len(found))
	for ref, u := range found {
		x := Use{Ref: ref, Containers: sortedKeys(u.containers)}
		if !u.whole {
			x.Keys = sortedKeys(u.keys)
		}
		out = append(out, x)
	}
	slices.SortFunc(out, func(a, b Use) int { return strings.Compare(a.String(), b.String()) })
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// OptedIn reports whether a workload's annotations ask for reloads.
func OptedIn(annotations map[string]string) bool {
	return annotations[AnnotationAuto] == "true" ||
		strings.TrimSpace(annotations[AnnotationConfigMaps]) != "" ||
		strings.TrimSpace(annotations[AnnotationSecrets]) != ""
}

// Tracked lists what a workload reloads on: with AnnotationAuto every use
// of its pod spec; with the explicit lists the objects named there (as
// the pod spec uses them, or whole when it does not reference them).
// Nothing when the workload has not opted in.
func Tracked(annotations map[string]string, spec *corev1.PodSpec) []Use {
	if !OptedIn(annotations) {
		return nil
	}
	uses := Uses(spec)
	if annotations[AnnotationAuto] == "true" {
		return uses
	}
	byRef := map[Ref]Use{}
	for _, u := range uses {
		byRef[u.Ref] = u
	}
	var out []Use
	seen := map[Ref]bool{}
	for _, list := range []struct{ kind, annotation string }{
		{KindConfigMap, AnnotationConfigMaps}, {KindSecret, AnnotationSecrets},
	} {
		for _, name := range strings.Split(annotations[list.annotation], ",") {
			ref := Ref{Kind: list.kind, Name: strings.TrimSpace(name)}
			if ref.Name == "" || seen[ref] {
				continue
			}
			seen[ref] = true
			if u, ok := byRef[ref]; ok {
				out = append(out, u)
			} else {
				out = append(out, Use{Ref: ref})
			}
		}
	}
	slices.SortFunc(out, func(a, b Use) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// Strategy is how a roll changes the pod template.
type Strategy string

// The strategies.
const (
	// StrategyAnnotation writes a digest of everything the workload uses
	// into a pod-template annotation.
	StrategyAnnotation Strategy = "annotation"
	// StrategyEnv writes each changed object's digest into an env var of
	// the containers that use it.
	StrategyEnv Strategy = "env"
)

// ParseStrategy checks a strategy's name.
func ParseStrategy(s string) (Strategy, error) {
	switch Strategy(s) {
	case StrategyAnnotation, StrategyEnv:
		return Strategy(s), nil
	}
	return "", fmt.Errorf("unknown reload strategy %q (want %q or %q)", s, StrategyAnnotation, StrategyEnv)
}

// StrategyOf is the workload's strategy: its AnnotationStrategy, or def.
func StrategyOf(annotations map[string]string, def Strategy) (Strategy, error) {
	s, ok := annotations[AnnotationStrategy]
	if !ok {
		return def, nil
	}
	st, err := ParseStrategy(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("annotation %s: %w", AnnotationStrategy, err)
	}
	return st, nil
}
