package celery

// What the CeleryCluster operator does in the cluster, for `make
// manifests`: it reads CeleryClusters and writes their status, owns their
// Deployments and Services, and reads broker Secrets one by one (get, not
// list: it never sees the other Secrets).

// +kubebuilder:rbac:groups=celery.setpoint.dev,resources=celeryclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=celery.setpoint.dev,resources=celeryclusters/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=celery.setpoint.dev,resources=celeryclusters/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
