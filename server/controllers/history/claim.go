package history

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Object is a typed API object pointer such as *corev1.Pod.
type Object interface {
	runtime.Object
	metav1.Object
}

// Claim returns the objects among candidates that parent controls after
// reconciling ownership as Kubernetes' ControllerRefManager does: an
// object controlled by parent that no longer matches selector (or fails
// member) is released; an orphan that matches is adopted, unless parent or
// the object is being deleted. member may be nil (selector only). update
// writes the changed object. Candidates are not modified.
func Claim[T Object](ctx context.Context, candidates []T, parent metav1.Object, parentKind schema.GroupVersionKind,
	selector labels.Selector, member func(T) bool, update func(context.Context, T) (T, error)) ([]T, error) {
	var (
		claimed []T
		errs    []error
	)
	matches := func(obj T) bool {
		return selector.Matches(labels.Set(obj.GetLabels())) && (member == nil || member(obj))
	}
	for _, obj := range candidates {
		ref := metav1.GetControllerOfNoCopy(obj)
		switch {
		case ref != nil && ref.UID != parent.GetUID():
			// Another controller's.
		case ref != nil:
			if matches(obj) {
				claimed = append(claimed, obj)
				continue
			}
			if parent.GetDeletionTimestamp() != nil {
				// The garbage collector handles the rest.
				continue
			}
			clone := obj.DeepCopyObject().(T)
			clone.SetOwnerReferences(withoutOwner(clone.GetOwnerReferences(), parent.GetUID()))
			if _, err := update(ctx, clone); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("release %s: %w", obj.GetName(), err))
			}
		default:
			if !matches(obj) || parent.GetDeletionTimestamp() != nil || obj.GetDeletionTimestamp() != nil {
				continue
			}
			clone := obj.DeepCopyObject().(T)
			clone.SetOwnerReferences(append(withoutOwner(clone.GetOwnerReferences(), parent.GetUID()), *metav1.NewControllerRef(parent, parentKind)))
			adopted, err := update(ctx, clone)
			if err != nil {
				if !apierrors.IsNotFound(err) {
					errs = append(errs, fmt.Errorf("adopt %s: %w", obj.GetName(), err))
				}
				continue
			}
			claimed = append(claimed, adopted)
		}
	}
	return claimed, errors.Join(errs...)
}

func withoutOwner(refs []metav1.OwnerReference, uid types.UID) []metav1.OwnerReference {
	out := make([]metav1.OwnerReference, 0, len(refs))
	for _, r := range refs {
		if r.UID != uid {
			out = append(out, r)
		}
	}
	return out
}

// IsControlledBy reports whether obj's controller reference names owner.
func IsControlledBy(obj, owner metav1.Object) bool {
	ref := metav1.GetControllerOfNoCopy(obj)
	return ref != nil && ref.UID == owner.GetUID()
}
