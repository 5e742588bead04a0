package app

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

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
// env valueFrom and envFrom, sorted and without repeats.
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
	for _, e := range app.Spec.Env {
		if v := e.ValueFrom; v != nil {
			if r := v.ConfigMapKeyRef; r != nil {
				add(KindConfigMap, r.Name, r.Optional)
			}
			if r := v.SecretKeyRef; r != nil {
				add(KindSecret, r.Name, r.Optional)
			}
		}
	}
	for _, e := range app.Spec.EnvFrom {
		if r := e.ConfigMapRef; r != nil {
			add(KindConfigMap, r.Name, r.Optional)
		}
		if r := e.SecretRef; r != nil {
			add(KindSecret, r.Name, r.Optional)
		}
	}
	out := make([]ConfigRef, 0, len(seen))
	for r := range seen {
		r.Optional = optional[[2]string{r.Kind, r.Name}]
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b ConfigRef) int {
		return strings.Compare(a.Kind+"/"+a.Name, b.Kind+"/"+b.Name)
	})
	return out
}

// Config is a referenced ConfigMap or Secret as found in the cluster.
type Config struct {
	Ref   ConfigRef
	Found bool
	Data  map[string][]byte
}

// ConfigHash digests the referenced configuration: names, presence and
// content, in a stable order. It is empty when there are no references,
// so an App without any has no hash annotation at all.
func ConfigHash(configs []Config) string {
	if len(configs) == 0 {
		return ""
	}
	h := sha256.New()
	for _, c := range configs {
		// Lengths before contents keep different splits of the same bytes
		// from hashing alike.
		configdata.WriteField(h, c.Ref.Kind+"/"+c.Ref.Name)
		if !c.Found {
			configdata.WriteField(h, "\x00missing")
			continue
		}
		keys := make([]string, 0, len(c.Data))
		for k := range c.Data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			configdata.WriteField(h, k)
			configdata.WriteField(h, string(c.Data[k]))
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
