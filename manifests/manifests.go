package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-tools/pkg/crd"
	"sigs.k8s.io/controller-tools/pkg/genall"
	"sigs.k8s.io/controller-tools/pkg/loader"
	"sigs.k8s.io/controller-tools/pkg/rbac"
	"sigs.k8s.io/yaml"

	baserbac "github.com/setpoint-dev/setpoint/config/rbac"
)

// Options describe the operator to install.
type Options struct {
	// Name of the operator: its ServiceAccount, roles and Deployment.
	Name string
	// Namespace it runs in (default Name + "-system").
	Namespace string
	// Image of the operator's binary, and its arguments.
	Image string
	Args  []string
	// Paths are the Go packages (as for `go list`, e.g. ./...) whose API
	// types become CRDs and whose +kubebuilder:rbac markers become the
	// operator's ClusterRole.
	Paths []string
	// Replicas of the Deployment (default 1). More than one needs
	// Options.LeaderElection in the operator, or each would handle every
	// object.
	Replicas int32
	// MetricsPort and ProbePort are where the binary serves /metrics and
	// /healthz, /readyz (Options.MetricsAddr, ProbeAddr; default 8080 and
	// 8081).
	MetricsPort, ProbePort int32
	// WebhookPort, when set, is where the binary serves its admission
	// webhooks (Options.Webhooks.Port): a Service named Name-webhook
	// fronts it.
	WebhookPort int32
	// WatchNamespaces, when set, are the only namespaces the operator
	// may act in: every rule on namespaced resources becomes a Role in
	// each of them, and only the rules on cluster-scoped resources stay
	// a ClusterRole. The binary must watch only these (pass its own flag
	// with Args).
	WatchNamespaces []string
}

func (o *Options) defaults() error {
	if o.Name == "" {
		return errors.New("an operator name is needed")
	}
	if o.Image == "" {
		return errors.New("an image is needed")
	}
	if o.Namespace == "" {
		o.Namespace = o.Name + "-system"
	}
	if len(o.Paths) == 0 {
		o.Paths = []string{"./..."}
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.MetricsPort == 0 {
		o.MetricsPort = 8080
	}
	if o.ProbePort == 0 {
		o.ProbePort = 8081
	}
	return nil
}

// Generate returns the install objects of the operator, in the order to
// apply them: Namespace, CRDs, ServiceAccount, roles and bindings,
// Services, Deployment, PodDisruptionBudget.
func Generate(o Options) ([]*unstructured.Unstructured, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	generated, err := fromCode(o)
	if err != nil {
		return nil, err
	}
	var crds, roles []*unstructured.Unstructured
	for _, u := range generated {
		switch u.GetKind() {
		case "CustomResourceDefinition":
			crds = append(crds, u)
		case "ClusterRole", "Role":
			roles = append(roles, u)
		}
	}
	base, err := Read(bytes.NewReader(baserbac.Base))
	if err != nil {
		return nil, fmt.Errorf("the library's roles: %w", err)
	}
	for _, u := range base {
		u.SetName(o.Name + "-base")
		if u.GetNamespace() != "" {
			u.SetNamespace(o.Namespace)
		}
		renameResources(u, o.Name)
		roles = append(roles, u)
	}

	out := []*unstructured.Unstructured{toU(&corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Namespace, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}},
	})}
	out = append(out, crds...)
	out = append(out, toU(&corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, Labels: labels(o)},
	}))
	if len(o.WatchNamespaces) > 0 {
		roles = scopeTo(roles, o.WatchNamespaces)
	}
	for _, r := range roles {
		out = append(out, r, binding(o, r))
	}
	out = append(out, toU(service(o, "metrics", o.MetricsPort, o.MetricsPort)))
	if o.WebhookPort != 0 {
		out = append(out, toU(service(o, "webhook", 443, o.WebhookPort)))
		out = append(out, webhookConfigs(o)...)
	}
	out = append(out, toU(Deployment(o)), toU(disruptionBudget(o)))
	return out, nil
}

// Write writes objs as a YAML stream.
func Write(w io.Writer, objs []*unstructured.Unstructured) error {
	for _, u := range objs {
		data, err := yaml.Marshal(u.Object)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		if _, err := fmt.Fprintf(w, "---\n%s", data); err != nil {
			return err
		}
	}
	return nil
}

