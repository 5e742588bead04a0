package operator

import (
	"context"
	"crypto/rand"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/setpoint-dev/setpoint/operator/configdata"
)

// digestKeyField is the Secret's key that holds the digest key.
const digestKeyField = "key"

// DigestKey is the install's key for digests of ConfigMaps and Secrets
// (configdata.Key), the same in every replica and across restarts, so
// a digest changes only when the content does. It is loaded by Run, before
// any handler runs, from Options.DigestKeySecret; without that option,
// or before Run, it is the zero Key (plain SHA-256).
func (op *Operator) DigestKey() configdata.Key {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.digestKey
}

// loadDigestKey reads the key from its Secret, or creates the Secret with
// a random key; when replicas race, the first write wins and the others
// read it.
func (op *Operator) loadDigestKey(ctx context.Context) error {
	ref := op.opts.DigestKeySecret
	if ref.Name == "" {
		return nil
	}
	read := func() (configdata.Key, error) {
		s := &corev1.Secret{}
		if err := op.mgr.GetAPIReader().Get(ctx, ref, s); err != nil {
			return nil, err
		}
		k := s.Data[digestKeyField]
		if len(k) < 32 {
			// Never print it: say only what is wrong with its shape.
			return nil, fmt.Errorf("key %q holds %d bytes, want at least 32", digestKeyField, len(k))
		}
		return k, nil
	}
	key, err := read()
	if apierrors.IsNotFound(err) {
		fresh := make([]byte, 32)
		if _, err := rand.Read(fresh); err != nil {
			return fmt.Errorf("make a digest key: %w", err)
		}
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name, Labels: map[string]string{"app.kubernetes.io/managed-by": "setpoint"}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{digestKeyField: fresh},
		}
		err = op.mgr.GetClient().Create(ctx, s)
		switch {
		case err == nil:
			key = fresh
		case apierrors.IsAlreadyExists(err):
			key, err = read()
		}
	}
	if err != nil {
		return fmt.Errorf("digest key Secret %s: %w", ref, err)
	}
	op.mu.Lock()
	op.digestKey = key
	op.mu.Unlock()
	return nil
}
