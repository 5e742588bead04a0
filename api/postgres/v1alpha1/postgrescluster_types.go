package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PostgresCluster is a highly available PostgreSQL: one primary and
// instances-1 streaming replicas, with Services <name>-rw (the primary),
// <name>-ro (ready replicas) and <name>-r (any ready instance).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pg,categories=setpoint
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.readyInstances`,description="ready/desired instances"
// +kubebuilder:printcolumn:name="Primary",type=string,JSONPath=`.status.currentPrimary`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.imageName`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PostgresCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PostgresClusterSpec   `json:"spec,omitempty"`
	Status PostgresClusterStatus `json:"status,omitempty"`
}

// PostgresClusterSpec is the cluster the user wants.
//
// +kubebuilder:validation:XValidation:rule="!has(self.synchronous) || self.synchronous.number < self.instances",message="spec.synchronous.number must be less than spec.instances: a primary waits for that many standbys, and there are instances-1"
type PostgresClusterSpec struct {
	// Instances is how many PostgreSQL instances run: one primary, the
	// rest streaming replicas.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=9
	// +kubebuilder:default=1
	Instances int32 `json:"instances"`

	// ImageName is the container image of the instances: a PostgreSQL
	// image with Debian's layout (/usr/lib/postgresql/<major>/bin), such
	// as the official postgres images. The agent is copied into each pod
	// from Setpoint's own image. A change rolls through the instances one
	// at a time, replicas first, the primary last by a switchover. A new
	// major version is not an update the agents can make (its data
	// directory needs pg_upgrade): the first replica refuses to start on
	// it and the rollout stops there, with the primary untouched. On
	// process nodes the host's PostgreSQL runs, whatever the image.
	// +kubebuilder:default="postgres:15"
	// +kubebuilder:validation:MinLength=1
	ImageName string `json:"imageName,omitempty"`

	// PostgreSQL is the server's configuration.
	// +optional
	PostgreSQL PostgreSQLSpec `json:"postgresql,omitempty"`

	// Storage is each instance's PersistentVolumeClaim.
	// +optional
	Storage StorageSpec `json:"storage,omitempty"`

	// Synchronous makes commits wait for standbys; without it replication
	// is asynchronous and a failover may lose the last commits.
	// +optional
	Synchronous *SynchronousSpec `json:"synchronous,omitempty"`

	// FailoverDelay is how long the primary must stay unhealthy (its agent
	// unreachable or reporting PostgreSQL down, or its Lease not renewed)
	// before a replica is promoted. 0 fails over as soon as it is seen,
	// except that a primary whose agent is silent, or holds the Lease and
	// is restarting PostgreSQL in place, is given 3 s.
	// +optional
	FailoverDelay *metav1.Duration `json:"failoverDelay,omitempty"`

	// Bootstrap says how the first instance makes the database.
	// +optional
	Bootstrap *BootstrapSpec `json:"bootstrap,omitempty"`

	// Resources of the postgres container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// Affinity of the instance pods. Without it instances prefer nodes
	// that hold no other instance of the cluster.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// NodeSelector of the instance pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations of the instance pods.
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
}

// PostgreSQLSpec is the server's configuration.
type PostgreSQLSpec struct {
	// Parameters go to postgresql.conf. A change is reloaded; one that
	// needs a restart is listed in the instance's status as pending. The
	// operator owns replication, connection and archiving settings and
	// refuses them here.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['listen_addresses', 'port', 'unix_socket_directories', 'wal_level', 'hot_standby', 'max_wal_senders', 'max_replication_slots', 'wal_log_hints', 'synchronous_standby_names', 'primary_conninfo', 'primary_slot_name', 'recovery_target_timeline', 'archive_mode', 'archive_command', 'restore_command', 'data_directory', 'hba_file', 'ident_file', 'config_file', 'include', 'include_dir', 'include_if_exists', 'promote_trigger_file', 'ssl']))",messageExpression="'spec.postgresql.parameters: ' + self.filter(k, k in ['listen_addresses', 'port', 'unix_socket_directories', 'wal_level', 'hot_standby', 'max_wal_senders', 'max_replication_slots', 'wal_log_hints', 'synchronous_standby_names', 'primary_conninfo', 'primary_slot_name', 'recovery_target_timeline', 'archive_mode', 'archive_command', 'restore_command', 'data_directory', 'hba_file', 'ident_file', 'config_file', 'include', 'include_dir', 'include_if_exists', 'promote_trigger_file', 'ssl'])[0] + ' is set by the operator and cannot be given'"
	// +kubebuilder:validation:MaxProperties=200
	Parameters map[string]string `json:"parameters,omitempty"`
}

