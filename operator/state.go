package operator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Bookkeeping on the object. The keys share the operator's prefix, so two
// operators watching one kind keep separate books (zalando-incubator/kopf
// #372 is what happens otherwise).
type keys struct{ prefix string }

// Names of the bookkeeping annotations, after the prefix.
const (
	baseName     = "last-handled-configuration"
	progressName = "handler-progress"
	// appliedName is on children: the digest of the intent last applied.
	appliedName = "applied-intent"
	// handOffName is read from desired children and never applied: the
	// fields whose ownership passes to someone else (HandOff).
	handOffName = "hand-off"
)

func (k keys) base() string      { return k.prefix + "/" + baseName }
func (k keys) progress() string  { return k.prefix + "/" + progressName }
func (k keys) finalizer() string { return k.prefix + "/finalizer" }
func (k keys) applied() string   { return k.prefix + "/" + appliedName }

// bookkeeping reports whether an annotation is the bookkeeping of this or
// any other Setpoint operator (or Kopf's diff base), which must not count
// as a change of the object: otherwise two operators on one kind would
// wake each other up forever.
func bookkeeping(annotation string) bool {
	_, name, ok := strings.Cut(annotation, "/")
	return ok && (name == baseName || name == progressName || name == appliedName)
}

// ignoredAnnotations change without the object's meaning changing, or are
// large copies of it (the 256 KiB annotation budget is shared).
var ignoredAnnotations = map[string]bool{
	lastApplied:                         true,
	"deployment.kubernetes.io/revision": true,
}

// essence is what cause detection compares: everything the user declares
// (spec, data, ... and labels and annotations), nothing the system writes
// (status, resourceVersion, managedFields, our own bookkeeping).
func (k keys) essence(u *unstructured.Unstructured) map[string]any {
	out := map[string]any{}
	for key, v := range u.Object {
		switch key {
		case "apiVersion", "kind", "metadata", "status":
			continue
		}
		out[key] = v
	}
	meta := map[string]any{}
	if l := u.GetLabels(); len(l) > 0 {
		labels := map[string]any{}
		for lk, lv := range l {
			labels[lk] = lv
		}
		meta["labels"] = labels
	}
	ann := map[string]any{}
	for ak, av := range u.GetAnnotations() {
		if !bookkeeping(ak) && !ignoredAnnotations[ak] {
			ann[ak] = av
		}
	}
	if len(ann) > 0 {
		meta["annotations"] = ann
	}
	out["metadata"] = meta
	return normalize(out).(map[string]any)
}

// normalize gives a JSON-like value the representation it has after a
// round trip through JSON, with integers kept exact as int64 (floats only
// for numbers with a fraction), so a value read back from the diff-base
// annotation compares equal to the same value read from the live object.
func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	return decodeJSON(b)
}

func decodeJSON(b []byte) any {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil
	}
	return numbers(out)
}

func numbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			t[k] = numbers(c)
		}
	case []any:
		for i, c := range t {
			t[i] = numbers(c)
		}
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		if f, err := t.Float64(); err == nil {
			return f
		}
	}
	return v
}

// Size limits of the stored diff base. All annotations of an object share
// 256 KiB; a spec near that size must not be copied whole into one (Kopf
// #1087). Above maxBaseSize, any part larger than compactPart is stored as
// its digest: changes are still detected, but field handlers see the
// digest instead of the old value of such a large part.
const (
	maxBaseSize = 64 << 10
	compactPart = 4 << 10
	digestKey   = "$sha256"
	// annotationLimit is the API server's total for all annotations
	// (keys and values) of an object; progressReserve is kept free of
	// the base for the progress annotation written beside it.
	annotationLimit = 256 << 10
	progressReserve = 8 << 10
)

// baseBudget is how large the diff base may be on u: maxBaseSize, or
// less when the annotations others keep on the object (kubectl's
// last-applied copy, a tool's own) leave less room under the API
// server's limit, so writing the base never makes the object's
// annotations too large.
func (k keys) baseBudget(u *unstructured.Unstructured) int {
	used := len(k.base()) + progressReserve
	for key, v := range u.GetAnnotations() {
		if key != k.base() && key != k.progress() {
			used += len(key) + len(v)
		}
	}
	return max(0, min(maxBaseSize, annotationLimit-used))
}

