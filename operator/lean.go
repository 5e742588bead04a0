package operator

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// lastApplied is kubectl's client-side apply copy of the whole object,
// often the largest annotation an object has.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// lean is the caches' transform: before an object is stored, it drops
// what Setpoint never reads and what makes up much of each object's
// size, so the caches (most of an operator's memory) hold less:
//
//   - every managedFields entry but the operator's own apply of the main
//     resource, which is how a pass knows a child needs no apply
//     (owned.go); the entries of other writers (the Deployment
//     controller's status, kubectl's) are the bulk of them;
//   - kubectl's last-applied annotation, a second copy of the object;
//   - with Options.ConcealConfigValues, the values of ConfigMaps and
//     Secrets, each replaced by its digest under the install's key
//     (configdata.Key.Conceal): a cluster's Secrets are most of its
//     bytes, the built-in operators need only their keys and whether a
//     value changed, and so no Secret value stays in their memory.
//
// Handlers and status functions therefore see cached objects without
// them (Operator.APIReader reads whole objects, values included). Setpoint never writes
// a cached object back whole (it patches and applies), so nothing is
// removed from the stored object.
func (op *Operator) lean(obj any) (any, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		leanUnstructured(u.Object, op.opts.Name)
		return u, nil
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return obj, nil // a tombstone or a list: nothing to drop
	}
	if mf := m.GetManagedFields(); len(mf) > 0 {
		var keep []metav1.ManagedFieldsEntry
		for _, e := range mf {
			if ownApply(op.opts.Name, e.Manager, string(e.Operation), e.Subresource) {
				keep = append(keep, e)
			}
		}
		m.SetManagedFields(keep)
	}
	if ann := m.GetAnnotations(); ann[lastApplied] != "" {
		delete(ann, lastApplied)
		m.SetAnnotations(ann)
	}
	if op.opts.ConcealConfigValues {
		// The key is loaded before the caches start (Run).
		op.DigestKey().Conceal(obj)
	}
	return obj, nil
}

// leanUnstructured is lean on an unstructured object's map, in place.
func leanUnstructured(obj map[string]any, manager string) {
	md, _ := obj["metadata"].(map[string]any)
	if md == nil {
		return
	}
	if entries, _ := md["managedFields"].([]any); len(entries) > 0 {
		var keep []any
		for _, e := range entries {
			m, _ := e.(map[string]any)
			mgr, _ := m["manager"].(string)
			op, _ := m["operation"].(string)
			sub, _ := m["subresource"].(string)
			if ownApply(manager, mgr, op, sub) {
				keep = append(keep, e)
			}
		}
		if keep == nil {
			delete(md, "managedFields")
		} else {
			md["managedFields"] = keep
		}
	}
	if ann, _ := md["annotations"].(map[string]any); ann != nil {
		delete(ann, lastApplied)
	}
}
