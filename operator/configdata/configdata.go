package configdata

import (
	"context"
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

// Digest is a short digest (16 hex digits) of data: of the given keys
// only when keys is non-nil (a key that is absent counts as absent, which
// differs from any value), of every key otherwise.
func Digest(data map[string][]byte, keys []string) string {
	h := sha256.New()
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
// the key asked for; never the values.
func KeyList(data map[string][]byte) string {
	if len(data) == 0 {
		return "no keys"
	}
	return strings.Join(slices.Sorted(maps.Keys(data)), ", ")
}
