package v1alpha1

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// App runs one container image as a set of processes, the way a Procfile
// does: the process named "web" gets a Service and, with routes, an
// Ingress; every other process is a worker.
//
// Each change of what shapes the pods (image, processes' commands, env,
// files, probes, pod settings; not scale, routes or the Service) is
// recorded as a numbered release, a ControllerRevision
// <app>-release-<n> (status.release is the one running). To roll back
// to release n: kubectl annotate app <name> apps.setpoint.dev/rollback-to=<n>
// — its pod-shaping spec is put back, as a new release.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=app,categories=setpoint
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Replicas",type=string,JSONPath=`.status.replicas`,description="ready/desired pods over all processes"
// +kubebuilder:printcolumn:name="Release",type=integer,JSONPath=`.status.release`
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

	// ImagePullSecrets name Secrets of type kubernetes.io/dockerconfigjson
	// in the App's namespace, for images in private registries.
	// +kubebuilder:validation:MaxItems=10
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// Files mount ConfigMap and Secret keys as files in every process. A
	// change in a mounted key rolls the App's pods (other keys of the same
	// ConfigMap or Secret do not).
	// +listType=map
	// +listMapKey=path
	// +kubebuilder:validation:MaxItems=50
	// +optional
	Files []File `json:"files,omitempty"`

	// Ports are more ports of the web process, besides port, each exposed
	// by the Service.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=20
	// +optional
	Ports []Port `json:"ports,omitempty"`

	// Service sets the web Service's type and annotations.
	// +optional
	Service *ServiceSettings `json:"service,omitempty"`

	// Ingress sets the annotations of the routes' Ingress (for example
	// cert-manager's cert-manager.io/cluster-issuer, or a rewrite rule).
	// +optional
	Ingress *IngressSettings `json:"ingress,omitempty"`

	// Pod sets where and as whom every process's pods run, and their extra
	// labels and annotations.
	// +optional
	Pod *PodSettings `json:"pod,omitempty"`

	// RevisionHistoryLimit is how many releases are kept for rollback.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=10
	// +optional
	RevisionHistoryLimit int32 `json:"revisionHistoryLimit,omitempty"`
}

// File is one ConfigMap or Secret key mounted read-only at a path.
//
// +kubebuilder:validation:XValidation:rule="has(self.configMap) != has(self.secret)",message="a file comes from exactly one of configMap and secret"
type File struct {
	// Path is the file's absolute path in the container.
	// +kubebuilder:validation:Pattern=`^/[^:]*[^/:]$`
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.split('/').exists(s, s == '..')",message="path must not contain '..'"
	// +required
	Path string `json:"path"`

	// ConfigMap is the ConfigMap key the file holds.
	// +optional
	ConfigMap *KeyRef `json:"configMap,omitempty"`

	// Secret is the Secret key the file holds.
	// +optional
	Secret *KeyRef `json:"secret,omitempty"`

	// Mode is the file's permission bits (0644 when not set; YAML reads
	// 0400 as octal).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=511
	// +optional
	Mode *int32 `json:"mode,omitempty"`
}

// KeyRef names a key of a ConfigMap or Secret in the App's namespace.
type KeyRef struct {
	// Name of the ConfigMap or Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// Key in its data.
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +kubebuilder:validation:MaxLength=253
	// +required
	Key string `json:"key"`
}

// Port is an extra port of the web process.
type Port struct {
	// Name of the port on the container and the Service ("http" is the
	// main port's).
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="self != 'http' && self != 'metrics'",message="http and metrics name the ports Setpoint makes"
	// +required
	Name string `json:"name"`

	// Port the container listens on.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +required
	Port int32 `json:"port"`

	// ServicePort is the Service's port for it; the container port when
	// not set.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	ServicePort int32 `json:"servicePort,omitempty"`

	// Protocol is TCP or UDP.
	// +kubebuilder:validation:Enum=TCP;UDP
	// +kubebuilder:default=TCP
	// +optional
	Protocol corev1.Protocol `json:"protocol,omitempty"`
}

