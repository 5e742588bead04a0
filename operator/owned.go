package operator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// How a pass decides that a child needs no apply, exactly and without a
// schema:
//
//  1. The child carries the digest of the intent Setpoint last applied to
//     it (an annotation that is part of that intent). A desired object
//     whose digest differs is applied: a changed value ("1.10" to "1.1")
//     or a field no longer desired (which server-side apply then removes)
//     changes the digest.
//  2. Every field the desired object sets is still owned by Setpoint's
//     field manager in the child's managedFields. Someone who changes or
//     removes one of those fields by any write takes it from that manager
//     (an update moves the ownership of the fields it changes), so drift
//     shows as a field no longer owned, and is applied back.
//
// Values are never compared, so a quantity the API server normalises
// ("0.5" to "500m") or a default it adds is not drift; and fields or list
// entries that other managers own (a toleration added by a webhook, an
// env var added by the reloader) are not looked at.

// appliedDigest is the digest of a desired child, over its canonical
// JSON (encoding/json sorts map keys).
func appliedDigest(obj map[string]any) (string, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16]), nil
}

// ownApply reports whether a managedFields entry (its manager, operation
// and subresource) is manager's apply of the main resource: the entry a
// pass reads, and the only one the caches keep (lean.go).
func ownApply(manager, entryManager, operation, subresource string) bool {
	return entryManager == manager && operation == string(metav1.ManagedFieldsOperationApply) && subresource == ""
}

// appliedFields returns the fieldsV1 of manager's Apply entry for the
// main resource (not a subresource), or nil if it has none.
func appliedFields(obj client.Object, manager string) map[string]any {
	live, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return typedAppliedFields(obj, manager)
	}
	// No copy: live may be the cache's own object, and is only read.
	v, _, _ := unstructured.NestedFieldNoCopy(live.Object, "metadata", "managedFields")
	entries, _ := v.([]any)
	for _, e := range entries {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		mgr, _ := m["manager"].(string)
		op, _ := m["operation"].(string)
		sub, _ := m["subresource"].(string)
		if !ownApply(manager, mgr, op, sub) {
			continue
		}
		if f, ok := m["fieldsV1"].(map[string]any); ok {
			return f
		}
		f := map[string]any{}
		if text, ok := m[compactFieldsKey].(string); ok {
			// The cache's compact form (lean.go). Text that does not
			// parse leaves an empty set: the child is applied again.
			if err := json.Unmarshal([]byte(text), &f); err != nil {
				f = map[string]any{}
			}
		}
		return f
	}
	return nil
}

// typedAppliedFields is appliedFields for a typed object, whose field
// sets are kept as JSON text (metav1.FieldsV1), the compact form.
func typedAppliedFields(obj client.Object, manager string) map[string]any {
	for _, e := range obj.GetManagedFields() {
		if !ownApply(manager, e.Manager, string(e.Operation), e.Subresource) {
			continue
		}
		f := map[string]any{}
		if e.FieldsV1 != nil {
			// Text that does not parse leaves an empty set, as above.
			if err := json.Unmarshal(e.FieldsV1.Raw, &f); err != nil {
				f = map[string]any{}
			}
		}
		return f
	}
	return nil
}

// ownsAll reports whether the field set fields (the fieldsV1 format)
// holds every field that desired, an object as applied, sets. Identity
// fields (apiVersion, kind, metadata.name and namespace), which no
// manager owns, are left out.
func ownsAll(fields map[string]any, desired map[string]any) bool {
	for k, v := range desired {
		switch k {
		case "apiVersion", "kind":
			continue
		case "metadata":
			meta, ok := v.(map[string]any)
			if !ok {
				return false
			}
			rest := map[string]any{}
			for mk, mv := range meta {
				if mk != "name" && mk != "namespace" {
					rest[mk] = mv
				}
			}
			if len(rest) == 0 {
				continue
			}
			node, ok := fields["f:metadata"].(map[string]any)
			if !ok || !ownsValue(node, rest) {
				return false
			}
			continue
		}
		if !ownsField(fields, k, v) {
			return false
		}
	}
	return true
}

// ownsField checks the field named name, with value v, of a map whose
// field set node is fields.
func ownsField(fields map[string]any, name string, v any) bool {
	if v == nil {
		// An explicit null claims nothing.
		return true
	}
	node, ok := fields["f:"+name].(map[string]any)
	if !ok {
		return false
	}
	return ownsValue(node, v)
}

// ownsValue checks a value against its own field set node. A node with
// no children is a leaf: a scalar, or an atomic map or list, owned whole.
func ownsValue(node map[string]any, v any) bool {
	if !hasChildren(node) {
		return true
	}
	switch t := v.(type) {
	case map[string]any:
		for k, cv := range t {
			if !ownsField(node, k, cv) {
				return false
			}
		}
		return true
	case []any:
		for i, e := range t {
			if !ownsElement(node, i, e) {
				return false
			}
		}
		return true
	}
	return true
}

// hasChildren tells a granular node from a leaf; "." marks the node
// itself as owned and is not a child.
func hasChildren(node map[string]any) bool {
	for k := range node {
		if k != "." {
			return true
		}
	}
	return false
}

// ownsElement finds list element e (at index i) in the list's node: by
// its key fields ("k:{...}"), by value for sets ("v:..."), or by index.
func ownsElement(node map[string]any, i int, e any) bool {
	if m, ok := e.(map[string]any); ok {
		for key, child := range node {
			km, ok := strings.CutPrefix(key, "k:")
			if !ok {
				continue
			}
			cn, _ := child.(map[string]any)
			if keyMatches(km, m) && ownsValue(cn, m) {
				return true
			}
		}
	} else if data, err := json.Marshal(e); err == nil {
		if _, ok := node["v:"+string(data)]; ok {
			return true
		}
	}
	cn, ok := node["i:"+itoa(i)].(map[string]any)
	return ok && ownsValue(cn, e)
}

// keyMatches reports whether element m has the key fields of a "k:"
// entry. A key field m lacks was defaulted by the API server (a port's
// protocol) and matches any value.
func keyMatches(keyJSON string, m map[string]any) bool {
	var key map[string]any
	if err := json.Unmarshal([]byte(keyJSON), &key); err != nil {
		return false
	}
	for f, kv := range key {
		ev, present := m[f]
		if !present {
			continue
		}
		if !sameJSON(ev, kv) {
			return false
		}
	}
	return true
}

// sameJSON compares two scalars as JSON values (numbers by value,
// whatever their Go type).
func sameJSON(a, b any) bool {
	an, aok := number(a)
	bn, bok := number(b)
	if aok || bok {
		return aok && bok && an == bn
	}
	return a == b
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}
