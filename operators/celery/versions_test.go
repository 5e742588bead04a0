package celery

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	"github.com/setpoint-dev/setpoint/operators/celery/broker"
)

func TestScaleDownSafe(t *testing.T) {
	w := func(versions ...string) []broker.Worker {
		var out []broker.Worker
		for i, v := range versions {
			out = append(out, broker.Worker{Hostname: "w" + string(rune('a'+i)), Version: v})
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		redis   bool
		workers []broker.Worker
		want    metav1.ConditionStatus // "" for no condition
		message string
	}{
		{"RabbitMQ is not affected", false, w("5.2.6"), "", ""},
		{"nothing heard yet", true, nil, "", ""},
		{"5.2 on Redis", true, w("5.3.1", "5.2.6", "5.2.6", "4.4.7"), metav1.ConditionFalse, "workers run Celery 4.4.7, 5.2.6: "},
		{"5.3 and later", true, w("5.3.0", "5.5.3", "6.0.0"), metav1.ConditionTrue, "5.3 or later"},
		{"a release candidate counts by its minor", true, w("5.3rc1"), metav1.ConditionTrue, ""},
		{"an unreadable version says nothing against", true, w("dev"), metav1.ConditionTrue, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := scaleDownSafe(tc.redis, tc.workers, 1)
			switch {
			case tc.want == "" && c != nil:
				t.Fatalf("got %+v, want none", c)
			case tc.want == "":
			case c == nil:
				t.Fatalf("got none, want %s", tc.want)
			case c.Status != tc.want || !strings.Contains(c.Message, tc.message):
				t.Errorf("got %s %q, want %s containing %q", c.Status, c.Message, tc.want, tc.message)
			}
		})
	}
}

func TestOwnWorkers(t *testing.T) {
	cc := &v1alpha1.CeleryCluster{ObjectMeta: metav1.ObjectMeta{Name: "tasks"},
		Spec: v1alpha1.CeleryClusterSpec{Pools: []v1alpha1.Pool{{Name: "default"}, {Name: "mail"}}}}
	var got []string
	for _, w := range ownWorkers(cc, []broker.Worker{
		{Hostname: "default@tasks-default-7d9c-abcde"}, {Hostname: "mail@tasks-mail-5f6-xyz12"},
		{Hostname: "default@other-default-1-2"}, {Hostname: "celery@laptop"},
	}) {
		got = append(got, w.Hostname)
	}
	if want := "default@tasks-default-7d9c-abcde mail@tasks-mail-5f6-xyz12"; strings.Join(got, " ") != want {
		t.Errorf("got %v, want %s", got, want)
	}
}
