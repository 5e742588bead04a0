package celery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

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
		cc := r.Object
		read := func(ref corev1.SecretKeySelector) (map[string][]byte, bool, error) {
			return configdata.Read(ctx, c, configdata.KindSecret, cc.Namespace, ref.Name)
		}
		problems, warnings, err := Check(cc, read)
		for _, w := range warnings {
			r.Warn("%s", w)
		}
		if err != nil {
			return err
		}
		if len(problems) > 0 {
			return errors.New(strings.Join(problems, "; "))
		}
		return nil
	}
}

// Check returns what is wrong with the cluster's broker Secrets (problems
// refuse it) and what may be (warnings), reading each with read.
func Check(cc *v1alpha1.CeleryCluster, read func(corev1.SecretKeySelector) (map[string][]byte, bool, error)) (problems, warnings []string, err error) {
	check := func(field string, ref corev1.SecretKeySelector, parse func(string) error) error {
		data, found, err := read(ref)
		if err != nil {
			return err
		}
		if !found {
			warnings = append(warnings, fmt.Sprintf("%s: Secret %s does not exist yet: the autoscaler waits for it (BrokerReachable=False)", field, ref.Name))
			return nil
		}
		v, ok := data[ref.Key]
		if !ok {
			keys := "no keys"
			if len(data) > 0 {
				keys = strings.Join(slices.Sorted(maps.Keys(data)), ", ")
			}
			problems = append(problems, fmt.Sprintf("%s: Secret %s has no key %q (it has: %s)", field, ref.Name, ref.Key, keys))
			return nil
		}
		if err := parse(string(v)); err != nil {
			problems = append(problems, fmt.Sprintf("%s: key %q of Secret %s: %v", field, ref.Key, ref.Name, err))
		}
		return nil
	}
	if err := check("spec.broker.urlSecretRef", cc.Spec.Broker.URLSecretRef, func(s string) error {
		_, err := broker.Parse(s)
		return err
	}); err != nil {
		return nil, nil, err
	}
	if ref := cc.Spec.Broker.ManagementURLSecretRef; ref != nil {
		if err := check("spec.broker.managementURLSecretRef", *ref, broker.ParseManagement); err != nil {
			return nil, nil, err
		}
	}
	return problems, warnings, nil
}
