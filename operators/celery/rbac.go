package celery

// What the CeleryCluster operator does in the cluster, for `make
// manifests`: it reads CeleryClusters and writes their status, owns their
// Deployments and Services, reads the ConfigMaps and Secrets its pods
// read one by one (get, not list: it never sees the others; a change in
// one rolls the pods), and before a scale-down lists the pool's pods and
// sets their deletion cost, so idle workers go first.

// +kubebuilder:rbac:groups=celery.setpoint.dev,resources=celeryclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=celery.setpoint.dev,resources=celeryclusters/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=celery.setpoint.dev,resources=celeryclusters/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps;secrets,verbs=get
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;patch
