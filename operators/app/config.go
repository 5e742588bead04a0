package app

import (
	"encoding/hex"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator/configdata"
)

// Kinds of configuration an App can reference.
const (
	KindConfigMap = configdata.KindConfigMap
	KindSecret    = configdata.KindSecret
)

// ConfigRef is a ConfigMap or Secret the App's environment uses.
type ConfigRef struct {
	Kind string // KindConfigMap or KindSecret
	Name string
	// Optional is true when every use of it is optional, so its absence
	// is not a fault.
	Optional bool
}

// Key is the reference's index key, "<Kind>/<namespace>/<name>".
func (r ConfigRef) Key(namespace string) string {
	return r.Kind + "/" + namespace + "/" + r.Name
}

// ConfigRefs lists the ConfigMaps and Secrets the App references through
// env valueFrom (the App's and each process's), envFrom and files,
// sorted and without repeats.
func ConfigRefs(app *v1alpha1.App) []ConfigRef {
	seen := map[ConfigRef]bool{}
	optional := map[[2]string]bool{}
	add := func(kind, name string, opt *bool) {
		if name == "" {
			return
		}
		key := [2]string{kind, name}
		isOpt := opt != nil && *opt
		if prev, ok := optional[key]; ok {
			optional[key] = prev && isOpt
		} else {
			optional[key] = isOpt
		}
		seen[ConfigRef{Kind: kind, Name: name}] = true
	}
	for _, u := range uses(app) {
		add(u.ref.Kind, u.ref.Name, u.optional)
	}
	out := make([]ConfigRef, 0, len(seen))
	for r := range seen {
		r.Optional = optional[[2]string{r.Kind, r.Name}]
		out = append(out, r)
	}
	slices.SortFunc(out, compareRefs)
	return out
}

// use is one place the App reads a ConfigMap or Secret: one key of it,
// or all of it (key empty).
type use struct {
	ref      ConfigRef
	key      string
	optional *bool
}

// uses lists every read of configuration the App's pods make.
func uses(app *v1alpha1.App) []use {
	var out []use
	envVars := func(env []corev1.EnvVar) {
		for _, e := range env {
			v := e.ValueFrom
			if v == nil {
				continue
			}
			if r := v.ConfigMapKeyRef; r != nil {
				out = append(out, use{ConfigRef{Kind: KindConfigMap, Name: r.Name}, r.Key, r.Optional})
			}
			if r := v.SecretKeyRef; r != nil {
				out = append(out, use{ConfigRef{Kind: KindSecret, Name: r.Name}, r.Key, r.Optional})
			}
		}
	}
	envVars(app.Spec.Env)
	for _, p := range app.Spec.Processes {
		envVars(p.Env)
	}
	for _, e := range app.Spec.EnvFrom {
		if r := e.ConfigMapRef; r != nil {
			out = append(out, use{ConfigRef{Kind: KindConfigMap, Name: r.Name}, "", r.Optional})
		}
		if r := e.SecretRef; r != nil {
			out = append(out, use{ConfigRef{Kind: KindSecret, Name: r.Name}, "", r.Optional})
		}
	}
	for _, f := range app.Spec.Files {
		ref, key := fileRef(f)
		out = append(out, use{ref, key, nil})
	}
	return out
}

// usedKeys is, per ConfigMap or Secret ("<Kind>/<name>"), the keys the
// App reads, or nil when it reads all of them (envFrom).
func usedKeys(app *v1alpha1.App) map[string][]string {
	out := map[string][]string{}
	whole := map[string]bool{}
	for _, u := range uses(app) {
		id := u.ref.Kind + "/" + u.ref.Name
		if u.key == "" {
			whole[id] = true
		}
		if !slices.Contains(out[id], u.key) {
			out[id] = append(out[id], u.key)
		}
	}
	for id := range out {
		if whole[id] {
			out[id] = nil
			continue
		}
		slices.Sort(out[id])
	}
	return out
}

func compareRefs(a, b ConfigRef) int {
	return compareStrings(a.Kind+"/"+a.Name, b.Kind+"/"+b.Name)
}

func compareStrings(a, b string) int { return strings.Compare(a, b) }

// Config is a referenced ConfigMap or Secret as found in the cluster.
type Config struct {
	Ref   ConfigRef
	Found bool
	Data  map[string][]byte
	// Keys are the keys the App reads, sorted; nil when it reads them all
	// (envFrom). Only these count in ConfigHash.
	Keys []string
}

// ConfigHash digests the referenced configuration: names, presence and
// the content of the keys the App reads (all of them for envFrom), in a
// stable order, so an edit of a key no pod reads rolls nothing. It is
// empty when there are no references, so an App without any has no hash
// annotation at all. It is keyed with the install's digest key, so the
// annotation says nothing testable about a Secret's content.
func ConfigHash(key configdata.Key, configs []Config) string {
	if len(configs) == 0 {
		return ""
	}
	h := key.New()
	for _, c := range configs {
		// Lengths before contents keep different splits of the same bytes
		// from hashing alike.
		configdata.WriteField(h, c.Ref.Kind+"/"+c.Ref.Name)
		if !c.Found {
			configdata.WriteField(h, "\x00missing")
			continue
		}
		keys := c.Keys
		if keys == nil {
			for k := range c.Data {
				keys = append(keys, k)
			}
			slices.Sort(keys)
		}
		for _, k := range keys {
			v, ok := c.Data[k]
			if !ok {
				// An absent key differs from an empty one.
				configdata.WriteField(h, k+"\x00missing")
				continue
			}
			configdata.WriteField(h, k)
			configdata.WriteField(h, string(v))
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Missing lists the required references that do not exist.
func Missing(configs []Config) []string {
	var out []string
	for _, c := range configs {
		if !c.Found && !c.Ref.Optional {
			out = append(out, c.Ref.Kind+" "+c.Ref.Name)
		}
	}
	return out
}
