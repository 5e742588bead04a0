package operator

// What every Setpoint operator needs besides its kinds: Events for its
// log lines, its own admission webhook configurations (by name: the
// install ships them empty and the operator fills them in, so they go
// with the install and no create on them is granted),
// SubjectAccessReviews (Review.Allowed asks whether a requester may read
// what a message would reveal), and,
// in its own namespace, the leader-election Lease (and the Events leader
// election posts about it) and the Secrets of its webhook certificate and
// digest key. `make manifests` turns these into the
// setpoint-base roles; an author's operator gets them from
// `setpoint generate`.

// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations;mutatingwebhookconfigurations,resourceNames=setpoint,verbs=get;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=setpoint-system,resources=leases,verbs=get;create;update
// +kubebuilder:rbac:groups="",namespace=setpoint-system,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",namespace=setpoint-system,resources=secrets,verbs=get;create;update
