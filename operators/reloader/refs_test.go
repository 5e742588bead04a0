package reloader

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func cmKey(name, key string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}}
}

func secretKey(name, key string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}}
}

func TestUses(t *testing.T) {
	tests := []struct {
		name string
		spec corev1.PodSpec
		want []Use
	}{
		{"nothing", corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}, []Use{}},
		{
			"env valueFrom: single keys, merged over containers",
			corev1.PodSpec{Containers: []corev1.Container{
				{Name: "a", Env: []corev1.EnvVar{{Name: "X", ValueFrom: cmKey("cfg", "x")}, {Name: "P", ValueFrom: secretKey("db", "password")}}},
				{Name: "b", Env: []corev1.EnvVar{{Name: "Y", ValueFrom: cmKey("cfg", "y")}, {Name: "Z", Value: "plain"}}},
			}},
			[]Use{
				{Ref: Ref{KindConfigMap, "cfg"}, Keys: []string{"x", "y"}, Containers: []string{"a", "b"}},
				{Ref: Ref{KindSecret, "db"}, Keys: []string{"password"}, Containers: []string{"a"}},
			},
		},
		{
			"envFrom makes the whole object used",
			corev1.PodSpec{InitContainers: []corev1.Container{{Name: "init", EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}}},
				Containers: []corev1.Container{{Name: "a", Env: []corev1.EnvVar{{Name: "X", ValueFrom: cmKey("cfg", "x")}},
					EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}}}}}}},
			[]Use{
				{Ref: Ref{KindConfigMap, "cfg"}, Keys: nil, Containers: []string{"a", "init"}},
				{Ref: Ref{KindSecret, "s"}, Keys: nil, Containers: []string{"a"}},
			},
		},
		{
			"volumes, with and without items, and projected sources",
			corev1.PodSpec{
				Containers: []corev1.Container{{Name: "a", VolumeMounts: []corev1.VolumeMount{{Name: "conf"}, {Name: "all"}}}, {Name: "b"}},
				Volumes: []corev1.Volume{
					{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Items: []corev1.KeyToPath{{Key: "app.ini", Path: "app.ini"}}}}},
					{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "tls"}}},
					{Name: "all", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
						{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "extra"}}},
						{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "token"}, Items: []corev1.KeyToPath{{Key: "t", Path: "t"}}}},
					}}}},
				},
			},
			[]Use{
				{Ref: Ref{KindConfigMap, "cfg"}, Keys: []string{"app.ini"}, Containers: []string{"a"}},
				{Ref: Ref{KindConfigMap, "extra"}, Keys: nil, Containers: []string{"a"}},
				{Ref: Ref{KindSecret, "tls"}, Keys: nil, Containers: []string{}},
				{Ref: Ref{KindSecret, "token"}, Keys: []string{"t"}, Containers: []string{"a"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Uses(&tt.spec); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Uses =\n  %+v\nwant\n  %+v", got, tt.want)
			}
		})
	}
}

func TestTracked(t *testing.T) {
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "a",
		Env: []corev1.EnvVar{{Name: "X", ValueFrom: cmKey("cfg", "x")}, {Name: "P", ValueFrom: secretKey("db", "password")}}}}}
	names := func(uses []Use) []string {
		out := []string{}
		for _, u := range uses {
			out = append(out, u.String())
		}
		return out
	}
	tests := []struct {
		name string
		ann  map[string]string
		want []string
	}{
		{"not opted in", nil, []string{}},
		{"auto false", map[string]string{AnnotationAuto: "false"}, []string{}},
		{"auto", map[string]string{AnnotationAuto: "true"}, []string{"ConfigMap/cfg", "Secret/db"}},
		{"explicit configmap only", map[string]string{AnnotationConfigMaps: "cfg"}, []string{"ConfigMap/cfg"}},
		{"explicit, unreferenced and repeated names", map[string]string{AnnotationConfigMaps: " other, cfg,other,", AnnotationSecrets: "db"},
			[]string{"ConfigMap/cfg", "ConfigMap/other", "Secret/db"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := names(Tracked(tt.ann, &spec)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Tracked = %v, want %v", got, tt.want)
			}
		})
	}
	// An explicitly named object keeps the pod spec's key usage.
	for _, u := range Tracked(map[string]string{AnnotationConfigMaps: "cfg,other"}, &spec) {
		switch u.Name {
		case "cfg":
			if !reflect.DeepEqual(u.Keys, []string{"x"}) {
				t.Errorf("cfg keys %v, want [x]", u.Keys)
			}
		case "other":
			if u.Keys != nil {
				t.Errorf("unreferenced object keys %v, want the whole object", u.Keys)
			}
		}
	}
}

func TestStrategyOf(t *testing.T) {
	if s, err := StrategyOf(nil, StrategyEnv); s != StrategyEnv || err != nil {
		t.Errorf("default: %v %v", s, err)
	}
	if s, err := StrategyOf(map[string]string{AnnotationStrategy: "annotation"}, StrategyEnv); s != StrategyAnnotation || err != nil {
		t.Errorf("override: %v %v", s, err)
	}
	if _, err := StrategyOf(map[string]string{AnnotationStrategy: "restart"}, StrategyEnv); err == nil {
		t.Error("an unknown strategy was accepted")
	}
}
