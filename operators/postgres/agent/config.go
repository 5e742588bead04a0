package agent

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
)

// Owned are the settings the agent writes; the CRD refuses them in
// spec.postgresql.parameters.
func owned(c *v1alpha1.PostgresCluster, instance, runDir string, standbys []string) map[string]string {
	return map[string]string{
		"listen_addresses":          "'*'",
		"port":                      "5432",
		"unix_socket_directories":   quote(runDir),
		"wal_level":                 "replica",
		"hot_standby":               "on",
		"max_wal_senders":           "12",
		"max_replication_slots":     "12",
		"wal_log_hints":             "on",
		"recovery_target_timeline":  "'latest'",
		"primary_conninfo":          quote(conninfo(c, instance)),
		"primary_slot_name":         quote(slotName(instance)),
		"synchronous_standby_names": quote(synchronousNames(c, instance, standbys)),
	}
}

// conninfo is how a replica reaches the primary: through the -rw
// Service, so it follows a failover without a change of its own.
func conninfo(c *v1alpha1.PostgresCluster, instance string) string {
	return fmt.Sprintf("host=%s-rw port=5432 user=%s application_name=%s connect_timeout=5 sslmode=prefer", c.Name, replicationUser, instance)
}

// synchronousNames is synchronous_standby_names for instance as primary.
// required waits for number of all the other instances whether or not they
// are connected; preferred counts only those streaming now (standbys), so
// a primary alone keeps taking writes.
func synchronousNames(c *v1alpha1.PostgresCluster, instance string, streaming []string) string {
	s := c.Spec.Synchronous
	if s == nil || s.Number < 1 {
		return ""
	}
	var names []string
	if s.DataDurability == "preferred" {
		names = slices.Clone(streaming)
	} else {
		for _, n := range InstanceNames(c) {
			if n != instance {
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 {
		return ""
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = `"` + n + `"`
	}
	return fmt.Sprintf("ANY %d (%s)", min(int(s.Number), len(names)), strings.Join(quoted, ", "))
}

// InstanceNames are the instances a cluster of spec.instances has:
// <name>-1 ... <name>-N.
func InstanceNames(c *v1alpha1.PostgresCluster) []string {
	var out []string
	for i := range c.Spec.Instances {
		out = append(out, fmt.Sprintf("%s-%d", c.Name, i+1))
	}
	return out
}

// defaults are the agent's choices that spec.postgresql.parameters may
// change. wal_retrieve_retry_interval (PostgreSQL's default 5 s) is how
// long a replica waits to connect again when its primary went away: a
// primary whose postgres the agent restarted in place takes commits that
// no replica receives until they reconnect, and a failover in that time
// (failoverDelay 0) loses them all. 1 s narrows that window.
//
// wal_keep_size (PostgreSQL's default 0) is WAL a primary keeps for
// standbys that have no slot on it yet. An old primary rewound after a
// failover replays from its last checkpoint before the fork, and the
// WAL from there is on the new primary only if it kept it: a test saw a
// rewound primary wait for ever on "requested WAL segment ... has
// already been removed" as the new primary recycled it. CloudNativePG
// keeps 512MB; 256MB is kept here, so a small volume is not filled.
var defaults = map[string]string{
	"wal_keep_size":               "256MB",
	"wal_retrieve_retry_interval": "1s",
}

// postgresqlConf is the file the agent owns (setpoint.conf, included from
// postgresql.conf): the agent's defaults, the user's parameters (the last
// setting of a name wins), then the owned ones.
func postgresqlConf(c *v1alpha1.PostgresCluster, instance, runDir string, standbys []string) string {
	var b strings.Builder
	b.WriteString("# Written by the Setpoint agent from the PostgresCluster; edits are overwritten.\n")
	for _, k := range slices.Sorted(maps.Keys(defaults)) {
		if _, set := c.Spec.PostgreSQL.Parameters[k]; !set {
			fmt.Fprintf(&b, "%s = %s\n", k, quote(defaults[k]))
		}
	}
	user := c.Spec.PostgreSQL.Parameters
	for _, k := range slices.Sorted(maps.Keys(user)) {
		fmt.Fprintf(&b, "%s = %s\n", k, quote(user[k]))
	}
	own := owned(c, instance, runDir, standbys)
	for _, k := range slices.Sorted(maps.Keys(own)) {
		fmt.Fprintf(&b, "%s = %s\n", k, own[k])
	}
	return b.String()
}

// quote makes a postgresql.conf string value, unless it already is one.
func quote(v string) string {
	if len(v) >= 2 && strings.HasPrefix(v, "'") && strings.HasSuffix(v, "'") {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// hbaConf: the agent (as postgres, over the pod's socket) is trusted;
// every network client needs a password.
const hbaConf = `# Written by the Setpoint agent; edits are overwritten.
local   all          postgres                   trust
local   all          all                        scram-sha-256
host    replication  ` + replicationUser + `  all   scram-sha-256
host    all          all          all           scram-sha-256
`

// pgpass holds the passwords the agent's tools use to reach the primary.
func pgpass(cr credentials) string {
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	return fmt.Sprintf("*:*:*:%s:%s\n*:*:*:postgres:%s\n", replicationUser, esc.Replace(cr.replication), esc.Replace(cr.superuser))
}

// credentials come from the cluster's Secrets, through the environment.
type credentials struct {
	superuser, replication, app string
}
