package operator

import (
	"fmt"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The caches keep each kind in one form, chosen here, and every read and
// watch of the kind through the library uses it: controller-runtime
// keeps one cache per kind and form, so a read in the other form would
// start a second watch and copy of every object of the kind.
//
// Kubernetes' own kinds (Go types from k8s.io/api) are kept typed: a
// typed object takes little more than half the memory of the same
// object decoded as nested maps, even after the caches' transform (an
// App's Deployment with its status: 5.4 against 9.6 KB,
// BenchmarkCachedDeployment), it arrives as protobuf, which decodes
// faster, and the caches are most of an operator's memory. A typed read through the manager's client (which
// reads typed objects from the cache) then shares that cache too.
// Other kinds (custom resources) are kept unstructured: their Go type may
// not know every field the API server stores, and a pass keeps books on
// them as maps.

// typedForm reports whether the caches keep gvk typed.
func (op *Operator) typedForm(gvk schema.GroupVersionKind) bool {
	if v, ok := op.forms.Load(gvk); ok {
		return v.(bool)
	}
	typed := false
	if o, err := op.opts.Scheme.New(gvk); err == nil {
		if t := reflect.TypeOf(o); t.Kind() == reflect.Pointer {
			typed = strings.HasPrefix(t.Elem().PkgPath(), "k8s.io/api/")
		}
	}
	op.forms.Store(gvk, typed)
	return typed
}

// newCached returns an empty object of gvk in its cached form, with its
// kind set (readiness and error messages name it).
func (op *Operator) newCached(gvk schema.GroupVersionKind) client.Object {
	if op.typedForm(gvk) {
		if o, err := op.opts.Scheme.New(gvk); err == nil {
			if co, ok := o.(client.Object); ok {
				co.GetObjectKind().SetGroupVersionKind(gvk)
				return co
			}
		}
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u
}

// newCachedList returns an empty list of gvk's objects in their cached
// form.
func (op *Operator) newCachedList(gvk schema.GroupVersionKind) client.ObjectList {
	lgvk := gvk.GroupVersion().WithKind(gvk.Kind + "List")
	if op.typedForm(gvk) {
		if o, err := op.opts.Scheme.New(lgvk); err == nil {
			if l, ok := o.(client.ObjectList); ok {
				return l
			}
		}
	}
	l := &unstructured.UnstructuredList{}
	l.SetGroupVersionKind(lgvk)
	return l
}

// cachedItems returns a list's objects, in place (no copy: read only).
func cachedItems(list client.ObjectList) ([]client.Object, error) {
	if ul, ok := list.(*unstructured.UnstructuredList); ok {
		out := make([]client.Object, len(ul.Items))
		for i := range ul.Items {
			out[i] = &ul.Items[i]
		}
		return out, nil
	}
	var out []client.Object
	err := meta.EachListItem(list, func(o runtime.Object) error {
		co, ok := o.(client.Object)
		if !ok {
			return fmt.Errorf("list item %T is not an object", o)
		}
		out = append(out, co)
		return nil
	})
	return out, err
}

// asUnstructured returns o as unstructured, of kind gvk: o itself if it
// is, else a conversion (which shares nothing with o).
func asUnstructured(o client.Object, gvk schema.GroupVersionKind) (*unstructured.Unstructured, error) {
	if u, ok := o.(*unstructured.Unstructured); ok {
		return u, nil
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, fmt.Errorf("convert %s %s: %w", gvk.Kind, o.GetName(), err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvk)
	return u, nil
}

// copyInto fills into (a typed object, or unstructured) with a copy of
// o, an object of kind gvk in its cached form.
func copyInto(o client.Object, into client.Object, gvk schema.GroupVersionKind) error {
	if reflect.TypeOf(o) == reflect.TypeOf(into) {
		reflect.ValueOf(into).Elem().Set(reflect.ValueOf(o.DeepCopyObject()).Elem())
		into.GetObjectKind().SetGroupVersionKind(gvk)
		return nil
	}
	u, isU := o.(*unstructured.Unstructured)
	if iu, ok := into.(*unstructured.Unstructured); ok {
		if isU {
			iu.Object = runtime.DeepCopyJSON(u.Object)
			return nil
		}
		c, err := asUnstructured(o, gvk) // a new map
		if err != nil {
			return err
		}
		iu.Object = c.Object
		return nil
	}
	if !isU {
		return fmt.Errorf("decode %s %s: a %T cannot be read into a %T", gvk.Kind, o.GetName(), o, into)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		return fmt.Errorf("decode %s %s: %w", gvk.Kind, o.GetName(), err)
	}
	into.GetObjectKind().SetGroupVersionKind(gvk)
	return nil
}
