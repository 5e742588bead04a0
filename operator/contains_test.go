package operator

import "testing"

func TestContains(t *testing.T) {
	m := func(kv ...any) map[string]any {
		out := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	tests := []struct {
		name          string
		live, desired any
		want          bool
	}{
		{"same", m("a", "b"), m("a", "b"), true},
		{"live has more", m("a", "b", "c", "d"), m("a", "b"), true},
		{"value differs", m("a", "b"), m("a", "c"), false},
		{"missing in live", m(), m("a", "b"), false},
		{"zero value missing in live", m(), m("a", "", "b", int64(0), "c", false, "d", m(), "e", []any{}, "f", nil), true},
		{"zero value differs from live", m("a", "x"), m("a", ""), false},
		{"server defaults inside list elements", m("ports", []any{m("port", int64(80), "protocol", "TCP")}), m("ports", []any{m("port", int64(80))}), true},
		{"list length differs", m("l", []any{"a", "b"}), m("l", []any{"a"}), false},
		{"list order matters", m("l", []any{"a", "b"}), m("l", []any{"b", "a"}), false},
		{"numbers across types", m("n", int64(3)), m("n", float64(3)), true},
		{"quantities", m("cpu", "500m", "mem", "1Gi"), m("cpu", "0.5", "mem", "1024Mi"), true},
		{"different quantities", m("cpu", "500m"), m("cpu", "1"), false},
		{"string vs number", m("p", "80"), m("p", int64(80)), false},
		{"nested", m("spec", m("template", m("spec", m("containers", []any{m("name", "c", "image", "x", "terminationMessagePath", "/dev/termination-log")})))),
			m("spec", m("template", m("spec", m("containers", []any{m("name", "c", "image", "x")})))), true},
		{"nested change", m("spec", m("replicas", int64(2))), m("spec", m("replicas", int64(3))), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Contains(tt.live, tt.desired); got != tt.want {
				t.Errorf("Contains = %v, want %v", got, tt.want)
			}
		})
	}
}
