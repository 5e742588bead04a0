package postgres

import (
	v1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
)

// Labels on what the operator makes; the Services select on them.
const (
	LabelCluster  = "postgres.setpoint.dev/cluster"
	LabelInstance = "postgres.setpoint.dev/instance"
	LabelRole     = "postgres.setpoint.dev/role"

	RolePrimary = "primary"
	RoleReplica = "replica"

	// AnnotationSwitchover asks for a switchover: its value names the
	// instance to promote. The operator removes it when it acts (or
	// refuses, with an Event).
	AnnotationSwitchover = "postgres.setpoint.dev/switchover-to"
)

// Ports of an instance.
const (
	PostgresPort = 5432
	AgentPort    = 8000
)

// Where the agent keeps things in the pod.
const (
	dataMount = "/var/lib/postgresql/data"
	DataDir   = dataMount + "/pgdata"
	// controllerDir is an emptyDir holding the agent's binary (copied from
	// Setpoint's image by an init container), the unix socket and the
	// password file.
	controllerDir = "/controller"
)

// Secret names and keys.
func SuperuserSecret(c *v1alpha1.PostgresCluster) string   { return c.Name + "-superuser" }
func ReplicationSecret(c *v1alpha1.PostgresCluster) string { return c.Name + "-replication" }

// AppSecret holds the application owner's username and password (and a
// connection URI for the -rw Service).
func AppSecret(c *v1alpha1.PostgresCluster) string {
	if b := c.Spec.Bootstrap; b != nil && b.InitDB != nil && b.InitDB.Secret != nil {
		return b.InitDB.Secret.Name
	}
	return c.Name + "-app"
}

// Service names.
func ServiceRW(c *v1alpha1.PostgresCluster) string { return c.Name + "-rw" }
func ServiceRO(c *v1alpha1.PostgresCluster) string { return c.Name + "-ro" }
func ServiceR(c *v1alpha1.PostgresCluster) string  { return c.Name + "-r" }

// agentName names the agents' ServiceAccount, Role and RoleBinding.
func agentName(c *v1alpha1.PostgresCluster) string { return c.Name + "-agent" }

func database(c *v1alpha1.PostgresCluster) (db, owner string) {
	db, owner = "app", "app"
	if b := c.Spec.Bootstrap; b != nil && b.InitDB != nil {
		if b.InitDB.Database != "" {
			db = b.InitDB.Database
		}
		if b.InitDB.Owner != "" {
			owner = b.InitDB.Owner
		}
	}
	return db, owner
}
