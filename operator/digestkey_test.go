package operator_test

import (
	"bytes"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/configdata"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestDigestKeyIsMadeOnceAndShared: the first operator of an install
// makes the digest key's Secret; a second one (another replica, or the
// same after a restart) digests under the same key; a Secret whose key
// is too short stops the operator with a message that does not print it.
func TestDigestKeyIsMadeOnceAndShared(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	ref := types.NamespacedName{Namespace: ns, Name: "digest-key"}
	withKey := func(o operator.Options) operator.Options {
		o.DigestKeySecret = ref
		return o
	}
	keyOf := func(r *running) configdata.Key {
		t.Helper()
		var k configdata.Key
		testkit.Eventually(t, wait, func() error {
			if k = r.op.DigestKey(); len(k) == 0 {
				return fmt.Errorf("no key loaded yet")
			}
			return nil
		})
		return k
	}
	first := keyOf(start(t, nil, withKey(opts(ns)), func(*operator.Operator) {}))
	second := start(t, nil, withKey(operator.Options{Namespaces: []string{ns}, Name: "second-" + ns}), func(*operator.Operator) {})
	if !bytes.Equal(keyOf(second), first) {
		t.Error("a second operator has another key")
	}
	stored := get(t, &corev1.Secret{ObjectMeta: metaOf(ref)})
	if !bytes.Equal(stored.Data["key"], first) || len(first) != 32 {
		t.Errorf("stored key of %d bytes differs from the loaded one", len(stored.Data["key"]))
	}
	data := map[string][]byte{"password": []byte("hunter2")}
	if first.Digest(data, nil) == configdata.Key(nil).Digest(data, nil) {
		t.Error("the digest is not keyed")
	}

	short := types.NamespacedName{Namespace: ns, Name: "short-key"}
	create(t, &corev1.Secret{ObjectMeta: metaOf(short), Data: map[string][]byte{"key": []byte("s3cr3t")}})
	o := opts(ns)
	o.Name, o.DigestKeySecret = "short-"+ns, short
	op, err := operator.New(testkit.Env(t).Config, o)
	if err != nil {
		t.Fatal(err)
	}
	err = op.Run(t.Context())
	if err == nil || err.Error() != fmt.Sprintf(`digest key Secret %s: key "key" holds 6 bytes, want at least 32`, short) {
		t.Errorf("run with a short key: %v", err)
	}
}

func metaOf(ref types.NamespacedName) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name}
}
