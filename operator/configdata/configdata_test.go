package configdata

import (
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
			got, want := Digest(tt.data, tt.keys), Digest(base, tt.keys)
			if (got == want) != tt.equal {
				t.Errorf("Digest = %s, base %s; want equal=%v", got, want, tt.equal)
			}
			if len(got) != 16 {
				t.Errorf("digest %q is not 16 hex digits", got)
			}
		})
	}
	if Digest(map[string][]byte{"a": nil}, []string{"a"}) == Digest(nil, []string{"a"}) {
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