// ServiceSettings are the web Service's type and annotations.
type ServiceSettings struct {
	// Type is ClusterIP (in-cluster only), NodePort or LoadBalancer.
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +kubebuilder:default=ClusterIP
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`

	// Annotations of the Service (for example a cloud load balancer's).
	// +kubebuilder:validation:MaxProperties=50
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// IngressSettings are the routes' Ingress annotations.
type IngressSettings struct {
	// Annotations of the Ingress.
	// +kubebuilder:validation:MaxProperties=50
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// PodSettings shape every process's pods.
//
// +kubebuilder:validation:XValidation:rule="!has(self.labels) || self.labels.all(k, !k.startsWith('apps.setpoint.dev/'))",message="pod.labels must not use the apps.setpoint.dev/ prefix: Setpoint selects pods by those labels"
type PodSettings struct {
	// Labels added to the pods.
	// +kubebuilder:validation:MaxProperties=50
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// Annotations added to the pods.
	// +kubebuilder:validation:MaxProperties=50
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// NodeSelector restricts the pods to nodes with these labels.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations let the pods run on tainted nodes.
	// +kubebuilder:validation:MaxItems=50
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Affinity places the pods by node and by other pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// TopologySpreadConstraints replace the default spread (a process's
	// pods over nodes, kubernetes.io/hostname, maxSkew 1, best effort).
	// A constraint without a labelSelector selects the process's pods.
	// +kubebuilder:validation:MaxItems=10
	// +optional
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`

	// ServiceAccountName is the identity the pods run as; the namespace's
	// default ServiceAccount when empty.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// SecurityContext of the pods.
	// +optional
	SecurityContext *corev1.PodSecurityContext `json:"securityContext,omitempty"`

	// ContainerSecurityContext of every process's container.
	// +optional
	ContainerSecurityContext *corev1.SecurityContext `json:"containerSecurityContext,omitempty"`

	// PriorityClassName is the pods' PriorityClass.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`
}

