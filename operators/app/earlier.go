package app

import (
	"context"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator/configdata"
)

// earlierHashes keeps the pods of an App made by an operator that hashed
// configuration values themselves (before the caches held digests of
// them, configdata.Key.Conceal) from rolling only because the way of
// hashing changed: while the configuration is the one such a hash was
// made of, the App keeps it. It reads the values from the API server,
// once per App and content while this process runs, and only for an App
// whose pods carry a hash that is not the current one.
type earlierHashes struct {
	api client.Reader // the API server: values, not digests
	// live is the cache, for the App's Deployments; not op.Client(),
	// which sends unstructured reads to the API server.
	live client.Reader

	mu   sync.Mutex
	seen map[types.UID]earlierHash
}

// earlierHash is what an App's configuration hashes to now (over
// digests) and over its values.
type earlierHash struct{ now, values string }

// keep returns the hash the App's pods should carry: the one they carry
// when it is the hash of the same configuration's values, else hash.
func (e *earlierHashes) keep(ctx context.Context, app *v1alpha1.App, key configdata.Key, hash string) (string, error) {
	if hash == "" {
		// No configuration: no hash, whatever the pods carry.
		return "", nil
	}
	carried, err := e.carried(ctx, app)
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	known, ok := e.seen[app.UID]
	if carried == "" || carried == hash {
		// Nothing to keep, now or later: the pods carry a current hash.
		delete(e.seen, app.UID)
		e.mu.Unlock()
		return hash, nil
	}
	e.mu.Unlock()
	if !ok || known.now != hash {
		configs, err := configdata.ReadAll(ctx, e.api, app.Namespace, uses(app))
		if err != nil {
			return "", err
		}
		known = earlierHash{now: hash, values: ConfigHash(key, configs)}
		e.mu.Lock()
		e.seen[app.UID] = known
		e.mu.Unlock()
	}
	if carried == known.values {
		return carried, nil
	}
	return hash, nil
}

// carried is the config hash on the pod template of the App's first
// Deployment found in the cache ("" when none is). The read is typed, the
// form Setpoint's caches keep Kubernetes' own kinds in, so it shares the
// cache the App's children are watched through.
func (e *earlierHashes) carried(ctx context.Context, app *v1alpha1.App) (string, error) {
	for _, p := range app.Spec.Processes {
		d := &appsv1.Deployment{}
		err := e.live.Get(ctx, types.NamespacedName{Namespace: app.Namespace, Name: ProcessName(app, p.Name)}, d)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", err
		}
		return d.Spec.Template.Annotations[AnnotationConfigHash], nil
	}
	return "", nil
}
