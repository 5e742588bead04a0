package postgres

// What the PostgresCluster operator does in the cluster, for `make
// manifests`. It grants the agents' Role, so it holds what that Role
// holds (RBAC refuses to grant more than the granter has). pods/proxy
// reads each agent's /status through the API server.

// +kubebuilder:rbac:groups=postgres.setpoint.dev,resources=postgresclusters,verbs=get;list;watch;patch;update
// +kubebuilder:rbac:groups=postgres.setpoint.dev,resources=postgresclusters/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=postgres.setpoint.dev,resources=postgresclusters/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=pods;persistentvolumeclaims;services;serviceaccounts,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=pods/proxy,verbs=get
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update;delete
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get
