package volume

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/controllers/informer"
)

// syncVolume converges the volume called name: protection finalizer,
// phase, and reclaim once its claim is gone.
func (c *Controller) syncVolume(ctx context.Context, name string) error {
	pv, ok := c.volumeLister.Get("", name)
	if !ok {
		return nil
	}
	pv, done, err := c.protectVolume(ctx, pv)
	if err != nil || done {
		return err
	}

	ref := pv.Spec.ClaimRef
	if ref == nil || ref.UID == "" {
		// Unused, or pre-bound by a user to a claim that may not exist
		// yet: Available either way.
		if ref != nil {
			c.claims.Add(informer.Key(ref.Namespace, ref.Name))
		}
		_, err := c.setVolumePhase(ctx, pv, corev1.VolumeAvailable, "")
		return err
	}

	pvc, err := c.volumeClaim(ctx, ref)
	if err != nil {
		return err
	}
	switch {
	case pvc == nil:
		return c.release(ctx, pv)
	case pvc.Spec.VolumeName == "":
		if volumeModeMismatch(pvc, pv) {
			c.volumeEvent(pv, corev1.EventTypeWarning, "VolumeMismatch",
				"Cannot bind PersistentVolume to requested PersistentVolumeClaim %q due to incompatible volumeMode.", pvc.Name)
			return nil
		}
		// Bound to a claim that is not bound yet (a provisioned volume,
		// or a binding cut short): the claim's sync completes it.
		c.claims.Add(informer.Key(pvc.Namespace, pvc.Name))
		return nil
	case pvc.Spec.VolumeName == pv.Name:
		_, err := c.setVolumePhase(ctx, pv, corev1.VolumeBound, "")
		return err
	}

	// The claim is bound to another volume.
	if pv.Annotations[annProvisionedBy] != "" && pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete {
		// Provisioned for the claim, which got another volume: not needed.
		return c.release(ctx, pv)
	}
	updated := pv.DeepCopy()
	if pv.Annotations[annBoundByController] != "" {
		updated.Spec.ClaimRef = nil
		delete(updated.Annotations, annBoundByController)
	} else {
		// A user pre-bound it: keep the name, drop the incarnation.
		updated.Spec.ClaimRef.UID = ""
	}
	updated, err = c.updateVolume(ctx, updated, "")
	if err != nil {
		return fmt.Errorf("unbind: %w", err)
	}
	_, err = c.setVolumePhase(ctx, updated, corev1.VolumeAvailable, "")
	return err
}

// volumeClaim returns the claim ref names, or nil when it is gone (or was
// recreated with another uid). A claim missing from the cache is looked up
// in the API server before the volume is released on that basis.
func (c *Controller) volumeClaim(ctx context.Context, ref *corev1.ObjectReference) (*corev1.PersistentVolumeClaim, error) {
	if pvc, ok := c.claimLister.Get(ref.Namespace, ref.Name); ok && pvc.UID == ref.UID {
		return pvc, nil
	}
	obj, err := c.api.Get(ctx, ClaimsGVR, ref.Namespace, ref.Name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get persistentvolumeclaim %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	pvc, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return nil, fmt.Errorf("get persistentvolumeclaim %s/%s: unexpected type %T", ref.Namespace, ref.Name, obj)
	}
	if pvc.UID != ref.UID {
		return nil, nil
	}
	return pvc, nil
}

// release marks a volume whose claim is gone Released and reclaims it as
// its policy says.
func (c *Controller) release(ctx context.Context, pv *corev1.PersistentVolume) error {
	if pv.Status.Phase != corev1.VolumeReleased && pv.Status.Phase != corev1.VolumeFailed {
		var err error
		if pv, err = c.setVolumePhase(ctx, pv, corev1.VolumeReleased, ""); err != nil {
			return err
		}
	}
	switch pv.Spec.PersistentVolumeReclaimPolicy {
	case corev1.PersistentVolumeReclaimRetain:
		// The administrator deletes it, or clears claimRef to reuse it.
		return nil
	case corev1.PersistentVolumeReclaimRecycle:
		return c.failVolume(ctx, pv, "VolumeFailedRecycle", "No recycler plugin found for the volume!")
	case corev1.PersistentVolumeReclaimDelete:
		return c.deleteVolume(ctx, pv)
	}
	return nil
}