// fromCode runs controller-tools' CRD and RBAC generators on the paths.
func fromCode(o Options) ([]*unstructured.Unstructured, error) {
	var crdGen, rbacGen genall.Generator = crd.Generator{}, rbac.Generator{RoleName: o.Name}
	rt, err := genall.Generators{&crdGen, &rbacGen}.ForRoots(o.Paths...)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", strings.Join(o.Paths, " "), err)
	}
	files := &memory{}
	rt.OutputRules = genall.OutputRules{Default: files}
	var errs bytes.Buffer
	rt.ErrorWriter = &errs
	if failed := rt.Run(); failed {
		return nil, fmt.Errorf("generate from %s: %s", strings.Join(o.Paths, " "), strings.TrimSpace(errs.String()))
	}
	var out []*unstructured.Unstructured
	for _, name := range slices.Sorted(maps.Keys(files.files)) {
		objs, err := Read(files.files[name])
		if err != nil {
			return nil, fmt.Errorf("generated %s: %w", name, err)
		}
		for _, u := range objs {
			if u.GetNamespace() != "" {
				u.SetNamespace(o.Namespace) // a marker's namespace=... is the install's
			}
			out = append(out, u)
		}
	}
	return out, nil
}

// memory is a genall.OutputRule that keeps what the generators write.
type memory struct{ files map[string]*bytes.Buffer }

func (m *memory) Open(_ *loader.Package, path string) (io.WriteCloser, error) {
	if m.files == nil {
		m.files = map[string]*bytes.Buffer{}
	}
	b := &bytes.Buffer{}
	m.files[path] = b
	return nopCloser{b}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Read reads a YAML (or JSON) stream of objects, such as Write's output
// or what kubectl kustomize and helm template print; empty documents are
// skipped.
func Read(r io.Reader) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

func labels(o Options) map[string]string {
	return map[string]string{"app.kubernetes.io/name": o.Name, "app.kubernetes.io/component": "manager"}
}

// binding binds a generated role to the operator's ServiceAccount.
func binding(o Options, role *unstructured.Unstructured) *unstructured.Unstructured {
	subjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: o.Name, Namespace: o.Namespace}}
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: role.GetKind(), Name: role.GetName()}
	if role.GetKind() == "Role" {
		return toU(&rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: role.GetName(), Namespace: role.GetNamespace()},
			RoleRef:    ref, Subjects: subjects,
		})
	}
	return toU(&rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: role.GetName()},
		RoleRef:    ref, Subjects: subjects,
	})
}

func service(o Options, what string, port, target int32) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name + "-" + what, Namespace: o.Namespace, Labels: labels(o)},
		Spec: corev1.ServiceSpec{
			Selector: labels(o),
			Ports:    []corev1.ServicePort{{Name: what, Port: port, TargetPort: intstr.FromInt32(target)}},
		},
	}
}

// Deployment is the operator's manager: non-root with a read-only root
// filesystem and no capabilities, resources, liveness and readiness on
// the library's probe endpoints, POD_NAMESPACE for leader election.
func Deployment(o Options) *appsv1.Deployment {
	no, yes := false, true
	ports := []corev1.ContainerPort{{Name: "metrics", ContainerPort: o.MetricsPort}, {Name: "probes", ContainerPort: o.ProbePort}}
	if o.WebhookPort != 0 {
		ports = append(ports, corev1.ContainerPort{Name: "webhook", ContainerPort: o.WebhookPort})
	}
	probe := func(path string, period int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("probes")}}, PeriodSeconds: period}
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, Labels: labels(o)},
		Spec: appsv1.DeploymentSpec{
			Replicas: &o.Replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels(o)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(o)},
				Spec: corev1.PodSpec{
					ServiceAccountName: o.Name,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot: &yes, RunAsUser: new(int64(65532)), RunAsGroup: new(int64(65532)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name: "manager", Image: o.Image, Args: o.Args,
						Env:            []corev1.EnvVar{{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}},
						Ports:          ports,
						LivenessProbe:  probe("/healthz", 10),
						ReadinessProbe: probe("/readyz", 5),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
					}},
					Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
}

func disruptionBudget(o Options) *policyv1.PodDisruptionBudget {
	one := intstr.FromInt32(1)
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, Labels: labels(o)},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: labels(o)}},
	}
}

func toU(obj runtime.Object) *unstructured.Unstructured {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		panic(fmt.Sprintf("manifests: convert %T: %v", obj, err)) // our own typed values
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	return u
}

