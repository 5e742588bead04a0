package app

// What the App operator does in the cluster, for `make manifests`: it
// reads Apps and writes their status, owns their children, and reads the
// ConfigMaps and Secrets they use (a change in one rolls the App); its
// releases are ControllerRevisions, and a rollback patches the App.

// +kubebuilder:rbac:groups=apps.setpoint.dev,resources=apps,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=apps.setpoint.dev,resources=apps/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=apps.setpoint.dev,resources=apps/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=controllerrevisions,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps;secrets,verbs=get;list;watch
