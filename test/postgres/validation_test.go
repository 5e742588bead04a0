package postgres

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	postgresv1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
	crdmanifests "github.com/setpoint-dev/setpoint/config/crd"
	"github.com/setpoint-dev/setpoint/operator/crd"
	"github.com/setpoint-dev/setpoint/testkit"
)

// The API server refuses what cannot work, with a message that names
// the field; no operator is needed for that.
func TestBadClustersAreRefused(t *testing.T) {
	env := testkit.Env(t)
	if err := crd.Install(t.Context(), env.Config, time.Minute,
		crdmanifests.MustGet(postgresv1alpha1.GroupVersion.Group, "postgresclusters")); err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t)
	for _, tc := range []struct {
		name   string
		mutate func(*postgresv1alpha1.PostgresCluster)
		want   string
	}{
		{"no instances", func(c *postgresv1alpha1.PostgresCluster) { c.Spec.Instances = 0 }, "spec.instances"},
		{"ten instances", func(c *postgresv1alpha1.PostgresCluster) { c.Spec.Instances = 10 }, "spec.instances"},
		{"an owned parameter", func(c *postgresv1alpha1.PostgresCluster) {
			c.Spec.PostgreSQL.Parameters = map[string]string{"work_mem": "8MB", "wal_level": "logical"}
		}, "spec.postgresql.parameters: wal_level is set by the operator"},
		{"as many synchronous standbys as instances", func(c *postgresv1alpha1.PostgresCluster) {
			c.Spec.Synchronous = &postgresv1alpha1.SynchronousSpec{Number: 3}
		}, "spec.synchronous.number must be less than spec.instances"},
		{"an unknown durability", func(c *postgresv1alpha1.PostgresCluster) {
			c.Spec.Synchronous = &postgresv1alpha1.SynchronousSpec{Number: 1, DataDurability: "maybe"}
		}, "spec.synchronous.dataDurability"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster(ns, "bad", 3)
			tc.mutate(c)
			err := env.Client.Create(t.Context(), c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("create: %v; want an error saying %q", err, tc.want)
			}
		})
	}

	// Changes that would lose data or need what does not exist yet.
	c := cluster(ns, "good", 1)
	testkit.Create(t, c)
	for _, tc := range []struct {
		name   string
		mutate func(*postgresv1alpha1.PostgresCluster)
		want   string
	}{
		{"a smaller volume", func(c *postgresv1alpha1.PostgresCluster) {
			small := resource.MustParse("512Mi")
			c.Spec.Storage.Size = &small
		}, "spec.storage.size cannot shrink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			edited := get(t, ns, "good")
			tc.mutate(edited)
			err := env.Client.Update(t.Context(), edited)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("update: %v; want an error saying %q", err, tc.want)
			}
		})
	}
	grown := get(t, ns, "good")
	big := resource.MustParse("2Gi")
	grown.Spec.Storage.Size = &big
	if err := env.Client.Update(t.Context(), grown); err != nil {
		t.Errorf("a bigger volume is refused: %v", err)
	}
}
