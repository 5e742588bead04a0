package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// App runs one container image as a set of processes, the way a Procfile
// does: the process named "web" gets a Service and, with routes, an
// Ingress; every other process is a worker.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=app,categories=setpoint
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Replicas",type=string,JSONPath=`.status.replicas`,description="ready/desired pods over all processes"
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 47",message="the App's name must be a DNS label (lowercase letters, digits and '-', starting with a letter) of at most 47 characters: it names the Service and, with the process name, the Deployments"
type App struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   AppSpec   `json:"spec"`
	Status AppStatus `json:"status,omitempty"`
}

// AppSpec is what the user asks for.
//
// +kubebuilder:validation:XValidation:rule="!has(self.routes) || size(self.routes) == 0 || self.processes.exists(p, p.name == 'web')",message="routes need a process named web: only web receives traffic"
// +kubebuilder:validation:XValidation:rule="!has(self.routes) || self.routes.all(r, self.routes.exists_one(s, s.host == r.host))",message="each host may appear in only one route"
type AppSpec struct {
	// Image is the container image every process runs.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:XValidation:rule="self.trim() == self && !self.contains(' ')",message="image must not contain spaces"
	// +required
	Image string `json:"image"`

	// Processes are the App's process types, like the lines of a
	// Procfile. Each becomes a Deployment named <app>-<process>.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=20
	// +required
	Processes []Process `json:"processes"`

	// Port is where the web process listens; it is also given to it as
	// $PORT. The Service exposes it on port 80.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=8080
	// +optional
	Port int32 `json:"port,omitempty"`

	// Env is set in every process.
	// +kubebuilder:validation:MaxItems=100
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`

	// EnvFrom takes variables from whole ConfigMaps and Secrets, in every
	// process. A change in one of them rolls the App's pods.
	// +kubebuilder:validation:MaxItems=20
	// +optional
	EnvFrom []corev1.EnvFromSource `json:"envFrom,omitempty"`

	// Routes expose the web process through an Ingress, one rule per host.
	// +kubebuilder:validation:MaxItems=20
	// +listType=atomic
	// +optional
	Routes []Route `json:"routes,omitempty"`

	// IngressClassName picks the Ingress controller for the routes; the
	// cluster's default class when empty.
	// +optional
	IngressClassName *string `json:"ingressClassName,omitempty"`

	// HealthCheckPath, when set, is probed over HTTP on the web port for
	// readiness and liveness.
	// +kubebuilder:validation:Pattern=`^/`
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	HealthCheckPath string `json:"healthCheckPath,omitempty"`

	// Metrics, when set, adds Prometheus scrape annotations to the pods.
	// +optional
	Metrics *Metrics `json:"metrics,omitempty"`
}

// Process is one process type of the App.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.replicas) && has(self.autoscaling))",message="set replicas or autoscaling, not both"
// +kubebuilder:validation:XValidation:rule="!has(self.autoscaling) || (has(self.resources) && has(self.resources.requests) && 'cpu' in self.resources.requests)",message="autoscaling on CPU needs resources.requests.cpu"
type Process struct {
	// Name of the process type; "web" receives traffic.
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=15
	// +required
	Name string `json:"name"`

	// Command replaces the image's entrypoint.
	// +optional
	Command []string `json:"command,omitempty"`

	// Args replace the image's command arguments.
	// +optional
	Args []string `json:"args,omitempty"`

	// Replicas is a fixed number of pods (1 when neither this nor
	// autoscaling is set).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Autoscaling hands the replica count to a HorizontalPodAutoscaler.
	// +optional
	Autoscaling *Autoscaling `json:"autoscaling,omitempty"`

	// Resources of the process's container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
}

// Autoscaling scales a process on CPU utilisation.
//
// +kubebuilder:validation:XValidation:rule="self.minReplicas <= self.maxReplicas",message="minReplicas must not be greater than maxReplicas"
type Autoscaling struct {
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=1
	// +optional
	MinReplicas int32 `json:"minReplicas,omitempty"`

	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +required
	MaxReplicas int32 `json:"maxReplicas"`

	// TargetCPUUtilizationPercentage of the requested CPU.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +kubebuilder:default=80
	// +optional
	TargetCPUUtilizationPercentage int32 `json:"targetCPUUtilizationPercentage,omitempty"`
}

// Route sends a host's traffic (some paths of it) to the web process.
type Route struct {
	// Host is a DNS name.
	// +kubebuilder:validation:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +kubebuilder:validation:MaxLength=253
	// +required
	Host string `json:"host"`

	// Paths are path prefixes; "/" when empty.
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:Pattern=`^/`
	// +optional
	Paths []string `json:"paths,omitempty"`

	// TLSSecretName is a Secret of type kubernetes.io/tls for the host;
	// the URL is https when set.
	// +optional
	TLSSecretName string `json:"tlsSecretName,omitempty"`
}

// Metrics says where the pods serve Prometheus metrics.
type Metrics struct {
	// Port of the metrics endpoint; the App's port when 0.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// +kubebuilder:validation:Pattern=`^/`
	// +kubebuilder:default=/metrics
	// +optional
	Path string `json:"path,omitempty"`
}

// AppStatus is what the operator observed.
type AppStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Replicas is "ready/desired" over all processes, for kubectl.
	// +optional
	Replicas string `json:"replicas,omitempty"`

	// URL is the App's first URL.
	// +optional
	URL string `json:"url,omitempty"`

	// URLs are every host and path the App is reachable at.
	// +optional
	URLs []string `json:"urls,omitempty"`

	// Processes has one entry per process.
	// +listType=map
	// +listMapKey=name
	// +optional
	Processes []ProcessStatus `json:"processes,omitempty"`

	// Conditions: Ready, Progressing and Degraded.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ProcessStatus is one process's replicas.
type ProcessStatus struct {
	Name string `json:"name"`
	// Desired pods (from the autoscaler when it owns the count).
	Replicas int32 `json:"replicas"`
	// Ready pods.
	ReadyReplicas int32 `json:"readyReplicas"`
	// UpdatedReplicas run the current pod template.
	UpdatedReplicas int32 `json:"updatedReplicas"`
}

// +kubebuilder:object:root=true

// AppList is a list of Apps.
type AppList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []App `json:"items"`
}
