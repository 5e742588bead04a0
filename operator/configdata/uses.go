package configdata

import (
	"context"
	"encoding/hex"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Ref is a ConfigMap or Secret that a workload's pods read.
type Ref struct {
	Kind string // KindConfigMap or KindSecret
	Name string
	// Optional is true when every use of it is optional, so its absence
	// is not a fault.
	Optional bool
}

// Key is the reference's index key, "<Kind>/<namespace>/<name>": what an
// operator.Index of the workloads by the configuration they read holds.
func (r Ref) Key(namespace string) string {
	return r.Kind + "/" + namespace + "/" + r.Name
}

// Use is one place pods read a ConfigMap or Secret: one key of it, or all
// of it (Key empty).
type Use struct {
	Ref      Ref
	Key      string
	Optional *bool
}

// EnvUses lists the reads of an environment: each valueFrom key of env,
// each whole ConfigMap or Secret of envFrom.
func EnvUses(env []corev1.EnvVar, envFrom []corev1.EnvFromSource) []Use {
	var out []Use
	for _, e := range env {
		v := e.ValueFrom
		if v == nil {
			continue
		}
		if r := v.ConfigMapKeyRef; r != nil {
			out = append(out, Use{Ref{Kind: KindConfigMap, Name: r.Name}, r.Key, r.Optional})
		}
		if r := v.SecretKeyRef; r != nil {
			out = append(out, Use{Ref{Kind: KindSecret, Name: r.Name}, r.Key, r.Optional})
		}
	}
	for _, e := range envFrom {
		if r := e.ConfigMapRef; r != nil {
			out = append(out, Use{Ref{Kind: KindConfigMap, Name: r.Name}, "", r.Optional})
		}
		if r := e.SecretRef; r != nil {
			out = append(out, Use{Ref{Kind: KindSecret, Name: r.Name}, "", r.Optional})
		}
	}
	return out
}

// Refs lists the ConfigMaps and Secrets of uses, sorted and without
// repeats; one is Optional only if every use of it is.
func Refs(uses []Use) []Ref {
	optional := map[[2]string]bool{}
	for _, u := range uses {
		if u.Ref.Name == "" {
			continue
		}
		key := [2]string{u.Ref.Kind, u.Ref.Name}
		isOpt := u.Optional != nil && *u.Optional
		if prev, ok := optional[key]; ok {
			optional[key] = prev && isOpt
		} else {
			optional[key] = isOpt
		}
	}
	out := make([]Ref, 0, len(optional))
	for key, opt := range optional {
		out = append(out, Ref{Kind: key[0], Name: key[1], Optional: opt})
	}
	slices.SortFunc(out, func(a, b Ref) int { return strings.Compare(a.Kind+"/"+a.Name, b.Kind+"/"+b.Name) })
	return out
}

// UsedKeys is, per ConfigMap or Secret ("<Kind>/<name>"), the keys uses
// read, sorted, or nil when they read all of them (envFrom).
func UsedKeys(uses []Use) map[string][]string {
	out := map[string][]string{}
	whole := map[string]bool{}
	for _, u := range uses {
		id := u.Ref.Kind + "/" + u.Ref.Name
		if u.Key == "" {
			whole[id] = true
		}
		if !slices.Contains(out[id], u.Key) {
			out[id] = append(out[id], u.Key)
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

// Config is a referenced ConfigMap or Secret as found in the cluster.
type Config struct {
	Ref   Ref
	Found bool
	Data  map[string][]byte
	// Keys are the keys read, sorted; nil when all are (envFrom). Only
	// these count in Hash.
	Keys []string
}

// ReadAll reads the ConfigMaps and Secrets of uses in namespace through
// c; a missing one is returned as not Found.
func ReadAll(ctx context.Context, c client.Reader, namespace string, uses []Use) ([]Config, error) {
	refs := Refs(uses)
	keys := UsedKeys(uses)
	out := make([]Config, 0, len(refs))
	for _, ref := range refs {
		data, found, err := Read(ctx, c, ref.Kind, namespace, ref.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, Config{Ref: ref, Found: found, Data: data, Keys: keys[ref.Kind+"/"+ref.Name]})
	}
	return out, nil
}

// Hash digests the configuration pods read: names, presence and the
// content of the keys read (all of them for envFrom), in a stable order,
// so an edit of a key no pod reads changes nothing. Put on a pod
// template, it rolls the pods when what they read changes. It is empty
// when there are no references, and keyed with k, so it says nothing
// testable about a Secret's content.
func (k Key) Hash(configs []Config) string {
	if len(configs) == 0 {
		return ""
	}
	h := k.New()
	for _, c := range configs {
		// Lengths before contents keep different splits of the same bytes
		// from hashing alike.
		WriteField(h, c.Ref.Kind+"/"+c.Ref.Name)
		if !c.Found {
			WriteField(h, "\x00missing")
			continue
		}
		keys := c.Keys
		if keys == nil {
			for key := range c.Data {
				keys = append(keys, key)
			}
			slices.Sort(keys)
		}
		for _, key := range keys {
			v, ok := c.Data[key]
			if !ok {
				// An absent key differs from an empty one.
				WriteField(h, key+"\x00missing")
				continue
			}
			WriteField(h, key)
			WriteField(h, string(v))
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
