package operator

import (
	"errors"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ReasonBookkeepingTooLarge is the Warning Event of an object on which
// the API server refuses Setpoint's bookkeeping because the object, or
// its annotations, would be too large.
const ReasonBookkeepingTooLarge = "BookkeepingTooLarge"

// unstored keeps in memory the bookkeeping annotations the API server
// refused for size, per object, so that a handler that succeeded is not
// run again on every pass (before this, each back-off ran the create
// handler again). Only this process knows them: after a restart the
// handlers of such an object run once more, and a call that kills the
// process is not counted. A later write that fits stores them and ends
// the entry.
type unstored struct {
	mu sync.Mutex
	m  map[types.NamespacedName]unstoredEntry
}

type unstoredEntry struct {
	uid types.UID
	// values by annotation key; nil: deleted.
	values map[string]*string
}

// overlay puts the bookkeeping kept in memory for u onto u, and reports
// whether there was any.
func (s *unstored) overlay(u *unstructured.Unstructured) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[types.NamespacedName{Namespace: u.GetNamespace(), Name: u.GetName()}]
	if !ok || e.uid != u.GetUID() {
		return false
	}
	setAnnotations(u, e.values)
	return true
}

// keep records what a refused patch would have written, onto u too, and
// reports whether the object had no entry before.
func (s *unstored) keep(u *unstructured.Unstructured, p *metaPatch) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[types.NamespacedName]unstoredEntry{}
	}
	key := types.NamespacedName{Namespace: u.GetNamespace(), Name: u.GetName()}
	e, ok := s.m[key]
	first := !ok || e.uid != u.GetUID()
	if first {
		e = unstoredEntry{uid: u.GetUID(), values: map[string]*string{}}
	}
	for k, v := range p.set {
		e.values[k] = &v
	}
	for _, k := range p.del {
		e.values[k] = nil
	}
	s.m[key] = e
	setAnnotations(u, e.values)
	return first
}

// stored forgets the keys a successful patch wrote.
func (s *unstored) stored(u *unstructured.Unstructured, p *metaPatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := types.NamespacedName{Namespace: u.GetNamespace(), Name: u.GetName()}
	e, ok := s.m[key]
	if !ok {
		return
	}
	for k := range p.set {
		delete(e.values, k)
	}
	for _, k := range p.del {
		delete(e.values, k)
	}
	if len(e.values) == 0 || e.uid != u.GetUID() {
		delete(s.m, key)
	}
}

// forget drops the entry of an object that is gone.
func (s *unstored) forget(key types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
}

func setAnnotations(u *unstructured.Unstructured, values map[string]*string) {
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	for k, v := range values {
		if v == nil {
			delete(ann, k)
		} else {
			ann[k] = *v
		}
	}
	u.SetAnnotations(ann)
}

// tooLarge reports whether the API server refused a write because the
// object would be too large: its annotations over their 256 KiB (a
// validation error on metadata.annotations), or the whole object over
// what etcd takes in one request (1.5 MiB by default), or the request
// body over the API server's limit.
func tooLarge(err error) bool {
	if err == nil {
		return false
	}
	if apierrors.IsRequestEntityTooLargeError(err) || strings.Contains(err.Error(), "request is too large") {
		return true
	}
	var status apierrors.APIStatus
	if !apierrors.IsInvalid(err) || !errors.As(err, &status) || status.Status().Details == nil {
		return false
	}
	for _, c := range status.Status().Details.Causes {
		if c.Type == metav1.CauseType(field.ErrorTypeTooLong) && strings.HasPrefix(c.Field, "metadata.annotations") {
			return true
		}
	}
	return false
}
