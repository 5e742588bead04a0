package operator

import (
	"k8s.io/apimachinery/pkg/api/resource"
)

// Contains reports whether every field set in desired has the same value
// in live: the test that tells whether applying desired would change
// anything. Both are JSON-like values (as in unstructured objects).
//
//   - A map contains another when it contains each of its entries. An
//     entry desired with a zero value ("", 0, false, null, empty map or
//     list) that live lacks is taken as equal: the API server drops such
//     values.
//   - Lists must have the same length and contain each other element by
//     element, so defaults the server adds inside elements (a container's
//     terminationMessagePath, a port's protocol) do not count as a change.
//   - Numbers compare by value whatever their Go type, and two strings
//     that are equal quantities ("0.5" and "500m") are equal.
func Contains(live, desired any) bool {
	switch d := desired.(type) {
	case nil:
		return true
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			return len(d) == 0 && live == nil
		}
		for k, dv := range d {
			lv, present := l[k]
			if !present {
				if isZero(dv) {
					continue
				}
				return false
			}
			if !Contains(lv, dv) {
				return false
			}
		}
		return true
	case []any:
		l, ok := live.([]any)
		if !ok {
			return len(d) == 0 && live == nil
		}
		if len(l) != len(d) {
			return false
		}
		for i := range d {
			if !Contains(l[i], d[i]) {
				return false
			}
		}
		return true
	case string:
		l, ok := live.(string)
		if !ok {
			return false
		}
		if l == d {
			return true
		}
		lq, err1 := resource.ParseQuantity(l)
		dq, err2 := resource.ParseQuantity(d)
		return err1 == nil && err2 == nil && lq.Cmp(dq) == 0
	default:
		if dn, ok := number(desired); ok {
			ln, ok := number(live)
			return ok && ln == dn
		}
		return live == desired
	}
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

func isZero(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case bool:
		return !t
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	}
	n, ok := number(v)
	return ok && n == 0
}