// Process is one process type of the App.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.replicas) && has(self.autoscaling))",message="set replicas or autoscaling, not both"
// +kubebuilder:validation:XValidation:rule="!has(self.autoscaling) || (has(self.autoscaling.targetMemoryUtilizationPercentage) && !has(self.autoscaling.targetCPUUtilizationPercentage)) || (has(self.resources) && has(self.resources.requests) && 'cpu' in self.resources.requests)",message="autoscaling on CPU needs resources.requests.cpu"
// +kubebuilder:validation:XValidation:rule="!has(self.autoscaling) || !has(self.autoscaling.targetMemoryUtilizationPercentage) || (has(self.resources) && has(self.resources.requests) && 'memory' in self.resources.requests)",message="autoscaling on memory needs resources.requests.memory"
type Process struct {
	// Name of the process type; "web" receives traffic.
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=15
	// +required
	Name string `json:"name"`

	// Image replaces the App's image for this process.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.trim() == self && !self.contains(' ')",message="image must not contain spaces"
	// +optional
	Image string `json:"image,omitempty"`

	// Env is set in this process after the App's env; a variable of the
	// same name replaces the App's.
	// +kubebuilder:validation:MaxItems=100
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`

	// Probes check the process's container. For web, healthCheckPath is a
	// shorthand for HTTP readiness and liveness probes; a probe set here
	// replaces the one it implies.
	// +optional
	Probes *Probes `json:"probes,omitempty"`

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

// Autoscaling scales a process on CPU utilisation (80 % of the request
// when no target is set), memory utilisation or both.
//
// +kubebuilder:validation:XValidation:rule="self.minReplicas <= self.maxReplicas",message="minReplicas must not be greater than maxReplicas"
type Autoscaling struct {
	// MinReplicas is the fewest pods; the App is Ready when this many
	// are available, whatever the autoscaler's count.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=1
	// +optional
	MinReplicas int32 `json:"minReplicas,omitempty"`

	// MaxReplicas is the most pods the autoscaler may run.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +required
	MaxReplicas int32 `json:"maxReplicas"`

	// TargetCPUUtilizationPercentage of the requested CPU; 80 when no
	// memory target is set either.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	TargetCPUUtilizationPercentage int32 `json:"targetCPUUtilizationPercentage,omitempty"`

	// TargetMemoryUtilizationPercentage of the requested memory.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	TargetMemoryUtilizationPercentage int32 `json:"targetMemoryUtilizationPercentage,omitempty"`

	// Behavior tunes how fast the autoscaler scales up and down (the
	// HorizontalPodAutoscaler's own field).
	// +optional
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
}

// Probes are a process's startup, readiness and liveness checks.
type Probes struct {
	// Startup holds off the other probes until it first succeeds, for a
	// process that is slow to start.
	// +optional
	Startup *Probe `json:"startup,omitempty"`

	// Readiness decides whether the pod receives traffic.
	// +optional
	Readiness *Probe `json:"readiness,omitempty"`

	// Liveness restarts the container when it fails.
	// +optional
	Liveness *Probe `json:"liveness,omitempty"`
}

// Probe is one check: an HTTP GET, a TCP connection or a command.
//
// +kubebuilder:validation:XValidation:rule="(has(self.httpGet) ? 1 : 0) + (has(self.tcpSocket) ? 1 : 0) + (has(self.exec) ? 1 : 0) == 1",message="a probe has exactly one of httpGet, tcpSocket and exec"
type Probe struct {
	// HTTPGet succeeds on a 2xx or 3xx answer.
	// +optional
	HTTPGet *HTTPProbe `json:"httpGet,omitempty"`

	// TCPSocket succeeds when the port accepts a connection.
	// +optional
	TCPSocket *TCPProbe `json:"tcpSocket,omitempty"`

	// Exec succeeds when the command exits 0.
	// +optional
	Exec *ExecProbe `json:"exec,omitempty"`

	// InitialDelaySeconds before the first check.
	// +kubebuilder:validation:Minimum=0
	// +optional
	InitialDelaySeconds int32 `json:"initialDelaySeconds,omitempty"`

	// PeriodSeconds between checks (10).
	// +kubebuilder:validation:Minimum=1
	// +optional
	PeriodSeconds int32 `json:"periodSeconds,omitempty"`

	// TimeoutSeconds of one check (1).
	// +kubebuilder:validation:Minimum=1
	// +optional
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`

	// FailureThreshold is how many failures in a row count (3; 6 for the
	// liveness probe healthCheckPath implies).
	// +kubebuilder:validation:Minimum=1
	// +optional
	FailureThreshold int32 `json:"failureThreshold,omitempty"`

	// SuccessThreshold is how many successes in a row count after a
	// failure (1; only readiness may set more).
	// +kubebuilder:validation:Minimum=1
	// +optional
	SuccessThreshold int32 `json:"successThreshold,omitempty"`
}

// HTTPProbe is an HTTP GET of a path.
type HTTPProbe struct {
	// Path to GET.
	// +kubebuilder:validation:Pattern=`^/`
	// +kubebuilder:validation:MaxLength=1024
	// +required
	Path string `json:"path"`

	// Port number or name; the web port for web, required for other
	// processes.
	// +optional
	Port *intstr.IntOrString `json:"port,omitempty"`
}

// TCPProbe is a TCP connection to a port.
type TCPProbe struct {
	// Port number or name; the web port for web, required for other
	// processes.
	// +optional
	Port *intstr.IntOrString `json:"port,omitempty"`
}

// ExecProbe runs a command in the container.
type ExecProbe struct {
	// Command and its arguments, run without a shell.
	// +kubebuilder:validation:MinItems=1
	// +required
	Command []string `json:"command"`
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

	// Path of the metrics endpoint.
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

	// Release is the number of the release the pods run: a new one is
	// recorded (as a ControllerRevision <app>-release-<n>) each time what
	// shapes the pods changes.
	// +optional
	Release int64 `json:"release,omitempty"`

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
	// Name of the process.
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
