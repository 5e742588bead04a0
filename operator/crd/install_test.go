package crd_test

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	"github.com/setpoint-dev/setpoint/operator/crd"
	"github.com/setpoint-dev/setpoint/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }

func widgetCRD() *apiextensionsv1.CustomResourceDefinition {
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets.test.setpoint.dev"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "test.setpoint.dev",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"spec": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{"size": {Type: "integer"}}},
					},
				}},
			}},
		},
	}
}

func TestInstallServesTheResourceAndIsIdempotent(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	for range 2 { // the second install of the same CRD must succeed too
		if err := crd.Install(t.Context(), env.Config, 30*time.Second, widgetCRD()); err != nil {
			t.Fatalf("install: %v", err)
		}
	}
	// Discovery lists it straight after Install returns: clients that map
	// kinds through it (kubectl, controller-runtime) can use it at once.
	list, err := discovery.NewDiscoveryClientForConfigOrDie(env.Config).ServerResourcesForGroupVersion("test.setpoint.dev/v1")
	if err != nil || !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == "widgets" }) {
		t.Fatalf("discovery right after install: %v %+v", err, list)
	}
	// Created straight after Install returns: no wait, no retry.
	dyn := dynamic.NewForConfigOrDie(env.Config)
	w := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "test.setpoint.dev/v1", "kind": "Widget",
		"metadata": map[string]any{"name": "w"}, "spec": map[string]any{"size": int64(3)},
	}}
	gvr := schema.GroupVersionResource{Group: "test.setpoint.dev", Version: "v1", Resource: "widgets"}
	if _, err := dyn.Resource(gvr).Namespace(ns).Create(t.Context(), w, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create widget right after install: %v", err)
	}
}

func TestInstallReportsRejectedNames(t *testing.T) {
	env := testkit.Env(t)
	clash := widgetCRD()
	clash.Name = "gadgets.test.setpoint.dev"
	clash.Spec.Names.Plural, clash.Spec.Names.Singular = "gadgets", "gadget"
	clash.Spec.Names.Kind = "Gadget"
	clash.Spec.Names.ListKind = "GadgetList"
	clash.Spec.Names.ShortNames = []string{"gd"}
	other := clash.DeepCopy()
	other.Name = "doodads.test.setpoint.dev"
	other.Spec.Names.Plural, other.Spec.Names.Singular = "doodads", "doodad"
	other.Spec.Names.Kind, other.Spec.Names.ListKind = "Doodad", "DoodadList"
	if err := crd.Install(t.Context(), env.Config, 30*time.Second, clash); err != nil {
		t.Fatalf("install first: %v", err)
	}
	// Same short name in the same group: the API server refuses the names,
	// and Install says so instead of waiting out its timeout.
	err := crd.Install(t.Context(), env.Config, 5*time.Minute, other)
	if err == nil || !strings.Contains(err.Error(), "names not accepted") {
		t.Fatalf("clashing short name: err = %v, want names not accepted", err)
	}
}
