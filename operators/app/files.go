package app

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
)

// fileSources are the ConfigMaps and Secrets the App's files come from,
// in a stable order, each once.
func fileSources(app *v1alpha1.App) []ConfigRef {
	var out []ConfigRef
	for _, f := range app.Spec.Files {
		ref, _ := fileRef(f)
		if !slices.ContainsFunc(out, func(r ConfigRef) bool { return r.Kind == ref.Kind && r.Name == ref.Name }) {
			out = append(out, ConfigRef{Kind: ref.Kind, Name: ref.Name})
		}
	}
	slices.SortFunc(out, compareRefs)
	return out
}

// fileRef is where a file comes from and its key.
func fileRef(f v1alpha1.File) (ConfigRef, string) {
	if f.Secret != nil {
		return ConfigRef{Kind: KindSecret, Name: f.Secret.Name}, f.Secret.Key
	}
	if f.ConfigMap != nil {
		return ConfigRef{Kind: KindConfigMap, Name: f.ConfigMap.Name}, f.ConfigMap.Key
	}
	return ConfigRef{}, ""
}

// fileVolume names the volume of the i-th source (names of ConfigMaps may
// hold dots, volume names may not).
func fileVolume(i int) string { return fmt.Sprintf("files-%d", i) }

// fileVolumes are one volume per source, holding only the keys the files
// use, each under its own name.
func fileVolumes(app *v1alpha1.App) []corev1.Volume {
	sources := fileSources(app)
	if len(sources) == 0 {
		return nil
	}
	out := make([]corev1.Volume, len(sources))
	for i, src := range sources {
		var items []corev1.KeyToPath
		for _, f := range app.Spec.Files {
			ref, key := fileRef(f)
			if ref.Kind == src.Kind && ref.Name == src.Name &&
				!slices.ContainsFunc(items, func(k corev1.KeyToPath) bool { return k.Key == key }) {
				items = append(items, corev1.KeyToPath{Key: key, Path: key, Mode: f.Mode})
			}
		}
		slices.SortFunc(items, func(a, b corev1.KeyToPath) int { return compareStrings(a.Key, b.Key) })
		v := corev1.Volume{Name: fileVolume(i)}
		if src.Kind == KindSecret {
			v.Secret = &corev1.SecretVolumeSource{SecretName: src.Name, Items: items}
		} else {
			v.ConfigMap = &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: src.Name}, Items: items}
		}
		out[i] = v
	}
	return out
}

// fileMounts mount each file, read-only, by subPath from its source's
// volume. subPath mounts do not follow later edits; the config digest
// rolls the pods instead, so every pod sees one version of its files.
func fileMounts(app *v1alpha1.App) []corev1.VolumeMount {
	sources := fileSources(app)
	var out []corev1.VolumeMount
	for _, f := range app.Spec.Files {
		ref, key := fileRef(f)
		i := slices.IndexFunc(sources, func(r ConfigRef) bool { return r.Kind == ref.Kind && r.Name == ref.Name })
		out = append(out, corev1.VolumeMount{Name: fileVolume(i), MountPath: f.Path, SubPath: key, ReadOnly: true})
	}
	return out
}
