package reloader

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/setpoint-dev/setpoint/operator/configdata"
)

// Hashes are the digests recorded on a workload, by Ref.String(), and
// under KeyEntry the fingerprint of the key they were made with.
type Hashes map[string]string

// KeyEntry is the entry of Hashes that names the digest key.
const KeyEntry = "$key"

// ParseHashes reads AnnotationHashes.
func ParseHashes(s string) (Hashes, error) {
	h := Hashes{}
	if err := json.Unmarshal([]byte(s), &h); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", AnnotationHashes, err)
	}
	return h, nil
}

// String is the annotation's value: JSON with sorted keys.
func (h Hashes) String() string {
	data, _ := json.Marshal(map[string]string(h)) // a map of strings always encodes
	return string(data)
}

// Combined digests all the recorded digests, for the pod-template
// annotation of the annotation strategy.
func (h Hashes) Combined() string {
	d := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(h)) {
		configdata.WriteField(d, k)
		configdata.WriteField(d, h[k])
	}
	return hex.EncodeToString(d.Sum(nil))[:16]
}

// Comparable is recorded if its digests were made under key, else nil:
// digests made under another key (or before digests were keyed) cannot
// be compared with new ones, so they are recorded anew, without a roll.
func Comparable(recorded Hashes, key configdata.Key) Hashes {
	if recorded != nil && recorded[KeyEntry] != key.Fingerprint() {
		return nil
	}
	return recorded
}

// Decision is what a pass does for one workload.
type Decision struct {
	// Changed lists the objects (Ref.String()) whose content changed since
	// it was recorded: a roll. Sorted.
	Changed []string
	// Record is what to record in AnnotationHashes, or nil when the
	// recorded digests are already right.
	Record Hashes
}

// Decide compares the digests of the tracked objects that exist now
// (current, by Ref.String()) with those recorded on the workload
// (recorded; nil when there is no record yet).
//
//   - No record yet: record, do not roll (opting in never restarts pods).
//   - A digest that differs from its record: roll.
//   - A tracked object that is newly used: record it, no roll (the spec
//     change that added it rolls the pods by itself).
//   - A tracked object that is gone: keep its record, no roll; if it
//     comes back with the same content, nothing happens either.
//   - An object no longer tracked: drop its record.
func Decide(recorded Hashes, current map[string]string, tracked []string) Decision {
	next := Hashes{}
	var changed []string
	for _, ref := range tracked {
		cur, present := current[ref]
		old, had := recorded[ref]
		switch {
		case present && had && cur != old:
			changed = append(changed, ref)
			next[ref] = cur
		case present:
			next[ref] = cur
		case had:
			next[ref] = old
		}
	}
	slices.Sort(changed)
	d := Decision{Changed: changed}
	if recorded == nil {
		d.Changed = nil
	}
	if recorded == nil || !maps.Equal(recorded, next) {
		d.Record = next
	}
	return d
}
