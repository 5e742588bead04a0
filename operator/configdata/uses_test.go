package configdata

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestEnvUsesRefsAndKeys(t *testing.T) {
	yes, no := true, false
	env := []corev1.EnvVar{
		{Name: "PLAIN", Value: "x"},
		{Name: "A", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}},
		{Name: "B", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "user", Optional: &yes}}},
		{Name: "C", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "mode", Optional: &yes}}},
		{Name: "D", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
	}
	envFrom := []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "all"}, Optional: &no}}}
	uses := EnvUses(env, envFrom)
	if len(uses) != 4 {
		t.Fatalf("%d uses, want 4 (plain values and field refs read no configuration): %+v", len(uses), uses)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"refs: sorted, once each, optional only if every use is", Refs(uses), []Ref{
			{Kind: KindConfigMap, Name: "all"}, {Kind: KindConfigMap, Name: "cfg", Optional: true}, {Kind: KindSecret, Name: "db"}}},
		{"keys: per object, nil when all are read", UsedKeys(uses), map[string][]string{
			"ConfigMap/all": nil, "ConfigMap/cfg": {"mode"}, "Secret/db": {"password", "user"}}},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: %+v, want %+v", tt.name, tt.got, tt.want)
		}
	}
}

func TestHash(t *testing.T) {
	ref := Ref{Kind: KindSecret, Name: "db"}
	base := []Config{{Ref: ref, Found: true, Data: map[string][]byte{"password": []byte("a"), "unused": []byte("1")}, Keys: []string{"password"}}}
	with := func(edit func(*Config)) []Config {
		c := base[0]
		c.Data = map[string][]byte{"password": []byte("a"), "unused": []byte("1")}
		edit(&c)
		return []Config{c}
	}
	k := Key("k")
	h := k.Hash(base)
	tests := []struct {
		name    string
		configs []Config
		same    bool
	}{
		{"an unread key's edit changes nothing", with(func(c *Config) { c.Data["unused"] = []byte("2") }), true},
		{"a read key's edit changes it", with(func(c *Config) { c.Data["password"] = []byte("b") }), false},
		{"a read key removed changes it", with(func(c *Config) { delete(c.Data, "password") }), false},
		{"the object gone changes it", with(func(c *Config) { c.Found, c.Data = false, nil }), false},
		{"envFrom reads every key", with(func(c *Config) { c.Keys = nil }), false},
	}
	for _, tt := range tests {
		if got := k.Hash(tt.configs); (got == h) != tt.same {
			t.Errorf("%s: %s vs %s", tt.name, got, h)
		}
	}
	if Key("other").Hash(base) == h {
		t.Error("another install's key gives the same hash")
	}
	if (Key(nil)).Hash(nil) != "" {
		t.Error("no references should give no hash")
	}
}
