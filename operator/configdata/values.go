package configdata

import (
	"crypto/rand"
	"encoding/hex"

	corev1 "k8s.io/api/core/v1"
)

// AnnotationValues marks a ConfigMap or Secret whose values Conceal
// replaced with their digests, so that whoever looks at a cached copy
// (a debugger, a handler author puzzled by 64 hex digits) is told, and
// so that Conceal, which an informer may call more than once on one
// object, digests each value once. Conceal sets it only on the
// in-memory copy; it is never written.
const AnnotationValues = "configdata.setpoint.dev/values"

// concealed is AnnotationValues' value: "digests", and a nonce of this
// process, so that an object stored with the annotation (anyone may
// write it) is not taken for one already concealed.
var concealed = "digests " + rand.Text()[:8]

// Concealed reports whether Conceal replaced the values of the object
// whose annotations are ann.
func Concealed(ann map[string]string) bool { return ann[AnnotationValues] == concealed }

// Value is the digest of one value under k (64 hex digits), the form in
// which the operators' caches hold configuration.
func (k Key) Value(v []byte) []byte {
	h := k.New()
	WriteField(h, "setpoint.dev/value")
	_, _ = h.Write(v)
	return hex.AppendEncode(nil, h.Sum(nil))
}

// Values is data with each value replaced by its digest (Value), keys
// kept: what Digest and Hash of a cached ConfigMap or Secret are made
// over (see Conceal).
func (k Key) Values(data map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(data))
	for name, v := range data {
		out[name] = k.Value(v)
	}
	return out
}

// Conceal replaces, in place, every value of obj, a ConfigMap or Secret,
// with its digest (Value), and reports whether obj is one. It is the
// operators' cache transform for these kinds: a cluster's Secrets and
// ConfigMaps are most of its bytes (20,000 Secrets of 50 KiB are 1 GiB),
// and what the operators do with them (know that a key exists, know
// that a value changed) needs only keys and digests. So no Secret value
// is kept in an operator's memory; values are read, when they are needed,
// from the API server. A ConfigMap's text and binary values digest alike
// (FromConfigMap of a concealed ConfigMap is Values of the original's).
func (k Key) Conceal(obj any) bool {
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		if Concealed(o.Annotations) {
			return true
		}
		for name, v := range o.Data {
			o.Data[name] = string(k.Value([]byte(v)))
		}
		for name, v := range o.BinaryData {
			o.BinaryData[name] = k.Value(v)
		}
		mark(&o.ObjectMeta.Annotations)
	case *corev1.Secret:
		if Concealed(o.Annotations) {
			return true
		}
		for name, v := range o.Data {
			o.Data[name] = k.Value(v)
		}
		o.StringData = nil
		mark(&o.ObjectMeta.Annotations)
	default:
		return false
	}
	return true
}

func mark(ann *map[string]string) {
	if *ann == nil {
		*ann = map[string]string{}
	}
	(*ann)[AnnotationValues] = concealed
}
