package operator

import (
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestWebhookConfigs(t *testing.T) {
	app := schema.GroupVersionKind{Group: "apps.setpoint.dev", Version: "v1alpha1", Kind: "App"}
	cm := schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}
	hooks := []admitted{
		{gvk: app, resource: "apps", namespaced: true},
		{gvk: cm, resource: "configmaps", namespaced: true, mutate: true},
	}
	service, err := newWebhookServer(Webhooks{Service: &WebhookService{Namespace: "ops", Name: "setpoint-webhook"}})
	if err != nil {
		t.Fatal(err)
	}
	local, err := newWebhookServer(Webhooks{URL: "https://127.0.0.1:9443/"})
	if err != nil {
		t.Fatal(err)
	}
	if got := service.hosts(); len(got) != 2 || got[0] != "setpoint-webhook.ops.svc" {
		t.Errorf("service hosts %v", got)
	}
	if got := local.hosts(); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("URL hosts %v", got)
	}

	for _, tc := range []struct {
		name       string
		ws         *webhookServer
		namespaces []string
		check      func(t *testing.T, v admissionregistrationv1.ValidatingWebhook, m admissionregistrationv1.MutatingWebhook)
	}{
		{"in cluster", service, nil, func(t *testing.T, v admissionregistrationv1.ValidatingWebhook, m admissionregistrationv1.MutatingWebhook) {
			s := v.ClientConfig.Service
			if s == nil || s.Namespace != "ops" || s.Name != "setpoint-webhook" || *s.Port != 443 || *s.Path != "/validate/apps.setpoint.dev/v1alpha1/apps" {
				t.Errorf("validating client config %+v", v.ClientConfig)
			}
			if *m.ClientConfig.Service.Path != "/mutate/core/v1/configmaps" {
				t.Errorf("mutating path %s", *m.ClientConfig.Service.Path)
			}
			if v.NamespaceSelector != nil {
				t.Errorf("namespace selector %v with no namespaces", v.NamespaceSelector)
			}
		}},
		{"local, some namespaces", local, []string{"a", "b"}, func(t *testing.T, v admissionregistrationv1.ValidatingWebhook, m admissionregistrationv1.MutatingWebhook) {
			if v.ClientConfig.URL == nil || *v.ClientConfig.URL != "https://127.0.0.1:9443/validate/apps.setpoint.dev/v1alpha1/apps" {
				t.Errorf("URL %v", v.ClientConfig.URL)
			}
			if sel := m.NamespaceSelector; sel == nil || len(sel.MatchExpressions[0].Values) != 2 {
				t.Errorf("namespace selector %v", sel)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfgs := webhookConfigs("setpoint", hooks, tc.ws.clientConfig, []byte("CA"), tc.namespaces, 10*time.Second, "")
			if len(cfgs) != 2 || cfgs[0].GetKind() != "ValidatingWebhookConfiguration" || cfgs[1].GetKind() != "MutatingWebhookConfiguration" {
				t.Fatalf("configurations %v", cfgs)
			}
			var v admissionregistrationv1.ValidatingWebhookConfiguration
			var m admissionregistrationv1.MutatingWebhookConfiguration
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(cfgs[0].Object, &v); err != nil {
				t.Fatal(err)
			}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(cfgs[1].Object, &m); err != nil {
				t.Fatal(err)
			}
			if len(v.Webhooks) != 1 || len(m.Webhooks) != 1 {
				t.Fatalf("webhooks: %d validating, %d mutating", len(v.Webhooks), len(m.Webhooks))
			}
			w := v.Webhooks[0]
			if w.Name != "apps.apps.setpoint.dev" || m.Webhooks[0].Name != "configmaps.core.setpoint.dev" || string(w.ClientConfig.CABundle) != "CA" ||
				*w.FailurePolicy != admissionregistrationv1.Fail || *w.SideEffects != admissionregistrationv1.SideEffectClassNone ||
				*w.TimeoutSeconds != 10 || len(w.MatchConditions) != 1 {
				t.Errorf("validating webhook %+v", w)
			}
			if r := w.Rules[0]; r.Resources[0] != "apps" || len(r.Operations) != 2 {
				t.Errorf("rules %+v", w.Rules)
			}
			tc.check(t, w, m.Webhooks[0])
		})
	}

	ignore := webhookConfigs("setpoint", hooks, local.clientConfig, nil, nil, time.Second, admissionregistrationv1.Ignore)
	for _, cfg := range ignore {
		webhooks, _, _ := unstructured.NestedSlice(cfg.Object, "webhooks")
		if got := webhooks[0].(map[string]any)["failurePolicy"]; got != "Ignore" {
			t.Errorf("%s: failurePolicy %v, want Ignore", cfg.GetKind(), got)
		}
	}
	if _, err := newWebhookServer(Webhooks{FailurePolicy: "Sometimes", URL: "https://127.0.0.1:9443"}); err == nil {
		t.Error("a failure policy that is neither Fail nor Ignore accepted")
	}

	if _, err := newWebhookServer(Webhooks{}); err == nil {
		t.Error("Webhooks with neither URL nor Service accepted")
	}
	if _, err := newWebhookServer(Webhooks{URL: "http://127.0.0.1:9443"}); err == nil {
		t.Error("a plain-HTTP webhook URL accepted")
	}
}
