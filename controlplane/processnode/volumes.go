package processnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// errNotReady marks a volume that cannot be made yet (an unbound claim, a
// missing ConfigMap): the pod waits in ContainerCreating and tries again.
var errNotReady = errors.New("not ready")

// volumes writes the content of each of the pod's volumes to a directory of
// the host and returns the binds of every container's volumeMounts. All
// containers of a pod share one view: the union of their mounts.
func prepareVolumes(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, dir string) ([]bind, error) {
	paths := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		p, err := prepareVolume(ctx, cs, pod, v, filepath.Join(dir, "volumes", v.Name))
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		paths[v.Name] = p
	}
	var binds []bind
	seen := map[string]string{}
	for _, c := range allContainers(pod) {
		for _, m := range c.VolumeMounts {
			src, ok := paths[m.Name]
			if !ok {
				return nil, fmt.Errorf("container %s mounts unknown volume %s", c.Name, m.Name)
			}
			key := m.Name + "/" + m.SubPath
			if prev, ok := seen[m.MountPath]; ok {
				if prev != key {
					return nil, fmt.Errorf("process nodes give a pod's containers one file-system view: %s is mounted from two volumes", m.MountPath)
				}
				continue
			}
			seen[m.MountPath] = key
			b, err := subPathBind(src, m)
			if err != nil {
				return nil, fmt.Errorf("container %s mount %s: %w", c.Name, m.MountPath, err)
			}
			binds = append(binds, b)
		}
	}
	return binds, nil
}

func subPathBind(src string, m corev1.VolumeMount) (bind, error) {
	b := bind{Source: src, Target: m.MountPath, ReadOnly: m.ReadOnly}
	if m.SubPath == "" {
		return b, nil
	}
	if !filepath.IsLocal(m.SubPath) {
		return b, fmt.Errorf("subPath %q must be a relative path inside the volume", m.SubPath)
	}
	b.Source = filepath.Join(src, m.SubPath)
	fi, err := os.Stat(b.Source)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// As the kubelet does, a missing subPath becomes a directory.
		if err := os.MkdirAll(b.Source, 0o777); err != nil {
			return b, err
		}
	case err != nil:
		return b, err
	default:
		b.File = !fi.IsDir()
	}
	return b, nil
}

func allContainers(pod *corev1.Pod) []corev1.Container {
	return append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
}

// prepareVolume returns the host directory that holds volume v.
func prepareVolume(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, v corev1.Volume, dir string) (string, error) {
	switch {
	case v.EmptyDir != nil:
		return dir, mkdirMode(dir, 0o777)
	case v.HostPath != nil:
		if t := v.HostPath.Type; t != nil && *t == corev1.HostPathDirectoryOrCreate {
			return v.HostPath.Path, os.MkdirAll(v.HostPath.Path, 0o755)
		}
		return v.HostPath.Path, nil
	case v.PersistentVolumeClaim != nil:
		return claimPath(ctx, cs, pod.Namespace, v.PersistentVolumeClaim.ClaimName)
	}
	files, err := volumeFiles(ctx, cs, pod, v)
	if err != nil {
		return "", err
	}
	return dir, writeFiles(dir, files)
}

