package admission

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/controllers/volume"
	"github.com/orch-dev/orch/server/registry"
)

// StorageClassLister reads StorageClasses; informer.Lister[*storagev1.StorageClass]
// is one.
type StorageClassLister interface {
	List(namespace string, sel labels.Selector) []*storagev1.StorageClass
}

// DefaultStorageClass is Kubernetes' DefaultStorageClass admission plugin:
// a new PersistentVolumeClaim that names no class (storageClassName unset,
// as opposed to "") gets the cluster's default class, so `kubectl get pvc`
// shows the class at once and quota per class counts it. The volume
// controller still assigns the default retroactively to claims created
// while there was none.
type DefaultStorageClass struct {
	classes StorageClassLister
}

// NewDefaultStorageClass returns the plugin reading classes through lister.
func NewDefaultStorageClass(lister StorageClassLister) *DefaultStorageClass {
	return &DefaultStorageClass{classes: lister}
}

// Attach installs the plugin on the persistentvolumeclaims entry (create);
// other resources are left alone. Attach it after Quota, so that quota
// sees the class the claim ends up with.
func (d *DefaultStorageClass) Attach(r *registry.Resource) {
	if r.StorageResource().GroupVersionResource().GroupResource() != claimsResource {
		return
	}
	chainCreate(r, func(_ context.Context, obj runtime.Object) (registry.FinishFunc, error) {
		if pvc, ok := obj.(*corev1.PersistentVolumeClaim); ok && pvc.Spec.StorageClassName == nil {
			if name := volume.DefaultClassName(d.classes.List("", nil)); name != "" {
				pvc.Spec.StorageClassName = &name
			}
		}
		return nil, nil
	})
}
