package operator

import (
	"encoding/json"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// metaPatch collects the bookkeeping changes of one pass so they cost one
// write.
type metaPatch struct {
	set       map[string]string
	del       []string
	finalizer string // to add or remove
	addFin    bool
	removeFin bool
}

func (p *metaPatch) setAnnotation(k, v string) {
	if p.set == nil {
		p.set = map[string]string{}
	}
	p.set[k] = v
}

func (p *metaPatch) empty() bool {
	return len(p.set) == 0 && len(p.del) == 0 && !p.addFin && !p.removeFin
}

type jsonOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// annotations returns a JSON merge patch of our annotations, or nil when
// nothing would change. A merge patch never fails on a key that is
// already gone, so a slightly stale view of the object is harmless; only
// we write these keys. It carries u's UID, which the API server refuses
// to change: a patch addressed by name must not land on another object
// of the name, made since u was read (its diff base or progress would
// skip the new object's create handler, or its delete handler).
func (p *metaPatch) annotations(u *unstructured.Unstructured) []byte {
	ann := u.GetAnnotations()
	changed := map[string]any{}
	for k, v := range p.set {
		if cur, ok := ann[k]; !ok || cur != v {
			changed[k] = v
		}
	}
	for _, k := range p.del {
		if _, ok := ann[k]; ok {
			changed[k] = nil
		}
	}
	if len(changed) == 0 {
		return nil
	}
	md := map[string]any{"annotations": changed}
	if uid := u.GetUID(); uid != "" {
		md["uid"] = uid
	}
	b, _ := json.Marshal(map[string]any{"metadata": md})
	return b
}

// finalizers returns a JSON patch that adds or removes our finalizer, or
// nil when nothing would change. The list is shared with other
// controllers, so the patch first tests resourceVersion: it fails rather
// than overwrite a change it has not seen.
func (p *metaPatch) finalizers(u *unstructured.Unstructured) []byte {
	fins := u.GetFinalizers()
	has := slices.Contains(fins, p.finalizer)
	var op jsonOp
	switch {
	case p.addFin && !has && len(fins) == 0:
		op = jsonOp{Op: "add", Path: "/metadata/finalizers", Value: []string{p.finalizer}}
	case p.addFin && !has:
		op = jsonOp{Op: "add", Path: "/metadata/finalizers/-", Value: p.finalizer}
	case p.removeFin && has:
		op = jsonOp{Op: "remove", Path: "/metadata/finalizers/" + itoa(slices.Index(fins, p.finalizer))}
	default:
		return nil
	}
	b, _ := json.Marshal([]jsonOp{{Op: "test", Path: "/metadata/resourceVersion", Value: u.GetResourceVersion()}, op})
	return b
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func jsonPatch(ops ...jsonOp) ([]byte, error) {
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encode patch: %w", err)
	}
	return b, nil
}