func mkdirMode(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// file is one file of a configMap, secret, downwardAPI or projected volume.
type file struct {
	Path string
	Data []byte
	Mode os.FileMode
}

func volumeFiles(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, v corev1.Volume) ([]file, error) {
	switch {
	case v.ConfigMap != nil:
		return configMapFiles(ctx, cs, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, mode(v.ConfigMap.DefaultMode, 0o644))
	case v.Secret != nil:
		return secretFiles(ctx, cs, pod.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, mode(v.Secret.DefaultMode, 0o644))
	case v.DownwardAPI != nil:
		return downwardFiles(pod, v.DownwardAPI.Items, mode(v.DownwardAPI.DefaultMode, 0o644))
	case v.Projected != nil:
		return projectedFiles(ctx, cs, pod, v.Projected)
	}
	return nil, fmt.Errorf("this volume type is not supported on process nodes (emptyDir, hostPath, configMap, secret, downwardAPI, projected and persistentVolumeClaim are)")
}

func mode(m *int32, def os.FileMode) os.FileMode {
	if m == nil {
		return def
	}
	return os.FileMode(*m)
}

func configMapFiles(ctx context.Context, cs kubernetes.Interface, ns, name string, items []corev1.KeyToPath, optional *bool, def os.FileMode) ([]file, error) {
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if ptr.Deref(optional, false) {
			return nil, nil
		}
		return nil, fmt.Errorf("configmap %s: %w: %w", name, errNotReady, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyFiles("configmap "+name, data, items, def)
}

func secretFiles(ctx context.Context, cs kubernetes.Interface, ns, name string, items []corev1.KeyToPath, optional *bool, def os.FileMode) ([]file, error) {
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if ptr.Deref(optional, false) {
			return nil, nil
		}
		return nil, fmt.Errorf("secret %s: %w: %w", name, errNotReady, err)
	}
	return keyFiles("secret "+name, s.Data, items, def)
}

// keyFiles lays out data as the kubelet does: every key as a file, or only
// the items given, at their paths. Errors name keys, never values.
func keyFiles(what string, data map[string][]byte, items []corev1.KeyToPath, def os.FileMode) ([]file, error) {
	var out []file
	if len(items) == 0 {
		for k, v := range data {
			out = append(out, file{Path: k, Data: v, Mode: def})
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("%s has no key %q: %w", what, it.Key, errNotReady)
		}
		out = append(out, file{Path: it.Path, Data: v, Mode: mode(it.Mode, def)})
	}
	return out, nil
}

func downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, def os.FileMode) ([]file, error) {
	var out []file
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = fieldValue(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			v, err = resourceValue(pod, it.ResourceFieldRef)
		}
		if err != nil {
			return nil, fmt.Errorf("downwardAPI %s: %w", it.Path, err)
		}
		out = append(out, file{Path: it.Path, Data: []byte(v), Mode: mode(it.Mode, def)})
	}
	return out, nil
}

func projectedFiles(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, p *corev1.ProjectedVolumeSource) ([]file, error) {
	def := mode(p.DefaultMode, 0o644)
	var out []file
	for _, src := range p.Sources {
		var fs []file
		var err error
		switch {
		case src.ServiceAccountToken != nil:
			fs, err = tokenFile(ctx, cs, pod, src.ServiceAccountToken, def)
		case src.ConfigMap != nil:
			fs, err = configMapFiles(ctx, cs, pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, def)
		case src.Secret != nil:
			fs, err = secretFiles(ctx, cs, pod.Namespace, src.Secret.Name, src.Secret.Items, src.Secret.Optional, def)
		case src.DownwardAPI != nil:
			fs, err = downwardFiles(pod, src.DownwardAPI.Items, def)
		default:
			err = errors.New("only serviceAccountToken, configMap, secret and downwardAPI sources are supported on process nodes")
		}
		if err != nil {
			return nil, err
		}
		out = append(out, fs...)
	}
	return out, nil
}

// tokenFile asks the API server for a token of the pod's ServiceAccount,
// bound to the pod, as the kubelet does for the projected token.
func tokenFile(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, t *corev1.ServiceAccountTokenProjection, def os.FileMode) ([]file, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		ExpirationSeconds: t.ExpirationSeconds,
		BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if t.Audience != "" {
		req.Spec.Audiences = []string{t.Audience}
	}
	tok, err := cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token of service account %s: %w: %w", sa, errNotReady, err)
	}
	return []file{{Path: t.Path, Data: []byte(tok.Status.Token), Mode: def}}, nil
}

// writeFiles writes files under dir, which it empties first.
func writeFiles(dir string, files []file) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		if !filepath.IsLocal(f.Path) {
			return fmt.Errorf("path %q must be relative and inside the volume", f.Path)
		}
		p := filepath.Join(dir, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, f.Mode.Perm()); err != nil {
			return err
		}
		if err := os.Chmod(p, f.Mode.Perm()); err != nil {
			return err
		}
	}
	return nil
}

// claimPath is the host directory of a bound claim's volume.
func claimPath(ctx context.Context, cs kubernetes.Interface, ns, name string) (string, error) {
	pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("claim %s: %w: %w", name, errNotReady, err)
	}
	if pvc.Spec.VolumeName == "" || pvc.Status.Phase != corev1.ClaimBound {
		return "", fmt.Errorf("claim %s is not bound yet: %w", name, errNotReady)
	}
	pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("volume %s: %w: %w", pvc.Spec.VolumeName, errNotReady, err)
	}
	switch {
	case pv.Spec.HostPath != nil:
		return pv.Spec.HostPath.Path, os.MkdirAll(pv.Spec.HostPath.Path, 0o777)
	case pv.Spec.Local != nil:
		return pv.Spec.Local.Path, nil
	}
	return "", fmt.Errorf("volume %s is neither hostPath nor local, which process nodes cannot mount", pv.Name)
}
