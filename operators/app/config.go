package app

import (
	"context"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator/configdata"
)

// Kinds of configuration an App can reference.
const (
	KindConfigMap = configdata.KindConfigMap
	KindSecret    = configdata.KindSecret
)

// ConfigRef is a ConfigMap or Secret the App's environment uses.
type ConfigRef = configdata.Ref

// Config is a referenced ConfigMap or Secret as found in the cluster.
type Config = configdata.Config

// ConfigRefs lists the ConfigMaps and Secrets the App references through
// env valueFrom (the App's and each process's), envFrom and files,
// sorted and without repeats.
func ConfigRefs(app *v1alpha1.App) []ConfigRef { return configdata.Refs(uses(app)) }

// uses lists every read of configuration the App's pods make.
func uses(app *v1alpha1.App) []configdata.Use {
	out := configdata.EnvUses(app.Spec.Env, app.Spec.EnvFrom)
	for _, p := range app.Spec.Processes {
		out = append(out, configdata.EnvUses(p.Env, nil)...)
	}
	for _, f := range app.Spec.Files {
		ref, key := fileRef(f)
		out = append(out, configdata.Use{Ref: ref, Key: key})
	}
	return out
}

// usedKeys is, per ConfigMap or Secret ("<Kind>/<name>"), the keys the
// App reads, or nil when it reads all of them (envFrom).
func usedKeys(app *v1alpha1.App) map[string][]string { return configdata.UsedKeys(uses(app)) }

func compareRefs(a, b ConfigRef) int {
	return compareStrings(a.Kind+"/"+a.Name, b.Kind+"/"+b.Name)
}

func compareStrings(a, b string) int { return strings.Compare(a, b) }

// ConfigHash digests the referenced configuration (configdata.Key.Hash):
// an edit of a key no pod reads rolls nothing, and an App without
// references has no hash annotation at all.
func ConfigHash(key configdata.Key, configs []Config) string { return key.Hash(configs) }

// Missing lists the required references that do not exist.
func Missing(configs []Config) []string { return configdata.Missing(configs) }

// ReadConfigs reads the ConfigMaps and Secrets the App references, for
// ConfigHash and Missing; a missing one is returned as not Found.
func ReadConfigs(ctx context.Context, c client.Reader, app *v1alpha1.App) ([]Config, error) {
	return configdata.ReadAll(ctx, c, app.Namespace, uses(app))
}