// WriteDir writes objs as a kustomize directory: one file per object
// kind group and a kustomization.yaml listing them.
func WriteDir(dir string, objs []*unstructured.Unstructured) error {
	groups := map[string][]*unstructured.Unstructured{}
	var order []string
	for _, u := range objs {
		file := "manager.yaml"
		switch u.GetKind() {
		case "CustomResourceDefinition":
			file = "crds.yaml"
		case "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding", "ServiceAccount":
			file = "rbac.yaml"
		}
		if _, ok := groups[file]; !ok {
			order = append(order, file)
		}
		groups[file] = append(groups[file], u)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	kust := "resources:\n"
	for _, file := range order {
		var b bytes.Buffer
		if err := Write(&b, groups[file]); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, file), b.Bytes(), 0o644); err != nil {
			return err
		}
		kust += "- " + file + "\n"
	}
	return os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kust), 0o644)
}

// renameResources points the library's rules on its own objects by name
// (its webhook configurations, "setpoint" in the markers) at the
// operator's name, which is Options.Name of the author's operator.
func renameResources(u *unstructured.Unstructured, name string) {
	rules, _, _ := unstructured.NestedSlice(u.Object, "rules")
	for _, r := range rules {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		if names, ok := m["resourceNames"].([]any); ok && len(names) > 0 {
			m["resourceNames"] = []any{name}
		}
	}
	_ = unstructured.SetNestedSlice(u.Object, rules, "rules")
}

// webhookConfigs are the operator's webhook configurations, empty: the
// operator fills them in by name (all its role allows), and deleting the
// install removes them.
func webhookConfigs(o Options) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, kind := range []string{"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("admissionregistration.k8s.io/v1")
		u.SetKind(kind)
		u.SetName(o.Name)
		u.SetLabels(map[string]string{"app.kubernetes.io/managed-by": "setpoint"})
		out = append(out, u)
	}
	return out
}

// clusterScoped are the cluster-scoped resources an operator's rules
// may name: a rule on one of them cannot be a Role.
var clusterScoped = map[string]bool{
	"subjectaccessreviews": true, "selfsubjectaccessreviews": true, "tokenreviews": true,
	"validatingwebhookconfigurations": true, "mutatingwebhookconfigurations": true,
	"validatingadmissionpolicies": true, "validatingadmissionpolicybindings": true,
	"customresourcedefinitions": true, "namespaces": true, "nodes": true, "persistentvolumes": true,
	"storageclasses": true, "clusterroles": true, "clusterrolebindings": true, "priorityclasses": true,
	"ingressclasses": true, "runtimeclasses": true, "certificatesigningrequests": true,
}

// scopeTo turns each ClusterRole's rules on namespaced resources into a
// Role in every one of namespaces, named like it with "-namespaced"
// (the install's own Role may be named like the ClusterRole, in a
// namespace that is also watched); the ClusterRole keeps the
// cluster-scoped rules, and goes when there are none.
func scopeTo(roles []*unstructured.Unstructured, namespaces []string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, r := range roles {
		if r.GetKind() != "ClusterRole" {
			out = append(out, r)
			continue
		}
		rules, _, _ := unstructured.NestedSlice(r.Object, "rules")
		var cluster, namespaced []any
		for _, rule := range rules {
			if onClusterScoped(rule) {
				cluster = append(cluster, rule)
			} else {
				namespaced = append(namespaced, rule)
			}
		}
		if len(cluster) > 0 {
			cr := r.DeepCopy()
			_ = unstructured.SetNestedSlice(cr.Object, cluster, "rules")
			out = append(out, cr)
		}
		if len(namespaced) == 0 {
			continue
		}
		for _, ns := range namespaces {
			role := r.DeepCopy()
			role.SetKind("Role")
			role.SetName(r.GetName() + "-namespaced")
			role.SetNamespace(ns)
			_ = unstructured.SetNestedSlice(role.Object, runtime.DeepCopyJSONValue(namespaced).([]any), "rules")
			out = append(out, role)
		}
	}
	return out
}

func onClusterScoped(rule any) bool {
	m, _ := rule.(map[string]any)
	resources, _ := m["resources"].([]any)
	for _, res := range resources {
		if name, _ := res.(string); clusterScoped[name] {
			return true
		}
	}
	return false
}
