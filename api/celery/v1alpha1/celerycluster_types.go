package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CeleryCluster runs a Celery app's workers as pools that scale on the
// backlog of their queues, with an optional beat scheduler and Flower.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=celery,categories=setpoint
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Broker",type=string,JSONPath=`.status.conditions[?(@.type=="BrokerReachable")].status`
// +kubebuilder:printcolumn:name="Backlog",type=integer,JSONPath=`.status.backlog`,description="messages waiting or unacknowledged over all pools"
// +kubebuilder:printcolumn:name="Workers",type=string,JSONPath=`.status.workers`,description="ready/desired worker pods over all pools"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 40",message="the CeleryCluster's name must be a DNS label (lowercase letters, digits and '-', starting with a letter) of at most 40 characters: with a pool's name it names that pool's Deployment"
type CeleryCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   CeleryClusterSpec   `json:"spec"`
	Status CeleryClusterStatus `json:"status,omitempty"`
}

// CeleryClusterSpec is what the user asks for.
//
// +kubebuilder:validation:XValidation:rule="self.pools.all(p, p.queues.all(q, self.pools.exists_one(o, q in o.queues)))",message="each queue may be consumed by only one pool: the autoscaler gives a queue's backlog to one pool"
type CeleryClusterSpec struct {
	// Image holds the Celery app; workers, beat and (unless it sets its
	// own) Flower run it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:XValidation:rule="self.trim() == self && !self.contains(' ')",message="image must not contain spaces"
	// +required
	Image string `json:"image"`

	// App is Celery's -A argument: the module (and optionally the
	// attribute) of the Celery application, such as "proj" or
	// "proj.celery:app".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_]*)?$')",message="app must be a Python module path, optionally with :attribute, such as proj.celery:app"
	// +required
	App string `json:"app"`

	// Broker says where the tasks wait.
	// +required
	Broker Broker `json:"broker"`

	// Pools are groups of workers, each consuming its own queues and
	// scaled on their backlog. Each becomes a Deployment named
	// <cluster>-<pool>.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=20
	// +required
	Pools []Pool `json:"pools"`

	// Beat runs the periodic-task scheduler: exactly one pod, replaced
	// (never two at once) on change.
	// +optional
	Beat *Beat `json:"beat,omitempty"`

	// Flower runs Celery's monitoring UI with a Service.
	// +optional
	Flower *Flower `json:"flower,omitempty"`

	// Env is set in every worker, beat and Flower container.
	// CELERY_BROKER_URL and FLOWER_BASIC_AUTH are the operator's.
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:XValidation:rule="self.all(e, e.name != 'CELERY_BROKER_URL' && e.name != 'FLOWER_BASIC_AUTH')",message="CELERY_BROKER_URL and FLOWER_BASIC_AUTH are set by the operator (from spec.broker.urlSecretRef and spec.flower.basicAuthSecretRef): leave them out of env"
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`

	// EnvFrom takes variables from whole ConfigMaps and Secrets.
	// +kubebuilder:validation:MaxItems=20
	// +optional
	EnvFrom []corev1.EnvFromSource `json:"envFrom,omitempty"`

	// PollInterval is how often the queues' backlog is read.
	// +kubebuilder:default="1s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('200ms') && duration(self) <= duration('5m')",message="pollInterval must be between 200ms and 5m"
	// +optional
	PollInterval *metav1.Duration `json:"pollInterval,omitempty"`
}

// Broker is the Celery broker, named by a Secret so its password never
// appears in a pod spec, status or Event.
type Broker struct {
	// URLSecretRef is the key of a Secret holding the broker URL
	// (redis://, rediss://, amqp:// or amqps://). Workers get it as
	// CELERY_BROKER_URL through a secretKeyRef.
	// +required
	URLSecretRef corev1.SecretKeySelector `json:"urlSecretRef"`

	// ManagementURLSecretRef is the key of a Secret holding RabbitMQ's
	// management API URL (http://user:password@host:15672). With it the
	// autoscaler also counts messages that workers hold unacknowledged
	// (prefetch, acks_late); AMQP alone sees only ready messages.
	// +optional
	ManagementURLSecretRef *corev1.SecretKeySelector `json:"managementURLSecretRef,omitempty"`
	// Redis tells the autoscaler where kombu keeps a Redis broker's keys
	// when the app's broker_transport_options move them; it must match
	// the app, or the queues read as empty (and a pool that scales to
	// zero stays there while work waits).
	// +optional
	Redis *RedisTransport `json:"redis,omitempty"`
}

// RedisTransport mirrors kombu's Redis broker_transport_options.
type RedisTransport struct {
	// GlobalKeyPrefix is kombu's global_keyprefix, put before every key
	// and channel name.
	// +kubebuilder:validation:MaxLength=200
	// +optional
	GlobalKeyPrefix string `json:"globalKeyPrefix,omitempty"`
	// UnackedKey is kombu's unacked_key, the hash of reserved messages
	// ("unacked" when empty).
	// +kubebuilder:validation:MaxLength=200
	// +optional
	UnackedKey string `json:"unackedKey,omitempty"`
}

// PoolType is Celery's --pool.
// +kubebuilder:validation:Enum=prefork;threads;solo;gevent;eventlet
type PoolType string

// Pool is a group of workers consuming the same queues.
//
// +kubebuilder:validation:XValidation:rule="self.minReplicas <= self.maxReplicas",message="minReplicas must not be above maxReplicas"
// +kubebuilder:validation:XValidation:rule="self.minReplicas > 0 || self.scaleToZero",message="minReplicas 0 needs scaleToZero: true"
// +kubebuilder:validation:XValidation:rule="!has(self.scaleToZero) || !self.scaleToZero || self.minReplicas == 0",message="scaleToZero needs minReplicas: 0 (the default is 1, which never reaches zero)"
type Pool struct {
	// Name of the pool, a DNS label; "beat" and "flower" name the other
	// Deployments.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=22
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self != 'beat' && self != 'flower'",message="a pool may not be named beat or flower: those names are taken by the beat and Flower Deployments"
	// +required
	Name string `json:"name"`

	// Queues the pool's workers consume (celery worker -Q), one name per
	// item.
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=200
	// +kubebuilder:validation:XValidation:rule="self.all(q, !q.contains(',') && !q.contains(' '))",message="a queue name may not contain commas or spaces: list each queue as an item of its own (the workers would split it, the autoscaler would measure a queue of that literal name)"
	// +required
	Queues []string `json:"queues"`

	// Concurrency is each worker's number of child processes or
	// threads (celery worker --concurrency).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +kubebuilder:default=1
	// +optional
	Concurrency int32 `json:"concurrency,omitempty"`

	// Pool is the execution pool (celery worker --pool).
	// +kubebuilder:default=prefork
	// +optional
	Pool PoolType `json:"pool,omitempty"`

	// Resources of each worker container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// MinReplicas and MaxReplicas bound the number of workers.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +kubebuilder:default=1
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +required
	MaxReplicas int32 `json:"maxReplicas"`

	// TargetBacklog is the backlog one worker is meant to carry:
	// replicas = ceil(backlog / targetBacklog), within the bounds.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=10
	// +optional
	TargetBacklog int64 `json:"targetBacklog,omitempty"`

	// ScaleToZero lets the pool have no workers while its queues are
	// empty; the first task wakes it.
	// +optional
	ScaleToZero bool `json:"scaleToZero,omitempty"`

	// ScaleDownWindow: every scale-down (not only the last step to zero)
	// goes only as low as the highest recommendation of this window.
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('1h')",message="scaleDownWindow must be between 0s and 1h"
	// +optional
	ScaleDownWindow *metav1.Duration `json:"scaleDownWindow,omitempty"`

	// MaxScaleUpStep and MaxScaleDownStep bound one change of the
	// worker count (0: unbounded).
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxScaleUpStep int32 `json:"maxScaleUpStep,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxScaleDownStep int32 `json:"maxScaleDownStep,omitempty"`

	// TerminationGracePeriodSeconds is how long a worker told to stop
	// (SIGTERM: Celery's warm shutdown) may finish its running tasks
	// before it is killed. Set it above your longest task. At least 10:
	// with less, every scale-down and rollout kills running tasks.
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:default=300
	// +optional
	TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`
}

// Beat is the periodic-task scheduler.
type Beat struct {
	// Resources of the beat container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
}

// Flower is Celery's monitoring UI.
//
// +kubebuilder:validation:XValidation:rule="!has(self.image) || has(self.command)",message="a Flower image of its own needs its command (for mher/flower: [celery, flower]): the default command loads the cluster's app, which that image does not have"
type Flower struct {
	// Image runs Flower; the cluster's image when empty (it must then
	// have flower installed). Setting it needs command.
	// +optional
	Image string `json:"image,omitempty"`

	// Command runs Flower in image, replacing the default
	// `celery --app <app> flower`; the port is passed as --port.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=20
	// +optional
	Command []string `json:"command,omitempty"`

	// Port Flower listens on, also the Service's port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=5555
	// +optional
	Port int32 `json:"port,omitempty"`

	// BasicAuthSecretRef is the key of a Secret holding "user:password"
	// pairs (comma-separated) for Flower's --basic-auth.
	// +optional
	BasicAuthSecretRef *corev1.SecretKeySelector `json:"basicAuthSecretRef,omitempty"`
}

// CeleryClusterStatus is what the operator observed.
type CeleryClusterStatus struct {
	// ObservedGeneration is the generation this status is about.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Backlog is the sum of the pools' backlogs.
	// +optional
	Backlog int64 `json:"backlog"`

	// Workers is "ready/desired" worker pods over all pools.
	// +optional
	Workers string `json:"workers,omitempty"`

	// ConfigHash is the digest of the configuration the pods read (the
	// broker URL's Secret key, env valueFrom keys, envFrom), read every
	// 10 s: when it moves, the workers, beat and Flower roll.
	// +optional
	ConfigHash string `json:"configHash,omitempty"`
	// Pools are each pool's backlog and scaling.
	// +listType=map
	// +listMapKey=name
	// +optional
	Pools []PoolStatus `json:"pools,omitempty"`

	// Conditions: Ready, Progressing, Degraded, BrokerReachable and
	// ScaleDownSafe (Redis: the workers run Celery 5.3 or later).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// PoolStatus is one pool's backlog and scaling.
type PoolStatus struct {
	Name string `json:"name"`
	// Backlog is the messages waiting in the pool's queues plus those its
	// workers hold unacknowledged, where the broker shows them.
	Backlog int64 `json:"backlog"`
	// UnackedCounted is false when the broker mode cannot see
	// unacknowledged messages (RabbitMQ without a management API URL).
	UnackedCounted bool `json:"unackedCounted"`
	// DesiredReplicas is what the autoscaler set; ReadyReplicas what runs.
	DesiredReplicas int32 `json:"desiredReplicas"`
	ReadyReplicas   int32 `json:"readyReplicas"`
	// LastScaleTime and LastScaleReason describe the last change.
	// +optional
	LastScaleTime *metav1.Time `json:"lastScaleTime,omitempty"`
	// +optional
	LastScaleReason string `json:"lastScaleReason,omitempty"`
	// RunningTasks is the tasks the pool's workers run, and BusyWorkers
	// the workers running at least one, from their heartbeats: a
	// scale-down never goes below BusyWorkers, and removes idle workers
	// first.
	// +optional
	RunningTasks int32 `json:"runningTasks"`
	// +optional
	BusyWorkers int32 `json:"busyWorkers"`
	// Message says why the pool is not scaled now, when it is not (one of
	// its queues could not be read).
	// +optional
	Message string `json:"message,omitempty"`
}

// CeleryClusterList is a list of CeleryClusters.
//
// +kubebuilder:object:root=true
type CeleryClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CeleryCluster `json:"items"`
}
