package operator

import (
	"encoding/json"
	"unique"

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
			for _, e := range keep {
				compactFields(e.(map[string]any))
			}
			md["managedFields"] = keep
		}
	}
	if ann, _ := md["annotations"].(map[string]any); ann != nil {
		delete(ann, lastApplied)
	}
	internKeys(obj)
}

// compactFieldsKey holds, in a cached managedFields entry, the entry's
// field set as JSON text (in place of fieldsV1).
const compactFieldsKey = "setpoint.dev/fieldsV1"

// compactFields replaces an entry's field set, decoded as nested maps,
// by its JSON text. A field set mirrors every field the operator
// applies, one map per field: measured on an App's Deployment, the maps
// were half of the object's size in the cache, the text a tenth of
// that. Only a pass reads it (appliedFields), on a child whose intent is
// unchanged. The entry is left without fieldsV1, so GetManagedFields on
// a cached object shows the entry with no field set rather than one
// that does not parse.
func compactFields(entry map[string]any) {
	f, ok := entry["fieldsV1"].(map[string]any)
	if !ok {
		return // none, or compacted already (a transform may run twice)
	}
	data, err := json.Marshal(f)
	if err != nil {
		return
	}
	entry[compactFieldsKey] = string(data)
	delete(entry, "fieldsV1")
}

// internKeys makes every map key of an object decoded from JSON share
// one copy of its text with the same key of every other object: the
// decoder allocates each key anew, and the keys of a kind's objects are
// nearly all the same ("metadata", "containerPort", label keys).
// Assigning an existing key keeps the entry and stores the key given.
// unique's copies are dropped when no object holds them.
func internKeys(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			internKeys(e)
			t[unique.Make(k).Value()] = e
		}
	case []any:
		for _, e := range t {
			internKeys(e)
		}
	}
}
