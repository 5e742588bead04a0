package configdata

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestDigest(t *testing.T) {
	base := map[string][]byte{"a": []byte("1"), "b": []byte("2")}
	tests := []struct {
		name  string
		data  map[string][]byte
		keys  []string
		equal bool // digest equals Digest(base, keys)
	}{
		{"same content", map[string][]byte{"b": []byte("2"), "a": []byte("1")}, nil, true},
		{"a value changed", map[string][]byte{"a": []byte("1"), "b": []byte("3")}, nil, false},
		{"a key added", map[string][]byte{"a": []byte("1"), "b": []byte("2"), "c": nil}, nil, false},
		{"an unused key changed", map[string][]byte{"a": []byte("1"), "b": []byte("3")}, []string{"a"}, true},
		{"a used key changed", map[string][]byte{"a": []byte("9"), "b": []byte("2")}, []string{"a"}, false},
		{"a used key removed", map[string][]byte{"b": []byte("2")}, []string{"a"}, false},
		{"bytes split differently", map[string][]byte{"a": []byte("12"), "b": nil}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, want := Key(nil).Digest(tt.data, tt.keys), Key(nil).Digest(base, tt.keys)
			if (got == want) != tt.equal {
				t.Errorf("Digest = %s, base %s; want equal=%v", got, want, tt.equal)
			}
			if len(got) != 16 {
				t.Errorf("digest %q is not 16 hex digits", got)
			}
		})
	}
	if Key(nil).Digest(map[string][]byte{"a": nil}, []string{"a"}) == Key(nil).Digest(nil, []string{"a"}) {
		t.Error("an empty value and an absent key digest alike")
	}
}

func TestFromConfigMap(t *testing.T) {
	cm := &corev1.ConfigMap{Data: map[string]string{"a": "x"}, BinaryData: map[string][]byte{"b": {0, 1}}}
	got := FromConfigMap(cm)
	if string(got["a"]) != "x" || len(got["b"]) != 2 || len(got) != 2 {
		t.Errorf("FromConfigMap = %v", got)
	}
}

// TestKeyedDigests: under a key, digests differ from plain SHA-256 and
// from those under another key, and stay equal for equal content.
func TestKeyedDigests(t *testing.T) {
	data := map[string][]byte{"password": []byte("hunter2")}
	plain := Key(nil).Digest(data, nil)
	a, b := Key("a-key-of-at-least-32-bytes-......"), Key("another-key-of-32-bytes-........")
	if a.Digest(data, nil) == plain || a.Digest(data, nil) == b.Digest(data, nil) {
		t.Error("the key does not change the digest")
	}
	if a.Digest(data, nil) != a.Digest(map[string][]byte{"password": []byte("hunter2")}, nil) {
		t.Error("equal content digests differently under one key")
	}
	if a.Fingerprint() == b.Fingerprint() || a.Fingerprint() == Key(nil).Fingerprint() || strings.Contains(a.Fingerprint(), "key") {
		t.Error("fingerprints do not tell keys apart")
	}
}

// TestConceal: a concealed ConfigMap or Secret keeps its keys and
// nothing of its values, and digests of it are those of Values of the
// original, so a value's change still shows.
func TestConceal(t *testing.T) {
	key := Key("a-key-of-at-least-32-bytes-......")
	secret := func(v string) *corev1.Secret {
		return &corev1.Secret{Data: map[string][]byte{"password": []byte(v), "empty": nil}, StringData: map[string]string{"x": v}}
	}
	configMap := func(v string) *corev1.ConfigMap {
		return &corev1.ConfigMap{Data: map[string]string{"a": v}, BinaryData: map[string][]byte{"b": []byte(v + "-bin")}}
	}
	tests := []struct {
		name     string
		obj, alt any // alt differs from obj in one value
		data     func(any) map[string][]byte
	}{
		{"Secret", secret("hunter2"), secret("hunter3"), func(o any) map[string][]byte { return o.(*corev1.Secret).Data }},
		{"ConfigMap", configMap("hunter2"), configMap("hunter3"), func(o any) map[string][]byte { return FromConfigMap(o.(*corev1.ConfigMap)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := key.Values(tt.data(tt.obj))
			if !key.Conceal(tt.obj) || !key.Conceal(tt.alt) {
				t.Fatal("Conceal did not take a ConfigMap or Secret")
			}
			got := tt.data(tt.obj)
			if key.Digest(got, nil) != key.Digest(want, nil) || len(got) != len(want) {
				t.Errorf("concealed data %q; want Values of the original, %q", got, want)
			}
			if key.Digest(got, nil) == key.Digest(tt.data(tt.alt), nil) {
				t.Error("a changed value digests alike once concealed")
			}
			if s := fmt.Sprintf("%+v", tt.obj); strings.Contains(s, "hunter") {
				t.Errorf("a value survived: %s", s)
			}
			if m := tt.obj.(interface{ GetAnnotations() map[string]string }); !Concealed(m.GetAnnotations()) {
				t.Errorf("annotations %v; want the %s mark", m.GetAnnotations(), AnnotationValues)
			}
			// An informer may transform an object twice.
			key.Conceal(tt.obj)
			if again := tt.data(tt.obj); key.Digest(again, nil) != key.Digest(want, nil) {
				t.Errorf("concealed twice: %q; want Values of the original, %q", again, want)
			}
		})
	}
	if key.Conceal(&corev1.Pod{}) {
		t.Error("Conceal took a Pod")
	}
	// The mark as stored by anyone is not Conceal's.
	forged := &corev1.Secret{Data: map[string][]byte{"password": []byte("hunter2")}}
	forged.Annotations = map[string]string{AnnotationValues: "digests"}
	key.Conceal(forged)
	if string(forged.Data["password"]) == "hunter2" {
		t.Error("a Secret stored with the annotation kept its value")
	}
	if string(key.Value(nil)) == string(Key(nil).Value(nil)) || len(key.Value(nil)) != 64 {
		t.Error("Value is not a keyed digest of 64 hex digits")
	}
}
