package processnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// StorageClass is the default StorageClass of a plane with process nodes:
// each claim gets a directory under the plane's state directory.
const StorageClass = "setpoint-local"

// provisionerName is the StorageClass's provisioner, and the annotation
// value on the PersistentVolumes it makes.
const provisionerName = "setpoint.dev/local"

// StorageClassObject is the setpoint-local StorageClass, the default one.
func StorageClassObject() *storagev1.StorageClass {
	return &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: StorageClass, Annotations: map[string]string{
			"storageclass.kubernetes.io/is-default-class": "true",
		}},
		Provisioner:       provisionerName,
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
	}
}

// PersistentVolume is the volume that claim gets: a hostPath directory
// under dir, pre-bound to the claim so the PV controller binds the two.
func PersistentVolume(claim *corev1.PersistentVolumeClaim, dir string) *corev1.PersistentVolume {
	name := "pvc-" + string(claim.UID)
	capacity := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
			"pv.kubernetes.io/provisioned-by": provisionerName,
		}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: capacity},
			AccessModes:                   claim.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              StorageClass,
			VolumeMode:                    claim.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: filepath.Join(dir, name), Type: ptr.To(corev1.HostPathDirectoryOrCreate),
			}},
		},
	}
}

// provisioner makes a volume for each pending claim of the class, and
// removes a released volume and its directory: deleting the claim deletes
// the data, as reclaimPolicy Delete says.
type provisioner struct {
	ctx context.Context
	cs  kubernetes.Interface
	dir string
}

func startProvisioner(ctx context.Context, cs kubernetes.Interface, f informers.SharedInformerFactory, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	_, err := cs.StorageV1().StorageClasses().Create(ctx, StorageClassObject(), metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("storage class %s: %w", StorageClass, err)
	}
	p := &provisioner{ctx: ctx, cs: cs, dir: dir}
	claims := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.claim(o.(*corev1.PersistentVolumeClaim)) },
		UpdateFunc: func(_, o any) { p.claim(o.(*corev1.PersistentVolumeClaim)) },
	}
	volumes := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.volume(o.(*corev1.PersistentVolume)) },
		UpdateFunc: func(_, o any) { p.volume(o.(*corev1.PersistentVolume)) },
	}
	if _, err := f.Core().V1().PersistentVolumeClaims().Informer().AddEventHandler(claims); err != nil {
		return err
	}
	_, err = f.Core().V1().PersistentVolumes().Informer().AddEventHandler(volumes)
	return err
}

func (p *provisioner) claim(c *corev1.PersistentVolumeClaim) {
	if ptr.Deref(c.Spec.StorageClassName, "") != StorageClass || c.Spec.VolumeName != "" || c.DeletionTimestamp != nil {
		return
	}
	pv := PersistentVolume(c, p.dir)
	if err := os.MkdirAll(pv.Spec.HostPath.Path, 0o777); err != nil {
		return
	}
	_ = os.Chmod(pv.Spec.HostPath.Path, 0o777)
	_, _ = p.cs.CoreV1().PersistentVolumes().Create(p.ctx, pv, metav1.CreateOptions{})
}

func (p *provisioner) volume(v *corev1.PersistentVolume) {
	if v.Annotations["pv.kubernetes.io/provisioned-by"] != provisionerName || v.Status.Phase != corev1.VolumeReleased ||
		v.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || v.Spec.HostPath == nil {
		return
	}
	// Only directories this provisioner made are removed.
	if filepath.Dir(v.Spec.HostPath.Path) != p.dir {
		return
	}
	if err := os.RemoveAll(v.Spec.HostPath.Path); err != nil {
		return
	}
	_ = p.cs.CoreV1().PersistentVolumes().Delete(p.ctx, v.Name, metav1.DeleteOptions{})
}
