package operator

import (
	"encoding/json"
	"testing"
)

func TestOwnsAll(t *testing.T) {
	// The field set of a Deployment as kube-apiserver records it for an
	// apply of desired, in the fieldsV1 format.
	fields := `{
	  "f:metadata": {"f:labels": {"f:app": {}}, "f:annotations": {"f:setpoint.dev/applied-intent": {}},
	    "f:ownerReferences": {"k:{\"uid\":\"u1\"}": {}}},
	  "f:spec": {"f:replicas": {}, "f:selector": {},
	    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {},
	      "f:ports": {"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}},
	      "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}},
	      "f:args": {}}}}}},
	  "f:data": {"f:k": {}}
	}`
	desired := `{
	  "apiVersion": "apps/v1", "kind": "Deployment",
	  "metadata": {"name": "x", "namespace": "ns", "labels": {"app": "x"}, "annotations": {"setpoint.dev/applied-intent": "d"},
	    "ownerReferences": [{"uid": "u1", "name": "p", "kind": "App", "apiVersion": "v1", "controller": true}]},
	  "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "x"}},
	    "template": {"spec": {"containers": [{"name": "web", "image": "i", "args": ["a", "b"],
	      "ports": [{"containerPort": 8080}], "env": [{"name": "A", "value": "1.10"}]}]}}}
	}`
	var f, base map[string]any
	if err := json.Unmarshal([]byte(fields), &f); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(desired), &base); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(d map[string]any)
		want bool
	}{
		{"as applied", func(map[string]any) {}, true},
		{"value changes are not looked at", func(d map[string]any) { container(d)["image"] = "other" }, true},
		{"an atomic list is owned whole", func(d map[string]any) { container(d)["args"] = []any{"c"} }, true},
		{"a new field", func(d map[string]any) { container(d)["workingDir"] = "/w" }, false},
		{"a new env entry", func(d map[string]any) {
			container(d)["env"] = append(container(d)["env"].([]any), map[string]any{"name": "B", "value": "2"})
		}, false},
		{"a new label", func(d map[string]any) { d["metadata"].(map[string]any)["labels"].(map[string]any)["b"] = "c" }, false},
		{"an explicit null claims nothing", func(d map[string]any) { container(d)["command"] = nil }, true},
		{"a port keyed with its defaulted protocol", func(d map[string]any) {
			container(d)["ports"] = []any{map[string]any{"containerPort": float64(8080)}}
		}, true},
		{"another port", func(d map[string]any) {
			container(d)["ports"] = []any{map[string]any{"containerPort": int64(9090)}}
		}, false},
		{"another container", func(d map[string]any) {
			spec := d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
			spec["containers"] = append(spec["containers"].([]any), map[string]any{"name": "side"})
		}, false},
		{"an atomic map is owned whole", func(d map[string]any) {
			d["spec"].(map[string]any)["selector"] = map[string]any{"matchLabels": map[string]any{"z": "z"}}
		}, true},
		{"a field of another top-level key", func(d map[string]any) { d["data"] = map[string]any{"k": "v", "other": "w"} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := deepCopyJSON(t, base)
			tt.edit(d)
			if got := ownsAll(f, d); got != tt.want {
				t.Errorf("ownsAll = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOwnsSets(t *testing.T) {
	f := map[string]any{"f:metadata": map[string]any{"f:finalizers": map[string]any{`v:"a"`: map[string]any{}}}}
	if !ownsAll(f, map[string]any{"metadata": map[string]any{"finalizers": []any{"a"}}}) {
		t.Error("set member a not found")
	}
	if ownsAll(f, map[string]any{"metadata": map[string]any{"finalizers": []any{"a", "b"}}}) {
		t.Error("set member b found")
	}
}

func TestAppliedDigestIsExact(t *testing.T) {
	d := func(v string) string {
		s, err := appliedDigest(map[string]any{"env": []any{map[string]any{"name": "V", "value": v}}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, pair := range [][2]string{{"1.10", "1.1"}, {"010", "10"}, {"0.5", "500m"}, {"1Gi", "1024Mi"}} {
		if d(pair[0]) == d(pair[1]) {
			t.Errorf("%q and %q have one digest", pair[0], pair[1])
		}
	}
	if d("x") != d("x") {
		t.Error("digest is not stable")
	}
}

func container(d map[string]any) map[string]any {
	return d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
}

func deepCopyJSON(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
