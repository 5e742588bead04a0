package postgres

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
	"github.com/setpoint-dev/setpoint/operators/postgres/agent"
)

// DefaultAgentImage is Setpoint's image, which holds the agent
// (/setpoint-postgres-agent).
const DefaultAgentImage = "ghcr.io/setpoint-dev/setpoint:latest"

func selector(c *v1alpha1.PostgresCluster) map[string]string {
	return map[string]string{LabelCluster: c.Name}
}

// Role is the role label an instance's pod carries: the current primary
// is primary, every other instance replica.
func Role(c *v1alpha1.PostgresCluster, instance string) string {
	if instance == c.Status.CurrentPrimary {
		return RolePrimary
	}
	return RoleReplica
}

// InstanceImage is the image of an instance's pod: the one its status
// names (a rolling update moves the instances one at a time), else
// spec.imageName.
func InstanceImage(c *v1alpha1.PostgresCluster, instance string) string {
	for _, in := range c.Status.Instances {
		if in.Name == instance && in.Image != "" {
			return in.Image
		}
	}
	return c.Spec.ImageName
}

// Claim is an instance's PersistentVolumeClaim, named like its pod.
func Claim(c *v1alpha1.PostgresCluster, instance string) *corev1.PersistentVolumeClaim {
	size := resource.MustParse("1Gi")
	if c.Spec.Storage.Size != nil {
		size = *c.Spec.Storage.Size
	}
	return &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: instance, Labels: map[string]string{LabelCluster: c.Name, LabelInstance: instance}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: c.Spec.Storage.StorageClassName,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
}

// Pod is an instance's pod: an init container copies the agent from
// Setpoint's image into an emptyDir, and the agent runs as PID 1 of the
// postgres container, with postgres as its child.
func Pod(c *v1alpha1.PostgresCluster, instance, agentImage string) *corev1.Pod {
	probe := func(path string, failures int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(AgentPort)}},
			PeriodSeconds: 2, TimeoutSeconds: 2, FailureThreshold: failures}
	}
	labels := map[string]string{LabelCluster: c.Name, LabelInstance: instance, LabelRole: Role(c, instance),
		"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/instance": c.Name}
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: instance, Labels: labels},
		Spec: corev1.PodSpec{
			ServiceAccountName: agentName(c),
			Hostname:           instance,
			InitContainers: []corev1.Container{{
				Name: "bootstrap", Image: agentImage,
				Command:      []string{"/" + agent.Binary, "install", controllerDir},
				VolumeMounts: []corev1.VolumeMount{{Name: "controller", MountPath: controllerDir}},
			}},
			Containers: []corev1.Container{{
				Name:    "postgres",
				Image:   InstanceImage(c, instance),
				Command: []string{controllerDir + "/" + agent.Binary, "run"},
				Env:     agentEnv(c),
				Ports: []corev1.ContainerPort{
					{Name: "postgresql", ContainerPort: PostgresPort},
					{Name: "agent", ContainerPort: AgentPort},
				},
				Resources:      c.Spec.Resources,
				ReadinessProbe: probe("/readyz", 1),
				LivenessProbe:  probe("/healthz", 5),
				VolumeMounts: []corev1.VolumeMount{
					{Name: "pgdata", MountPath: dataMount},
					{Name: "controller", MountPath: controllerDir},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "pgdata", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: instance}}},
				{Name: "controller", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
			// The agent stops postgres fast on SIGTERM; a checkpoint of a
			// busy database may take a while.
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			Affinity:                      affinity(c),
			NodeSelector:                  c.Spec.NodeSelector,
			Tolerations:                   c.Spec.Tolerations,
		},
	}
}

// agentEnv is what the agent reads: who it is, where the data goes, and
// the passwords, from the Secrets (never as literal values).
func agentEnv(c *v1alpha1.PostgresCluster) []corev1.EnvVar {
	db, owner := database(c)
	secretEnv := func(name, secret string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "password"}}}
	}
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	return []corev1.EnvVar{
		{Name: "CLUSTER_NAME", Value: c.Name},
		field("POD_NAME", "metadata.name"),
		field("NAMESPACE", "metadata.namespace"),
		{Name: "PGDATA", Value: DataDir},
		{Name: "APP_DATABASE", Value: db},
		{Name: "APP_OWNER", Value: owner},
		secretEnv("SUPERUSER_PASSWORD", SuperuserSecret(c)),
		secretEnv("REPLICATION_PASSWORD", ReplicationSecret(c)),
		secretEnv("APP_PASSWORD", AppSecret(c)),
	}
}

