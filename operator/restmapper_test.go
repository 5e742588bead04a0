package operator

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// countingMapper counts the RESTMapping calls that reach it.
type countingMapper struct {
	*meta.DefaultRESTMapper
	calls int
}

func (c *countingMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	c.calls++
	return c.DefaultRESTMapper.RESTMapping(gk, versions...)
}

func TestMemoMapper(t *testing.T) {
	gv := schema.GroupVersion{Group: "apps", Version: "v1"}
	inner := &countingMapper{DefaultRESTMapper: meta.NewDefaultRESTMapper([]schema.GroupVersion{gv})}
	m := &memoMapper{RESTMapper: inner}
	deploy := schema.GroupKind{Group: "apps", Kind: "Deployment"}

	// A miss is not remembered: the kind added later is found.
	if _, err := m.RESTMapping(deploy, "v1"); !meta.IsNoMatchError(err) {
		t.Fatalf("unknown kind: err = %v, want no match", err)
	}
	inner.Add(gv.WithKind("Deployment"), meta.RESTScopeNamespace)
	first, err := m.RESTMapping(deploy, "v1")
	if err != nil || first.Resource.Resource != "deployments" || first.Scope.Name() != meta.RESTScopeNameNamespace {
		t.Fatalf("mapping = %+v, %v", first, err)
	}
	calls := inner.calls
	first.Resource.Resource = "changed by a caller"
	for range 3 {
		again, err := m.RESTMapping(deploy, "v1")
		if err != nil || again.Resource.Resource != "deployments" {
			t.Fatalf("remembered mapping = %+v, %v (a caller's change must not reach it)", again, err)
		}
	}
	if inner.calls != calls {
		t.Errorf("an exact version reached the mapper %d more times", inner.calls-calls)
	}
	// Without a version (the preferred one), every call goes through.
	for range 2 {
		if _, err := m.RESTMapping(deploy); err != nil {
			t.Fatal(err)
		}
	}
	if inner.calls != calls+2 {
		t.Errorf("calls without a version reached the mapper %d times, want 2", inner.calls-calls)
	}
}
