package processnode

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// defaultPath is the PATH of a container whose env sets none, as container
// runtimes give.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookup reads what env vars refer to. The kubelet reads them when the
// container starts; so does this.
type lookup interface {
	configMap(name string) (map[string]string, error)
	secret(name string) (map[string][]byte, error)
}

type apiLookup struct {
	ctx context.Context
	cs  kubernetes.Interface
	ns  string
}

func (l apiLookup) configMap(name string) (map[string]string, error) {
	cm, err := l.cs.CoreV1().ConfigMaps(l.ns).Get(l.ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return cm.Data, nil
}

func (l apiLookup) secret(name string) (map[string][]byte, error) {
	s, err := l.cs.CoreV1().Secrets(l.ns).Get(l.ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return s.Data, nil
}

// containerEnv is the environment of container c, in the kubelet's order:
// service links, envFrom, then env (later wins), with $(VAR) expanded from
// what came before. Errors name keys and objects, never values.
func containerEnv(pod *corev1.Pod, c *corev1.Container, svcEnv map[string]string, l lookup) ([]string, error) {
	env := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	keys := make([]string, 0, len(svcEnv))
	for k := range svcEnv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set(k, svcEnv[k])
	}
	for _, from := range c.EnvFrom {
		if err := addEnvFrom(from, l, set); err != nil {
			return nil, err
		}
	}
	for _, e := range c.Env {
		v, err := envValue(pod, c, e, l, env)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		set(e.Name, v)
	}
	if _, ok := env["PATH"]; !ok {
		set("PATH", defaultPath)
	}
	if _, ok := env["HOSTNAME"]; !ok {
		set("HOSTNAME", hostname(pod))
	}
	if _, ok := env["HOME"]; !ok {
		set("HOME", "/root")
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+env[k])
	}
	return out, nil
}

func addEnvFrom(from corev1.EnvFromSource, l lookup, set func(k, v string)) error {
	switch {
	case from.ConfigMapRef != nil:
		data, err := l.configMap(from.ConfigMapRef.Name)
		if err != nil {
			if ptr.Deref(from.ConfigMapRef.Optional, false) {
				return nil
			}
			return fmt.Errorf("envFrom configmap %s: %w", from.ConfigMapRef.Name, err)
		}
		for _, k := range sortedKeys(data) {
			set(from.Prefix+k, data[k])
		}
	case from.SecretRef != nil:
		data, err := l.secret(from.SecretRef.Name)
		if err != nil {
			if ptr.Deref(from.SecretRef.Optional, false) {
				return nil
			}
			return fmt.Errorf("envFrom secret %s: %w", from.SecretRef.Name, err)
		}
		for _, k := range sortedKeys(data) {
			set(from.Prefix+k, string(data[k]))
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func envValue(pod *corev1.Pod, c *corev1.Container, e corev1.EnvVar, l lookup, env map[string]string) (string, error) {
	if e.ValueFrom == nil {
		return expand(e.Value, env), nil
	}
	vf := e.ValueFrom
	switch {
	case vf.FieldRef != nil:
		return fieldValue(pod, vf.FieldRef.FieldPath)
	case vf.ResourceFieldRef != nil:
		ref := *vf.ResourceFieldRef
		if ref.ContainerName == "" {
			ref.ContainerName = c.Name
		}
		return resourceValue(pod, &ref)
	case vf.ConfigMapKeyRef != nil:
		r := vf.ConfigMapKeyRef
		data, err := l.configMap(r.Name)
		if err == nil {
			if v, ok := data[r.Key]; ok {
				return v, nil
			}
			err = fmt.Errorf("configmap %s has no key %q", r.Name, r.Key)
		}
		if ptr.Deref(r.Optional, false) {
			return "", nil
		}
		return "", err
	case vf.SecretKeyRef != nil:
		r := vf.SecretKeyRef
		data, err := l.secret(r.Name)
		if err == nil {
			if v, ok := data[r.Key]; ok {
				return string(v), nil
			}
			err = fmt.Errorf("secret %s has no key %q", r.Name, r.Key)
		}
		if ptr.Deref(r.Optional, false) {
			return "", nil
		}
		return "", err
	}
	return "", fmt.Errorf("unsupported valueFrom")
}

// fieldValue answers a downward-API field path.
func fieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.podIPs":
		var ips []string
		for _, ip := range pod.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		return strings.Join(ips, ","), nil
	case "status.hostIP", "status.hostIPs":
		return pod.Status.HostIP, nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if strings.HasPrefix(path, prefix+"['") && strings.HasSuffix(path, "']") {
			return m[path[len(prefix)+2:len(path)-2]], nil
		}
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}

func formatMap(m map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(m) {
		fmt.Fprintf(&b, "%s=%q\n", k, m[k])
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// resourceValue answers a resourceFieldRef as the kubelet does: the limit,
// or the node's allocatable when none is set, divided and rounded up.
func resourceValue(pod *corev1.Pod, ref *corev1.ResourceFieldSelector) (string, error) {
	var c *corev1.Container
	for _, x := range allContainers(pod) {
		if x.Name == ref.ContainerName {
			c = &x
			break
		}
	}
	if c == nil {
		return "", fmt.Errorf("resourceFieldRef: no container %q", ref.ContainerName)
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", fmt.Errorf("unsupported resource %q", ref.Resource)
	}
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		q = nodeCapacity[corev1.ResourceName(name)]
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == "cpu" {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}

// expand replaces $(VAR) with the value of VAR when it is defined, and
// $$(VAR) with $(VAR), as Kubernetes does in env values, command and args.
func expand(s string, env map[string]string) string {
	if !strings.Contains(s, "$(") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '(':
			if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
				name := s[i+2 : i+2+end]
				if v, ok := env[name]; ok {
					b.WriteString(v)
				} else {
					b.WriteString(s[i : i+3+end])
				}
				i += 2 + end
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// serviceEnv is what the kubelet injects for Services: always the API
// server's, and with enableServiceLinks those of the pod's namespace.
func serviceEnv(pod *corev1.Pod, services []*corev1.Service) map[string]string {
	env := map[string]string{}
	links := ptr.Deref(pod.Spec.EnableServiceLinks, true)
	for _, s := range services {
		isAPI := s.Namespace == metav1.NamespaceDefault && s.Name == "kubernetes"
		if !isAPI && (!links || s.Namespace != pod.Namespace) {
			continue
		}
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == corev1.ClusterIPNone || len(s.Spec.Ports) == 0 {
			continue
		}
		prefix := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		env[prefix+"_SERVICE_HOST"] = s.Spec.ClusterIP
		env[prefix+"_SERVICE_PORT"] = strconv.Itoa(int(s.Spec.Ports[0].Port))
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				env[prefix+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_"))] = strconv.Itoa(int(p.Port))
			}
		}
	}
	return env
}

func hostname(pod *corev1.Pod) string {
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	h := pod.Name
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}