// deleteVolume deletes a released volume orch provisioned. Volumes of other
// provisioners are theirs to delete; statically created ones cannot be.
func (c *Controller) deleteVolume(ctx context.Context, pv *corev1.PersistentVolume) error {
	switch provisioner := pv.Annotations[annProvisionedBy]; provisioner {
	case LocalPathProvisioner:
	case "":
		if pv.Status.Phase == corev1.VolumeFailed {
			return nil
		}
		return c.failVolume(ctx, pv, "VolumeFailedDelete",
			fmt.Sprintf("error getting deleter volume plugin for volume %q: no deletable volume plugin matched", pv.Name))
	default:
		c.log.Debug("waiting for the external provisioner to delete the volume", "volume", pv.Name, "provisioner", provisioner)
		return nil
	}
	if pv.DeletionTimestamp != nil {
		return nil
	}
	// Only the object goes: the node's agent removes the directory of a
	// local-path volume once no PersistentVolume refers to it.
	precondition := &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pv.UID}}
	if _, err := c.api.Delete(ctx, VolumesGVR, "", pv.Name, precondition); err != nil && !apierrors.IsNotFound(err) {
		c.volumeEvent(pv, corev1.EventTypeWarning, "VolumeFailedDelete", "%v", err)
		return fmt.Errorf("delete persistentvolume %s: %w", pv.Name, err)
	}
	c.log.Info("deleted released volume", "volume", pv.Name)
	return nil
}

func (c *Controller) failVolume(ctx context.Context, pv *corev1.PersistentVolume, reason, message string) error {
	if pv.Status.Phase == corev1.VolumeFailed && pv.Status.Message == message {
		return nil
	}
	c.volumeEvent(pv, corev1.EventTypeWarning, reason, "%s", message)
	_, err := c.setVolumePhase(ctx, pv, corev1.VolumeFailed, message)
	return err
}

// setVolumePhase writes status.phase (and message) if they differ.
func (c *Controller) setVolumePhase(ctx context.Context, pv *corev1.PersistentVolume, phase corev1.PersistentVolumePhase, message string) (*corev1.PersistentVolume, error) {
	if pv.Status.Phase == phase && pv.Status.Message == message {
		return pv, nil
	}
	updated := pv.DeepCopy()
	updated.Status.Phase = phase
	updated.Status.Message = message
	return c.updateVolume(ctx, updated, "status")
}

// protectVolume is the pv-protection controller: a live volume carries the
// finalizer; a deleted one keeps it while it is Bound. done means the
// volume needs nothing more.
func (c *Controller) protectVolume(ctx context.Context, pv *corev1.PersistentVolume) (*corev1.PersistentVolume, bool, error) {
	has := hasFinalizer(pv, pvProtectionFinalizer)
	if pv.DeletionTimestamp == nil {
		if has {
			return pv, false, nil
		}
		updated := pv.DeepCopy()
		updated.Finalizers = append(updated.Finalizers, pvProtectionFinalizer)
		out, err := c.updateVolume(ctx, updated, "")
		if err != nil {
			return nil, true, fmt.Errorf("add pv-protection finalizer: %w", err)
		}
		return out, false, nil
	}
	if !has || pv.Status.Phase == corev1.VolumeBound {
		return pv, false, nil
	}
	updated := pv.DeepCopy()
	updated.Finalizers = withoutFinalizer(updated.Finalizers, pvProtectionFinalizer)
	if _, err := c.updateVolume(ctx, updated, ""); err != nil && !apierrors.IsNotFound(err) {
		return nil, true, fmt.Errorf("remove pv-protection finalizer: %w", err)
	}
	return nil, true, nil
}
