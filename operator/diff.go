package operator

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// DiffOp is the kind of one change in a Diff.
type DiffOp string

// The operations of a Diff, as in Kopf.
const (
	Add    DiffOp = "add"
	Change DiffOp = "change"
	Remove DiffOp = "remove"
)

// DiffItem is one change: the field path, and its value before and after
// (nil when absent). Values are as decoded from JSON: map[string]any,
// []any, string, float64 (or int64), bool.
type DiffItem struct {
	Op   DiffOp
	Path []string
	Old  any
	New  any
}

func (d DiffItem) String() string {
	return fmt.Sprintf("%s %s: %v -> %v", d.Op, strings.Join(d.Path, "."), d.Old, d.New)
}

// Diff is the list of changes between two versions of an object's
// essence, sorted by path. Maps are compared key by key; lists and scalars
// as whole values.
type Diff []DiffItem

// ComputeDiff compares two JSON-like values.
func ComputeDiff(old, new any) Diff {
	var d Diff
	diffInto(&d, nil, old, new)
	sort.SliceStable(d, func(i, j int) bool { return strings.Join(d[i].Path, ".") < strings.Join(d[j].Path, ".") })
	return d
}

func diffInto(d *Diff, path []string, old, new any) {
	om, oldIsMap := old.(map[string]any)
	nm, newIsMap := new.(map[string]any)
	switch {
	case old == nil && new == nil:
	case old == nil:
		*d = append(*d, DiffItem{Op: Add, Path: clonePath(path), New: new})
	case new == nil:
		*d = append(*d, DiffItem{Op: Remove, Path: clonePath(path), Old: old})
	case oldIsMap && newIsMap:
		for k, ov := range om {
			diffInto(d, append(path, k), ov, nm[k])
		}
		for k, nv := range nm {
			if _, ok := om[k]; !ok {
				diffInto(d, append(path, k), nil, nv)
			}
		}
	case !reflect.DeepEqual(old, new):
		*d = append(*d, DiffItem{Op: Change, Path: clonePath(path), Old: old, New: new})
	}
}

func clonePath(p []string) []string { return append([]string(nil), p...) }

// Under returns the part of the diff at or below path, with paths made
// relative to it.
func (d Diff) Under(path []string) Diff {
	var out Diff
	for _, it := range d {
		if len(it.Path) >= len(path) && reflect.DeepEqual(it.Path[:len(path)], path) {
			it.Path = clonePath(it.Path[len(path):])
			out = append(out, it)
		} else if len(it.Path) < len(path) && reflect.DeepEqual(it.Path, path[:len(it.Path)]) {
			// A whole parent was added or removed: project it onto path.
			out = append(out, DiffItem{Op: it.Op, Old: lookup(it.Old, path[len(it.Path):]), New: lookup(it.New, path[len(it.Path):])})
		} else if n := len(it.Path) - 1; n >= 0 && it.Path[n] == digestKey && n <= len(path) && reflect.DeepEqual(it.Path[:n], path[:n]) {
			// A parent kept as its digest (a large part of the diff base)
			// changed: anything under it may have, old values unknown.
			out = append(out, DiffItem{Op: Change})
		}
	}
	return out
}

// lookup returns the value at path inside a JSON-like value, or nil.
func lookup(v any, path []string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// ParsePath splits a dotted field path ("spec.replicas").
func ParsePath(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ".")
}
