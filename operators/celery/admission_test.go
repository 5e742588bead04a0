package celery

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
)

func TestCheck(t *testing.T) {
	secrets := map[string]map[string][]byte{
		"redis":  {"url": []byte("redis://:hunter2@redis:6379/0")},
		"rabbit": {"url": []byte("amqp://guest:guest@rabbit:5672//"), "mgmt": []byte("http://guest:guest@rabbit:15672")},
		"bad":    {"url": []byte("memcached://:hunter2@cache:11211"), "mgmt": []byte("rabbit:15672")},
		"nohost": {"url": []byte("redis://")},
	}
	read := func(ref corev1.SecretKeySelector) (map[string][]byte, bool, error) {
		data, ok := secrets[ref.Name]
		return data, ok, nil
	}
	ref := func(name, key string) corev1.SecretKeySelector {
		return corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}
	}
	cluster := func(url corev1.SecretKeySelector, mgmt *corev1.SecretKeySelector) *v1alpha1.CeleryCluster {
		cc := &v1alpha1.CeleryCluster{}
		cc.Spec.Broker.URLSecretRef = url
		cc.Spec.Broker.ManagementURLSecretRef = mgmt
		return cc
	}
	mgmt := func(name, key string) *corev1.SecretKeySelector { r := ref(name, key); return &r }
	for _, tc := range []struct {
		name               string
		cc                 *v1alpha1.CeleryCluster
		problems, warnings []string
	}{
		{"redis", cluster(ref("redis", "url"), nil), nil, nil},
		{"rabbitmq with management", cluster(ref("rabbit", "url"), mgmt("rabbit", "mgmt")), nil, nil},
		{"missing secret warns", cluster(ref("later", "url"), nil), nil,
			[]string{"spec.broker.urlSecretRef: Secret later does not exist yet: the autoscaler waits for it (BrokerReachable=False)"}},
		{"missing key", cluster(ref("redis", "URL"), nil), []string{`spec.broker.urlSecretRef: Secret redis has no key "URL" (it has: url)`}, nil},
		{"unsupported scheme, password hidden", cluster(ref("bad", "url"), nil),
			[]string{`spec.broker.urlSecretRef: key "url" of Secret bad: broker URL has a scheme the autoscaler cannot read: want redis, rediss, amqp or amqps`}, nil},
		{"no host", cluster(ref("nohost", "url"), nil), []string{`spec.broker.urlSecretRef: key "url" of Secret nohost: broker URL has no host`}, nil},
		{"bad management URL", cluster(ref("rabbit", "url"), mgmt("bad", "mgmt")),
			[]string{`spec.broker.managementURLSecretRef: key "mgmt" of Secret bad: management URL is not of the form http(s)://user:password@host:port`}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f operator.Findings
			if err := Check(tc.cc, read, func(string) bool { return true }, &f); err != nil {
				t.Fatal(err)
			}
			problems, warnings := f.Problems, f.Warnings
			if !reflect.DeepEqual(problems, tc.problems) {
				t.Errorf("problems\n got %q\nwant %q", problems, tc.problems)
			}
			if !reflect.DeepEqual(warnings, tc.warnings) {
				t.Errorf("warnings\n got %q\nwant %q", warnings, tc.warnings)
			}
		})
	}
}
