package v1alpha1_test

import (
	"os"
	"sort"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// TestEveryFieldIsExplained: `kubectl explain app.spec` (and status)
// documents every field, down to the fields of embedded Kubernetes
// types, because each has a description in the generated CRD.
func TestEveryFieldIsExplained(t *testing.T) {
	b, err := os.ReadFile("../../../config/crd/bases/apps.setpoint.dev_apps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	root := crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	var missing []string
	var walk func(path string, s apiextensionsv1.JSONSchemaProps)
	walk = func(path string, s apiextensionsv1.JSONSchemaProps) {
		if s.Description == "" {
			missing = append(missing, path)
		}
		for name, p := range s.Properties {
			walk(path+"."+name, p)
		}
		if s.Items != nil && s.Items.Schema != nil {
			// A list's entries are explained by the list's description.
			items := *s.Items.Schema
			if items.Description == "" {
				items.Description = s.Description
			}
			walk(path+"[]", items)
		}
	}
	walk("app.spec", root.Properties["spec"])
	walk("app.status", root.Properties["status"])
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("%s has no description", m)
	}
}
