package app

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
)

func TestCheck(t *testing.T) {
	cluster := map[ConfigRef]map[string][]byte{
		{Kind: KindSecret, Name: "db"}:     {"user": nil, "password": nil},
		{Kind: KindSecret, Name: "tls"}:    {"tls.crt": []byte("c"), "tls.key": []byte("k")},
		{Kind: KindSecret, Name: "opaque"}: {"cert": []byte("c")},
		{Kind: KindConfigMap, Name: "cfg"}: {"LEVEL": nil},
		{Kind: KindSecret, Name: "hidden"}: {"secret-sounding-key": nil},
	}
	read := func(ref ConfigRef) (map[string][]byte, bool, error) {
		data, ok := cluster[ref]
		return data, ok, nil
	}
	secretKey := func(name, key string, optional bool) v1alpha1.App {
		return *newApp(func(a *v1alpha1.App) {
			a.Spec.Env = []corev1.EnvVar{{Name: "V", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: &optional}}}}
		})
	}
	for _, tc := range []struct {
		name               string
		app                v1alpha1.App
		problems, warnings []string
	}{
		{"key present", secretKey("db", "password", false), nil, nil},
		{"key missing", secretKey("db", "pasword", false), []string{`spec.env[V]: Secret db has no key "pasword" (it has: password, user)`}, nil},
		{"key missing but optional", secretKey("db", "pasword", true), nil, nil},
		{"secret missing", secretKey("later", "x", false), nil, []string{"Secret later does not exist yet: the App will not be Ready until it does"}},
		{"configmap key missing", *newApp(func(a *v1alpha1.App) {
			a.Spec.Env = []corev1.EnvVar{{Name: "L", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "level"}}}}
		}), []string{`spec.env[L]: ConfigMap cfg has no key "level" (it has: LEVEL)`}, nil},
		{"envFrom missing", *newApp(func(a *v1alpha1.App) {
			a.Spec.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}}}
		}), nil, []string{"ConfigMap nope does not exist yet: the App will not be Ready until it does"}},
		{"tls secret good", *newApp(withRoutes(v1alpha1.Route{Host: "a.example.com", TLSSecretName: "tls"})), nil, nil},
		{"tls secret without keys", *newApp(withRoutes(v1alpha1.Route{Host: "a.example.com", TLSSecretName: "opaque"})),
			[]string{"spec.routes[0]: Secret opaque cannot serve TLS for a.example.com: it needs the keys tls.crt and tls.key (it has: cert)"}, nil},
		{"tls secret missing", *newApp(withRoutes(v1alpha1.Route{Host: "a.example.com", TLSSecretName: "soon"})),
			nil, []string{"spec.routes[0]: TLS Secret soon does not exist yet: a.example.com is served without TLS until it does"}},
		{"a user who may not read the Secret is not told its keys", secretKey("hidden", "pasword", false),
			[]string{`spec.env[V]: Secret hidden has no key "pasword" (its keys are not listed: you may not read Secret hidden)`}, nil},
		{"nor the TLS Secret's", *newApp(withRoutes(v1alpha1.Route{Host: "a.example.com", TLSSecretName: "hidden"})),
			[]string{"spec.routes[0]: Secret hidden cannot serve TLS for a.example.com: it needs the keys tls.crt and tls.key (its keys are not listed: you may not read Secret hidden)"}, nil},
		{"a file's key missing", *newApp(func(a *v1alpha1.App) {
			a.Spec.Files = []v1alpha1.File{{Path: "/etc/app", ConfigMap: &v1alpha1.KeyRef{Name: "cfg", Key: "app.yaml"}}}
		}), []string{`spec.files[/etc/app]: ConfigMap cfg has no key "app.yaml" (it has: LEVEL)`}, nil},
		{"a process's env key missing", *newApp(func(a *v1alpha1.App) {
			a.Spec.Processes[0].Env = []corev1.EnvVar{{Name: "P", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "pw"}}}}
		}), []string{`spec.processes[web].env[P]: Secret db has no key "pw" (it has: password, user)`}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f operator.Findings
			mayRead := func(ref ConfigRef) bool { return ref.Name != "hidden" }
			if err := Check(&tc.app, read, mayRead, &f); err != nil {
				t.Fatal(err)
			}
			problems, warnings := f.Problems, f.Warnings
			if !reflect.DeepEqual(problems, tc.problems) {
				t.Errorf("problems\n got %q\nwant %q", problems, tc.problems)
			}
			if !reflect.DeepEqual(warnings, tc.warnings) {
				t.Errorf("warnings\n got %q\nwant %q", warnings, tc.warnings)
			}
		})
	}
}
