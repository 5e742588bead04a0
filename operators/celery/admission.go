package celery

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/configdata"
	"github.com/setpoint-dev/setpoint/operators/celery/broker"
)

// admit checks, at admission, what the CRD's schema cannot: that the
// broker Secret has the key the cluster names and that it holds a broker
// URL the autoscaler can read. A Secret that does not exist yet only warns
// (it is often created after the cluster); BrokerReachable says the rest.
func admit(c client.Reader) operator.AdmitFunc[*v1alpha1.CeleryCluster] {
	return func(ctx context.Context, r *operator.Review[*v1alpha1.CeleryCluster]) error {
		read := func(ref corev1.SecretKeySelector) (map[string][]byte, bool, error) {
			return configdata.Read(ctx, c, configdata.KindSecret, r.Object.Namespace, ref.Name)
		}
		mayRead := func(name string) bool {
			return r.Allowed(ctx, "get", "", "secrets", r.Object.Namespace, name)
		}
		return Check(r.Object, read, mayRead, &r.Findings)
	}
}

// Check records in f what is wrong with the cluster's broker Secrets
// (problems refuse it) and what may be (warnings), reading each with
// read; an error is one reading. A message lists a Secret's keys only
// when mayRead says the requester may read it.
func Check(cc *v1alpha1.CeleryCluster, read func(corev1.SecretKeySelector) (map[string][]byte, bool, error), mayRead func(name string) bool, f *operator.Findings) error {
	check := func(field string, ref corev1.SecretKeySelector, parse func(string) error) error {
		data, found, err := read(ref)
		if err != nil {
			return err
		}
		if !found {
			f.Warn("%s: Secret %s does not exist yet: the autoscaler waits for it (BrokerReachable=False)", field, ref.Name)
			return nil
		}
		v, ok := data[ref.Key]
		if !ok {
			f.Refuse("%s: Secret %s has no key %q (%s)", field, ref.Name, ref.Key, configdata.Keys(configdata.KindSecret, ref.Name, data, mayRead(ref.Name)))
			return nil
		}
		if err := parse(string(v)); err != nil {
			f.Refuse("%s: key %q of Secret %s: %v", field, ref.Key, ref.Name, err)
		}
		return nil
	}
	if err := check("spec.broker.urlSecretRef", cc.Spec.Broker.URLSecretRef, func(s string) error {
		_, err := broker.Parse(s)
		return err
	}); err != nil {
		return err
	}
	if ref := cc.Spec.Broker.ManagementURLSecretRef; ref != nil {
		return check("spec.broker.managementURLSecretRef", *ref, broker.ParseManagement)
	}
	return nil
}
