package configdata

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The kinds whose content this package reads.
const (
	KindConfigMap = "ConfigMap"
	KindSecret    = "Secret"
)

// Read returns the content of the ConfigMap or Secret kind namespace/name
// through c (an operator's client reads its cache), and whether it exists.
func Read(ctx context.Context, c client.Reader, kind, namespace, name string) (map[string][]byte, bool, error) {
	key := client.ObjectKey{Namespace: namespace, Name: name}
	var data map[string][]byte
	var err error
	switch kind {
	case KindConfigMap:
		cm := &corev1.ConfigMap{}
		if err = c.Get(ctx, key, cm); err == nil {
			data = FromConfigMap(cm)
		}
	case KindSecret:
		s := &corev1.Secret{}
		if err = c.Get(ctx, key, s); err == nil {
			data = s.Data
		}
	default:
		return nil, false, fmt.Errorf("read %s %s/%s: not a ConfigMap or Secret", kind, namespace, name)
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("read %s %s/%s: %w", kind, namespace, name, err)
	}
	return data, true, nil
}

// FromConfigMap is a ConfigMap's content, data and binaryData together.
func FromConfigMap(cm *corev1.ConfigMap) map[string][]byte {
	out := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		out[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		out[k] = v
	}
	return out
}

// WriteField writes s to h after its length, so that different splits of
// the same bytes digest differently.
func WriteField(h hash.Hash, s string) {
	_, _ = h.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(s))))
	_, _ = h.Write([]byte(s))
}

// Key is the per-install secret configuration is digested under
// (HMAC-SHA256). Digests of ConfigMaps and Secrets end up on workloads,
// readable by anyone who may read a Deployment; unkeyed, a digest of a
// weak Secret could be tested against guesses offline. The zero Key
// digests with plain SHA-256 (tests, and operators run without a key
// Secret; see operator.Options.DigestKeySecret).
type Key []byte

// New is a hash under the key.
func (k Key) New() hash.Hash {
	if len(k) == 0 {
		return sha256.New()
	}
	return hmac.New(sha256.New, k)
}

// Fingerprint names the key without revealing it (16 hex digits), so a
// record made under another key is told apart from a changed value. It
// also names what digests are made of: since the caches hold digests of
// values (Conceal), Digest is over Values, and a record made over the
// values themselves (before) must not read as a change either.
func (k Key) Fingerprint() string {
	h := k.New()
	_, _ = h.Write([]byte("setpoint.dev/digest-key/values"))
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Digest is a short digest (16 hex digits) of data: of the given keys
// only when keys is non-nil (a key that is absent counts as absent, which
// differs from any value), of every key otherwise.
func (k Key) Digest(data map[string][]byte, keys []string) string {
	h := k.New()
	if keys == nil {
		keys = slices.Sorted(maps.Keys(data))
	}
	for _, k := range keys {
		WriteField(h, k)
		v, ok := data[k]
		if !ok {
			WriteField(h, "\x00absent")
			continue
		}
		WriteField(h, string(v))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// KeyList names data's keys, sorted and comma-separated ("no keys" when
// empty), for messages that say what a ConfigMap or Secret has instead of
// the key asked for; never the values. Show it only to a user who may
// read the object (Review.Allowed): see Keys.
func KeyList(data map[string][]byte) string {
	return keyList(data)
}

// Resource is the API resource of a kind this package reads
// ("configmaps", "secrets"), for authorization checks.
func Resource(kind string) string {
	if kind == KindSecret {
		return "secrets"
	}
	return "configmaps"
}

// Keys is the part of a "has no key" message that says what the
// ConfigMap or Secret has instead: its keys when mayRead, else that they
// are not listed, because a key name can say more than its owner wants
// (and its absence, that a guess was wrong).
func Keys(kind, name string, data map[string][]byte, mayRead bool) string {
	if !mayRead {
		return fmt.Sprintf("its keys are not listed: you may not read %s %s", kind, name)
	}
	return "it has: " + keyList(data)
}

func keyList(data map[string][]byte) string {
	if len(data) == 0 {
		return "no keys"
	}
	return strings.Join(slices.Sorted(maps.Keys(data)), ", ")
}