// isRootDigest reports whether a stored base is the digest of the whole
// essence: what is kept when not even the compacted base fits.
func isRootDigest(base map[string]any) bool {
	_, ok := base[digestKey]
	return ok && len(base) == 1
}

func digest(v any) string {
	b, _ := json.Marshal(v) // maps encode with sorted keys: canonical
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// compact replaces large parts by their digest, deterministically: the
// result of a part depends only on that part's content.
func compact(v any, root bool) any {
	b, _ := json.Marshal(v)
	if len(b) <= compactPart && !root {
		return v
	}
	m, ok := v.(map[string]any)
	if !ok {
		return map[string]any{digestKey: digest(v)}
	}
	c := make(map[string]any, len(m))
	for k, child := range m {
		c[k] = compact(child, false)
	}
	if root {
		return c
	}
	if cb, _ := json.Marshal(c); len(cb) <= compactPart {
		return c
	}
	return map[string]any{digestKey: digest(v)}
}

func hasDigests(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	if _, ok := m[digestKey]; ok && len(m) == 1 {
		return true
	}
	for _, child := range m {
		if hasDigests(child) {
			return true
		}
	}
	return false
}

// encodeBase renders an essence for the diff-base annotation, within
// budget bytes: whole, or with its large parts as digests, or, when not
// even that fits, as the digest of the whole essence (changes are still
// detected; handlers then see no old values).
func encodeBase(ess map[string]any, budget int) (string, error) {
	b, err := json.Marshal(ess)
	if err != nil {
		return "", fmt.Errorf("encode diff base: %w", err)
	}
	if len(b) > budget {
		if b, err = json.Marshal(compact(ess, true)); err != nil {
			return "", fmt.Errorf("encode diff base: %w", err)
		}
	}
	if len(b) > budget {
		if b, err = json.Marshal(map[string]any{digestKey: digest(ess)}); err != nil {
			return "", fmt.Errorf("encode diff base: %w", err)
		}
	}
	return string(b), nil
}

// comparable returns the old and new essence in the same representation:
// if either is (or must be) compacted, both are.
func comparableEssences(base, ess map[string]any) (any, any) {
	if isRootDigest(base) {
		return base, map[string]any{digestKey: digest(ess)}
	}
	if hasDigests(base) {
		return compact(base, true), compact(ess, true)
	}
	if b, _ := json.Marshal(ess); len(b) > maxBaseSize {
		return compact(base, true), compact(ess, true)
	}
	return base, ess
}

// handlerState is one handler's progress within a flow, as in Kopf.
type handlerState struct {
	Started *time.Time `json:"started,omitempty"`
	// Running is written before each call and cleared with its outcome:
	// found set on a later pass, the process died during the call (a
	// crash, an OOM kill), which counts as a failed attempt.
	Running bool       `json:"running,omitempty"`
	Retries int        `json:"retries,omitempty"`
	Delayed *time.Time `json:"delayed,omitempty"`
	Success bool       `json:"success,omitempty"`
	Failure bool       `json:"failure,omitempty"`
	Message string     `json:"message,omitempty"`
}

func (s *handlerState) finished() bool { return s.Success || s.Failure }

// progress is the state of the flow under way, kept in one annotation.
// Flow is the digest of the essence the flow handles: when the object
// changes mid-flow, the flow starts again for the new version, so no
// handler's last run was for a stale one.
type progress struct {
	Cause    string                   `json:"cause"`
	Flow     string                   `json:"flow"`
	Handlers map[string]*handlerState `json:"handlers"`
}

func decodeProgress(s string) (*progress, error) {
	var p progress
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return nil, fmt.Errorf("decode progress: %w", err)
	}
	if p.Handlers == nil {
		p.Handlers = map[string]*handlerState{}
	}
	return &p, nil
}

func (p *progress) encode() string {
	b, _ := json.Marshal(p)
	return string(b)
}

func (p *progress) state(id string) *handlerState {
	s, ok := p.Handlers[id]
	if !ok {
		s = &handlerState{}
		p.Handlers[id] = s
	}
	return s
}
