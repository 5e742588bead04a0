// Package crd embeds the CustomResourceDefinitions that `make generate`
// writes under bases/, so the setpoint binary installs exactly the YAML
// that kustomize and Helm ship.
package crd

import (
	"embed"
	"fmt"
	"io/fs"
	"path"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

//go:embed bases/*.yaml
var bases embed.FS

// Get returns the CRD generated for a group and plural resource name, as
// in the file bases/<group>_<plural>.yaml.
func Get(group, plural string) (*apiextensionsv1.CustomResourceDefinition, error) {
	name := group + "_" + plural + ".yaml"
	data, err := fs.ReadFile(bases, path.Join("bases", name))
	if err != nil {
		return nil, fmt.Errorf("crd %s.%s: %w", plural, group, err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(data, crd); err != nil {
		return nil, fmt.Errorf("crd %s: %w", name, err)
	}
	return crd, nil
}

// MustGet is Get for CRDs built into the binary, where a failure is a
// build mistake.
func MustGet(group, plural string) *apiextensionsv1.CustomResourceDefinition {
	crd, err := Get(group, plural)
	if err != nil {
		panic(err)
	}
	return crd
}
