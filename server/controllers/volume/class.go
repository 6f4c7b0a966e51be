package volume

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The built-in storage class.
const (
	// LocalPathClassName is the default StorageClass orch ships.
	LocalPathClassName = "local-path"
	// LocalPathProvisioner is the provisioner name the controller serves.
	LocalPathProvisioner = "orch.dev/local-path"
	// DefaultStorageDir is where local-path volumes live on the nodes.
	DefaultStorageDir = "/var/lib/orch/storage"
)

// Annotations Kubernetes' volume controllers read and write.
const (
	annDefaultClass     = "storageclass.kubernetes.io/is-default-class"
	annBetaDefaultClass = "storageclass.beta.kubernetes.io/is-default-class"

	annBindCompleted          = "pv.kubernetes.io/bind-completed"
	annBoundByController      = "pv.kubernetes.io/bound-by-controller"
	annProvisionedBy          = "pv.kubernetes.io/provisioned-by"
	annSelectedNode           = "volume.kubernetes.io/selected-node"
	annStorageProvisioner     = "volume.kubernetes.io/storage-provisioner"
	annBetaStorageProvisioner = "volume.beta.kubernetes.io/storage-provisioner"

	// Finalizers of the protection controllers.
	pvcProtectionFinalizer = "kubernetes.io/pvc-protection"
	pvProtectionFinalizer  = "kubernetes.io/pv-protection"
)

// LocalPathClass is the default StorageClass orch ships as the built-in
// manifest local-storage.yaml (a test keeps the two equal): the default
// class, provisioning hostPath volumes on the node the first pod using a
// claim is scheduled to.
func LocalPathClass() *storagev1.StorageClass {
	reclaim := corev1.PersistentVolumeReclaimDelete
	mode := storagev1.VolumeBindingWaitForFirstConsumer
	return &storagev1.StorageClass{
		TypeMeta: metav1.TypeMeta{APIVersion: storagev1.SchemeGroupVersion.String(), Kind: "StorageClass"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        LocalPathClassName,
			Annotations: map[string]string{annDefaultClass: "true"},
		},
		Provisioner:       LocalPathProvisioner,
		ReclaimPolicy:     &reclaim,
		VolumeBindingMode: &mode,
	}
}

// IsDefaultClass reports whether sc is marked as the default class (GA or
// beta annotation set to "true").
func IsDefaultClass(sc *storagev1.StorageClass) bool {
	return sc.Annotations[annDefaultClass] == "true" || sc.Annotations[annBetaDefaultClass] == "true"
}

// DefaultClassName is the class a claim without one gets: of the classes
// marked default, the newest, ties broken by the smaller name (as
// Kubernetes' DefaultStorageClass admission chooses since 1.26). It is ""
// when no class is marked default.
func DefaultClassName(classes []*storagev1.StorageClass) string {
	var best *storagev1.StorageClass
	for _, sc := range classes {
		if !IsDefaultClass(sc) {
			continue
		}
		if best == nil || newerClass(sc, best) {
			best = sc
		}
	}
	if best == nil {
		return ""
	}
	return best.Name
}

func newerClass(a, b *storagev1.StorageClass) bool {
	ta, tb := a.CreationTimestamp.UnixNano(), b.CreationTimestamp.UnixNano()
	if ta != tb {
		return ta > tb
	}
	return strings.Compare(a.Name, b.Name) < 0
}

// defaultClassName is DefaultClassName over the informer's cache.
func (c *Controller) defaultClassName() string {
	return DefaultClassName(c.classLister.List("", nil))
}

// claimHasClass: the claim asked for a class, possibly "" (no class),
// through the field or the beta annotation.
func claimHasClass(pvc *corev1.PersistentVolumeClaim) bool {
	_, ok := pvc.Annotations[corev1.BetaStorageClassAnnotation]
	return ok || pvc.Spec.StorageClassName != nil
}

// claimClass is GetPersistentVolumeClaimClass: the beta annotation wins
// over the field.
func claimClass(pvc *corev1.PersistentVolumeClaim) string {
	if class, ok := pvc.Annotations[corev1.BetaStorageClassAnnotation]; ok {
		return class
	}
	if pvc.Spec.StorageClassName != nil {
		return *pvc.Spec.StorageClassName
	}
	return ""
}

// volumeClass is GetPersistentVolumeClass.
func volumeClass(pv *corev1.PersistentVolume) string {
	if class, ok := pv.Annotations[corev1.BetaStorageClassAnnotation]; ok {
		return class
	}
	return pv.Spec.StorageClassName
}

func hasFinalizer(m metav1.Object, finalizer string) bool {
	return slices.Contains(m.GetFinalizers(), finalizer)
}

func withoutFinalizer(finalizers []string, finalizer string) []string {
	out := make([]string, 0, len(finalizers))
	for _, f := range finalizers {
		if f != finalizer {
			out = append(out, f)
		}
	}
	return out
}
