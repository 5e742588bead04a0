package operator

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestComputeDiff(t *testing.T) {
	tests := []struct {
		name     string
		old, new any
		want     []string
	}{
		{"equal", map[string]any{"a": int64(1)}, map[string]any{"a": int64(1)}, nil},
		{"change", map[string]any{"a": int64(1)}, map[string]any{"a": int64(2)}, []string{"change a: 1 -> 2"}},
		{"add nested", map[string]any{}, map[string]any{"spec": map[string]any{"x": "y"}}, []string{"add spec: <nil> -> map[x:y]"}},
		{"remove", map[string]any{"a": "b", "c": "d"}, map[string]any{"c": "d"}, []string{"remove a: b -> <nil>"}},
		{"lists are values", map[string]any{"l": []any{int64(1)}}, map[string]any{"l": []any{int64(1), int64(2)}}, []string{"change l: [1] -> [1 2]"}},
		{"sorted by path", map[string]any{"b": "1", "a": "1"}, map[string]any{"b": "2", "a": "2"}, []string{"change a: 1 -> 2", "change b: 1 -> 2"}},
		{"from nothing", nil, map[string]any{"a": "b"}, []string{"add : <nil> -> map[a:b]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, it := range ComputeDiff(tt.old, tt.new) {
				got = append(got, it.String())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDiffUnder(t *testing.T) {
	d := ComputeDiff(
		map[string]any{"spec": map[string]any{"replicas": int64(1), "image": "a"}},
		map[string]any{"spec": map[string]any{"replicas": int64(3), "image": "a"}, "metadata": map[string]any{"labels": map[string]any{"x": "y"}}},
	)
	if got := fmt.Sprint(d.Under(ParsePath("spec.replicas"))); got != "[change : 1 -> 3]" {
		t.Errorf("spec.replicas: %s", got)
	}
	if got := d.Under(ParsePath("spec.image")); len(got) != 0 {
		t.Errorf("spec.image unchanged, got %v", got)
	}
	// A parent added as a whole is projected onto the field below it.
	if got := fmt.Sprint(d.Under(ParsePath("metadata.labels.x"))); got != "[add : <nil> -> y]" {
		t.Errorf("metadata.labels.x: %s", got)
	}
}

// A part of the diff base kept as its digest hides which field below it
// changed: every field below it counts as changed, old value unknown.
func TestDiffUnderADigest(t *testing.T) {
	dig := func(s string) map[string]any { return map[string]any{digestKey: s} }
	tests := []struct {
		name     string
		old, new map[string]any
		path     string
		want     string
	}{
		{"root digest", dig("a"), dig("b"), "spec.size", "[change : <nil> -> <nil>]"},
		{"root digest unchanged", dig("a"), dig("a"), "spec.size", "[]"},
		{"part digest above", map[string]any{"spec": dig("a")}, map[string]any{"spec": dig("b")}, "spec.size", "[change : <nil> -> <nil>]"},
		{"part digest elsewhere", map[string]any{"spec": dig("a"), "x": int64(1)}, map[string]any{"spec": dig("b"), "x": int64(1)}, "x", "[]"},
		{"part digest at the field", map[string]any{"spec": map[string]any{"items": dig("a")}}, map[string]any{"spec": map[string]any{"items": dig("b")}}, "spec.items",
			"[change " + digestKey + ": a -> b]"},
	}
	for _, tc := range tests {
		if got := fmt.Sprint(ComputeDiff(tc.old, tc.new).Under(ParsePath(tc.path))); got != tc.want {
			t.Errorf("%s: %s", tc.name, got)
		}
	}
}

func TestEssenceComparesAcrossJSON(t *testing.T) {
	// Integers read from the live object (int64) and from the stored diff
	// base (JSON) must compare equal, also beyond float64's exact range.
	big := int64(1<<60 + 1)
	live := normalize(map[string]any{"n": big, "f": 1.5, "i": int64(3)})
	stored, err := encodeBase(live.(map[string]any), maxBaseSize)
	if err != nil {
		t.Fatal(err)
	}
	if d := ComputeDiff(decodeJSON([]byte(stored)), live); len(d) != 0 {
		t.Errorf("round trip shows a diff: %v", d)
	}
}

func TestCompactKeepsBaseSmallAndDeterministic(t *testing.T) {
	ess := map[string]any{
		"spec":     map[string]any{"size": int64(1), "blob": strings.Repeat("x", 200<<10)},
		"metadata": map[string]any{"labels": map[string]any{"a": "b"}},
	}
	s, err := encodeBase(ess, maxBaseSize)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) > maxBaseSize {
		t.Fatalf("base is %d bytes", len(s))
	}
	base := decodeJSON([]byte(s)).(map[string]any)
	o, n := comparableEssences(base, ess)
	if d := ComputeDiff(o, n); len(d) != 0 {
		t.Errorf("unchanged large object shows a diff: %v", d)
	}
	ess2 := map[string]any{
		"spec":     map[string]any{"size": int64(2), "blob": strings.Repeat("x", 200<<10)},
		"metadata": map[string]any{"labels": map[string]any{"a": "b"}},
	}
	o, n = comparableEssences(base, ess2)
	if got := fmt.Sprint(ComputeDiff(o, n)); got != "[change spec.size: 1 -> 2]" {
		t.Errorf("small field change: %s", got)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := BackoffPolicy{Initial: time.Second, Max: 10 * time.Second}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := b.Delay(i + 1); got != w {
			t.Errorf("Delay(%d) = %s, want %s", i+1, got, w)
		}
	}
}

func TestFuncName(t *testing.T) {
	if got := funcName(TestFuncName); got != "TestFuncName" {
		t.Errorf("got %q", got)
	}
	var p BackoffPolicy
	if got := funcName(p.Delay); got != "BackoffPolicy.Delay" {
		t.Errorf("method value: got %q", got)
	}
}

func TestBookkeepingAnnotationsAreNotEssence(t *testing.T) {
	for key, want := range map[string]bool{
		"setpoint.dev/last-handled-configuration":     true,
		"other.example/handler-progress":              true,
		"kopf.zalando.org/last-handled-configuration": true,
		"example.com/owner":                           false,
		"handler-progress":                            false,
	} {
		if got := bookkeeping(key); got != want {
			t.Errorf("bookkeeping(%q) = %v", key, got)
		}
	}
}

// TestBaseWithinABudget: a base that does not fit its budget is
// compacted, and when not even that fits, it is the digest of the whole
// essence; a change is still seen, no change is not.
func TestBaseWithinABudget(t *testing.T) {
	parts := map[string]any{}
	for i := range 300 {
		parts[fmt.Sprintf("p%03d", i)] = "value"
	}
	ess := map[string]any{"spec": parts}
	s, err := encodeBase(ess, 60)
	if err != nil {
		t.Fatal(err)
	}
	base := decodeJSON([]byte(s)).(map[string]any)
	if !isRootDigest(base) {
		t.Fatalf("base %s", s)
	}
	if o, n := comparableEssences(base, ess); len(ComputeDiff(o, n)) != 0 {
		t.Error("an unchanged essence shows a diff against its root digest")
	}
	changed := map[string]any{"spec": map[string]any{"p000": "other"}}
	if o, n := comparableEssences(base, changed); len(ComputeDiff(o, n)) == 0 {
		t.Error("a changed essence shows no diff against the root digest")
	}
}