// StorageSpec is each instance's volume.
type StorageSpec struct {
	// Size of each instance's PersistentVolumeClaim. It cannot shrink.
	// +kubebuilder:default="1Gi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity(string(oldSelf))) >= 0",message="spec.storage.size cannot shrink: a volume holding data is never made smaller"
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`
	// StorageClassName of the claims (default: the cluster's default
	// class).
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// SynchronousSpec is synchronous replication.
type SynchronousSpec struct {
	// Number of standbys that must confirm each commit (ANY n of the
	// replicas).
	// +kubebuilder:validation:Minimum=1
	Number int32 `json:"number"`
	// DataDurability: required keeps commits waiting while fewer than
	// number standbys are connected (no acknowledged commit is ever lost
	// in a failover); preferred lets the primary go on alone.
	// +kubebuilder:validation:Enum=required;preferred
	// +kubebuilder:default=required
	// +optional
	DataDurability string `json:"dataDurability,omitempty"`
}

// BootstrapSpec says how a new cluster gets its data.
type BootstrapSpec struct {
	// InitDB makes an empty cluster with one application database.
	// +optional
	InitDB *InitDBSpec `json:"initdb,omitempty"`
}

// InitDBSpec is a new, empty database.
type InitDBSpec struct {
	// Database is the application database's name.
	// +kubebuilder:default=app
	// +kubebuilder:validation:Pattern=`^[a-z_][a-z0-9_]{0,62}$`
	// +optional
	Database string `json:"database,omitempty"`
	// Owner is the role that owns it.
	// +kubebuilder:default=app
	// +kubebuilder:validation:Pattern=`^[a-z_][a-z0-9_]{0,62}$`
	// +optional
	Owner string `json:"owner,omitempty"`
	// Secret holds the owner's password under the key "password"
	// (default: <name>-app, generated).
	// +optional
	Secret *corev1.LocalObjectReference `json:"secret,omitempty"`
}

// PostgresClusterStatus is what the operator and the agents see.
type PostgresClusterStatus struct {
	// ObservedGeneration is the generation the status describes.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase is a one-word summary: Initializing, Healthy,
	// WaitingForReplicas, PrimaryUnhealthy, FailingOver, SwitchingOver,
	// RollingUpdate.
	Phase string `json:"phase,omitempty"`
	// ReadyInstances is "ready/desired".
	ReadyInstances string `json:"readyInstances,omitempty"`
	// CurrentPrimary is the instance that acts as primary now.
	CurrentPrimary string `json:"currentPrimary,omitempty"`
	// TargetPrimary is the instance the operator chose to be primary; the
	// agents act on it. It differs from CurrentPrimary during a failover
	// or switchover.
	TargetPrimary string `json:"targetPrimary,omitempty"`
	// Initialized is set once the first primary made the database: from
	// then on an instance with an empty volume clones, never initdb.
	Initialized bool `json:"initialized,omitempty"`
	// PrimaryUnhealthySince is when the operator first saw the current
	// primary unhealthy; cleared when it is healthy again.
	PrimaryUnhealthySince *metav1.Time `json:"primaryUnhealthySince,omitempty"`
	// LastFailover says when and why the primary last changed.
	LastFailover string `json:"lastFailover,omitempty"`
	// RollingUpdate is the instance a rolling update is restarting now,
	// on the image its instance status names.
	// +optional
	RollingUpdate *RollingUpdate `json:"rollingUpdate,omitempty"`
	// Instances are the agents' reports.
	// +listType=map
	// +listMapKey=name
	Instances []InstanceStatus `json:"instances,omitempty"`
	// Conditions: Ready, Progressing, Degraded.
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// InstanceStatus is one instance as its agent reports it.
type InstanceStatus struct {
	Name string `json:"name"`
	// Role is primary, replica, or unknown when the agent did not answer.
	Role string `json:"role,omitempty"`
	// Ready: PostgreSQL accepts connections (and, on the primary, writes).
	Ready    bool  `json:"ready"`
	Timeline int64 `json:"timeline,omitempty"`
	// ReceivedLSN is the last WAL position a replica received (on the
	// primary: its current write position); ReplayedLSN the last it
	// applied.
	ReceivedLSN string `json:"receivedLSN,omitempty"`
	ReplayedLSN string `json:"replayedLSN,omitempty"`
	// LagBytes is how far the replica's replay is behind the primary.
	LagBytes int64 `json:"lagBytes,omitempty"`
	// PendingRestart lists parameters that take effect at a restart.
	PendingRestart []string `json:"pendingRestart,omitempty"`
	// Recloned counts the times the instance's data was thrown away and
	// cloned again because it could not be rewound onto the primary's
	// timeline (since its agent started).
	Recloned int32 `json:"recloned,omitempty"`
	// Message says what is wrong, when something is.
	Message string `json:"message,omitempty"`
	// DiskFull: the instance's data volume has less room than PostgreSQL
	// needs to go on writing.
	DiskFull bool `json:"diskFull,omitempty"`
	// Image is the image of the instance's pod. During a rolling update
	// it differs from spec.imageName until the instance's turn.
	Image string `json:"image,omitempty"`
}

// RollingUpdate is one instance's restart on a new image: it is done once
// its pod names the image, its container restarted (or the pod is a new
// one) and its agent reports ready.
type RollingUpdate struct {
	Instance string `json:"instance"`
	// PodUID and RestartCount are the pod's before the restart.
	PodUID       string `json:"podUID,omitempty"`
	RestartCount int32  `json:"restartCount,omitempty"`
}

// +kubebuilder:object:root=true

// PostgresClusterList is a list of PostgresClusters.
type PostgresClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PostgresCluster `json:"items"`
}
