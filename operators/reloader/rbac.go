package reloader

// What the reloader does in the cluster, for `make manifests`: it reads
// ConfigMaps and Secrets and patches the workloads that opt in.

// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=configmaps;secrets,verbs=get;list;watch