// affinity is the spec's, or a preference for nodes without another
// instance of the cluster (a preference, so a one-node cluster still runs
// them all).
func affinity(c *v1alpha1.PostgresCluster) *corev1.Affinity {
	if c.Spec.Affinity != nil {
		return c.Spec.Affinity
	}
	return &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{Weight: 100,
			PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: corev1.LabelHostname,
				LabelSelector: &metav1.LabelSelector{MatchLabels: selector(c)}}}}}}
}

// Services are -rw (the primary), -ro (ready replicas) and -r (any ready
// instance).
func Services(c *v1alpha1.PostgresCluster) []*corev1.Service {
	svc := func(name string, sel map[string]string) *corev1.Service {
		return &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: selector(c)},
			Spec: corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{{
				Name: "postgresql", Port: PostgresPort, TargetPort: intstr.FromString("postgresql")}}},
		}
	}
	with := func(role string) map[string]string { return map[string]string{LabelCluster: c.Name, LabelRole: role} }
	return []*corev1.Service{svc(ServiceRW(c), with(RolePrimary)), svc(ServiceRO(c), with(RoleReplica)), svc(ServiceR(c), selector(c))}
}

// PodDisruptionBudgets: the primary's (minAvailable 1) refuses the
// eviction of the primary, so a drain waits while the operator switches
// over (it sees the node cordoned) and the pod, a replica then, leaves
// under the replicas' budget (one replica at a time). A single instance gets
// none, so it never blocks the drain of its node. Unhealthy pods may
// always go.
func PodDisruptionBudgets(c *v1alpha1.PostgresCluster) []*policyv1.PodDisruptionBudget {
	if c.Spec.Instances < 2 {
		return nil
	}
	pdb := func(name, role string, spec policyv1.PodDisruptionBudgetSpec) *policyv1.PodDisruptionBudget {
		spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{LabelCluster: c.Name, LabelRole: role}}
		spec.UnhealthyPodEvictionPolicy = ptr.To(policyv1.AlwaysAllow)
		return &policyv1.PodDisruptionBudget{
			TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: selector(c)},
			Spec:       spec,
		}
	}
	return []*policyv1.PodDisruptionBudget{
		pdb(c.Name+"-primary", RolePrimary, policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1))}),
		// An integer minAvailable, not maxUnavailable: the disruption
		// controller counts expected pods through the owner's scale
		// subresource for maxUnavailable, and refuses every eviction
		// when the owner (a PostgresCluster) has none.
		pdb(c.Name, RoleReplica, policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(c.Spec.Instances - 2))}),
	}
}

// AgentRBAC is the agents' identity: they may read their cluster and
// hold its primary Lease, nothing else (Secrets reach them as env).
func AgentRBAC(c *v1alpha1.PostgresCluster) (*corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding) {
	name := agentName(c)
	meta := metav1.ObjectMeta{Name: name, Labels: selector(c)}
	sa := &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta}
	role := &rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"}, ObjectMeta: meta,
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"postgresclusters"}, ResourceNames: []string{c.Name}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{agent.LeaseName(c.Name)}, Verbs: []string{"get", "update"}},
			// create cannot be limited by name; the Lease is made once.
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		}}
	rb := &rbacv1.RoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"}, ObjectMeta: meta,
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name}}}
	return sa, role, rb
}

// Serial is an instance's number (<name>-<n>), or 0.
func Serial(c *v1alpha1.PostgresCluster, instance string) int {
	n, err := strconv.Atoi(instance[min(len(instance), len(c.Name)+1):])
	if err != nil || instance != fmt.Sprintf("%s-%d", c.Name, n) {
		return 0
	}
	return n
}
