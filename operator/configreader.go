package operator

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/operator/configdata"
)

// ConfigReader reads like Client, except ConfigMaps and Secrets: those
// it returns with their keys and the digest of each value
// (configdata.Key.Conceal), without caching any whole. What it caches of
// them is their metadata (a metadata-only watch, as WatchConfig makes);
// the digests of one are made from a single read from the API server
// each time its resourceVersion changes, and kept, for the ConfigMaps
// and Secrets read through it only. So an operator beside 20,000 Secrets
// of 50 KiB neither keeps nor receives 1 GiB of them, only their
// metadata. Use it with configdata.Read and ReadAll for digests (of
// configuration pods read, to roll them on a change); read values with
// APIReader.
func (op *Operator) ConfigReader() client.Reader {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.configs == nil {
		op.configs = &configReader{cache: op.mgr.GetClient(), api: op.mgr.GetAPIReader(), key: op.DigestKey, known: map[string]configEntry{}}
	}
	return op.configs
}

// configReader is ConfigReader.
type configReader struct {
	cache client.Reader // metadata, and every other kind
	api   client.Reader // the content of a changed ConfigMap or Secret
	key   func() configdata.Key

	mu    sync.Mutex
	known map[string]configEntry // by "Kind/namespace/name"
}

// configEntry is a ConfigMap or Secret as last read, concealed.
type configEntry struct {
	uid types.UID
	rv  string
	obj client.Object
}

func (r *configReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	var kind string
	switch obj.(type) {
	case *corev1.ConfigMap:
		kind = configdata.KindConfigMap
	case *corev1.Secret:
		kind = configdata.KindSecret
	default:
		return r.cache.Get(ctx, key, obj, opts...)
	}
	id := kind + "/" + key.Namespace + "/" + key.Name
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind))
	if err := r.cache.Get(ctx, key, m); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(id)
		}
		return err
	}
	r.mu.Lock()
	e, ok := r.known[id]
	r.mu.Unlock()
	if !ok || e.uid != m.UID || e.rv != m.ResourceVersion {
		fresh := obj.DeepCopyObject().(client.Object)
		if err := r.api.Get(ctx, key, fresh); err != nil {
			if apierrors.IsNotFound(err) {
				r.forget(id)
			}
			return err
		}
		r.key().Conceal(fresh)
		// As the caches keep objects (lean.go).
		fresh.SetManagedFields(nil)
		if ann := fresh.GetAnnotations(); ann[lastApplied] != "" {
			delete(ann, lastApplied)
			fresh.SetAnnotations(ann)
		}
		// The read may be newer than the metadata cache: the next call
		// reads again until the cache has caught up with it.
		e = configEntry{uid: fresh.GetUID(), rv: fresh.GetResourceVersion(), obj: fresh}
		r.mu.Lock()
		r.known[id] = e
		r.mu.Unlock()
	}
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		e.obj.(*corev1.ConfigMap).DeepCopyInto(o)
	case *corev1.Secret:
		e.obj.(*corev1.Secret).DeepCopyInto(o)
	}
	return nil
}

func (r *configReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	switch list.(type) {
	case *corev1.ConfigMapList, *corev1.SecretList:
		return fmt.Errorf("ConfigReader lists no ConfigMaps or Secrets: get them one by one")
	}
	return r.cache.List(ctx, list, opts...)
}

// forget drops what is known of a ConfigMap or Secret that is gone.
func (r *configReader) forget(id string) {
	r.mu.Lock()
	delete(r.known, id)
	r.mu.Unlock()
}
