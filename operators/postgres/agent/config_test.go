package agent

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
)

func cluster(instances int32, sync *v1alpha1.SynchronousSpec, params map[string]string) *v1alpha1.PostgresCluster {
	return &v1alpha1.PostgresCluster{ObjectMeta: metav1.ObjectMeta{Name: "pg"},
		Spec: v1alpha1.PostgresClusterSpec{Instances: instances, Synchronous: sync, PostgreSQL: v1alpha1.PostgreSQLSpec{Parameters: params}}}
}

func TestSynchronousNames(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sync      *v1alpha1.SynchronousSpec
		streaming []string
		want      string
	}{
		{"asynchronous", nil, nil, ""},
		{"required names every other instance, connected or not", &v1alpha1.SynchronousSpec{Number: 1, DataDurability: "required"}, nil, `ANY 1 ("pg-2", "pg-3")`},
		{"required is the default", &v1alpha1.SynchronousSpec{Number: 2}, []string{"pg-2"}, `ANY 2 ("pg-2", "pg-3")`},
		{"preferred names only the streaming ones", &v1alpha1.SynchronousSpec{Number: 2, DataDurability: "preferred"}, []string{"pg-3"}, `ANY 1 ("pg-3")`},
		{"preferred alone takes writes", &v1alpha1.SynchronousSpec{Number: 1, DataDurability: "preferred"}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := synchronousNames(cluster(3, tc.sync, nil), "pg-1", tc.streaming); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPostgresqlConf(t *testing.T) {
	conf := postgresqlConf(cluster(2, nil, map[string]string{"work_mem": "8MB", "search_path": "'a', b"}), "pg-2", "/controller/run", nil)
	for _, want := range []string{
		"work_mem = '8MB'\n",
		"search_path = '''a'', b'\n",
		"primary_conninfo = 'host=pg-rw port=5432 user=streaming_replica application_name=pg-2 connect_timeout=5 sslmode=prefer'\n",
		"primary_slot_name = 'setpoint_pg_2'\n",
		"wal_log_hints = on\n",
		"unix_socket_directories = '/controller/run'\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("missing %q in:\n%s", want, conf)
		}
	}
	// Owned settings come last, so a user's copy could never win.
	if strings.Index(conf, "work_mem") > strings.Index(conf, "listen_addresses") {
		t.Errorf("user parameters after owned ones:\n%s", conf)
	}
}

// The agent's defaults apply unless the user sets the parameter, and
// then appear once.
func TestDefaultsGiveWayToTheUser(t *testing.T) {
	conf := postgresqlConf(cluster(2, nil, nil), "pg-2", "/controller/run", nil)
	if !strings.Contains(conf, "wal_retrieve_retry_interval = '1s'\n") {
		t.Errorf("no default wal_retrieve_retry_interval:\n%s", conf)
	}
	conf = postgresqlConf(cluster(2, nil, map[string]string{"wal_retrieve_retry_interval": "10s"}), "pg-2", "/controller/run", nil)
	if n := strings.Count(conf, "wal_retrieve_retry_interval"); n != 1 || !strings.Contains(conf, "wal_retrieve_retry_interval = '10s'\n") {
		t.Errorf("the user's wal_retrieve_retry_interval should be the only one:\n%s", conf)
	}
}

func TestPgpassEscapes(t *testing.T) {
	got := pgpass(credentials{superuser: `a:b\c`, replication: "r"})
	if !strings.Contains(got, `*:*:*:postgres:a\:b\\c`) || !strings.Contains(got, "*:*:*:streaming_replica:r") {
		t.Errorf("pgpass:\n%s", got)
	}
}
