package volume

import (
	"context"
	"fmt"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/controllers/informer"
)

// syncClaim converges the claim at key: protection finalizer, default
// class, then binding or provisioning.
func (c *Controller) syncClaim(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	pvc, ok := c.claimLister.Get(ns, name)
	if !ok {
		return nil
	}
	pvc, done, err := c.protectClaim(ctx, pvc)
	if err != nil || done {
		return err
	}
	if pvc.Annotations[annBindCompleted] == "" {
		return c.syncUnboundClaim(ctx, pvc)
	}
	return c.syncBoundClaim(ctx, pvc)
}

// protectClaim is the pvc-protection controller: a live claim carries the
// finalizer; a deleted one keeps it while a scheduled pod that has not
// finished uses the claim. done means the claim needs nothing more.
func (c *Controller) protectClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim) (*corev1.PersistentVolumeClaim, bool, error) {
	has := hasFinalizer(pvc, pvcProtectionFinalizer)
	if pvc.DeletionTimestamp == nil {
		if has {
			return pvc, false, nil
		}
		updated := pvc.DeepCopy()
		updated.Finalizers = append(updated.Finalizers, pvcProtectionFinalizer)
		out, err := c.updateClaim(ctx, updated, "")
		if err != nil {
			return nil, true, fmt.Errorf("add pvc-protection finalizer: %w", err)
		}
		return out, false, nil
	}
	if !has {
		return pvc, false, nil
	}
	inUse, err := c.claimInUse(ctx, pvc)
	if err != nil {
		return nil, true, err
	}
	if inUse {
		c.log.Debug("claim being deleted is still in use", "claim", informer.Key(pvc.Namespace, pvc.Name))
		return pvc, false, nil
	}
	updated := pvc.DeepCopy()
	updated.Finalizers = withoutFinalizer(updated.Finalizers, pvcProtectionFinalizer)
	if _, err := c.updateClaim(ctx, updated, ""); err != nil && !apierrors.IsNotFound(err) {
		return nil, true, fmt.Errorf("remove pvc-protection finalizer: %w", err)
	}
	return nil, true, nil
}

// claimInUse asks the cache, then (before letting the claim go) the API
// server, whether a pod uses the claim: a pod created just now may not be
// cached yet.
func (c *Controller) claimInUse(ctx context.Context, pvc *corev1.PersistentVolumeClaim) (bool, error) {
	for _, pod := range c.podLister.List(pvc.Namespace, nil) {
		if podUsesClaim(pod, pvc.Name) {
			return true, nil
		}
	}
	objs, _, err := c.api.List(ctx, podsGVR, pvc.Namespace, metav1.ListOptions{})
	if err != nil {
		return false, fmt.Errorf("list pods using persistentvolumeclaim %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	for _, obj := range objs {
		if pod, ok := obj.(*corev1.Pod); ok && podUsesClaim(pod, pvc.Name) {
			return true, nil
		}
	}
	return false, nil
}

// podUsesClaim: the pod is on a node, has not finished, and mounts the
// claim directly or as its generic ephemeral volume. Unscheduled pods do
// not count: an agent refuses to start a pod whose claim is being deleted.
func podUsesClaim(pod *corev1.Pod, claim string) bool {
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	for _, name := range podClaimNames(pod) {
		if name == claim {
			return true
		}
	}
	return false
}

// podClaimNames lists the claims a pod's volumes name.
func podClaimNames(pod *corev1.Pod) []string {
	var names []string
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			names = append(names, v.PersistentVolumeClaim.ClaimName)
		case v.Ephemeral != nil:
			names = append(names, pod.Name+"-"+v.Name)
		}
	}
	return names
}

// syncUnboundClaim binds or provisions for a claim without the
// bind-completed annotation.
func (c *Controller) syncUnboundClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	if pvc.DeletionTimestamp != nil {
		// Nothing is bound to or provisioned for a claim on its way out.
		return nil
	}
	if pvc.Spec.VolumeName != "" {
		return c.syncPreboundClaim(ctx, pvc)
	}
	if !claimHasClass(pvc) {
		// Kubernetes' retroactive default StorageClass: nil may become a
		// class once (the API allows exactly that change).
		if def := c.defaultClassName(); def != "" {
			updated := pvc.DeepCopy()
			updated.Spec.StorageClassName = &def
			_, err := c.updateClaim(ctx, updated, "")
			return err
		}
	}

	className := claimClass(pvc)
	var class *storagev1.StorageClass
	if className != "" {
		class, _ = c.classLister.Get("", className)
	}
	var node *corev1.Node
	if waitsForConsumer(class) {
		nodeName := pvc.Annotations[annSelectedNode]
		if nodeName == "" {
			c.claimEvent(pvc, corev1.EventTypeNormal, "WaitForFirstConsumer", "waiting for first consumer to be created before binding")
			return c.setClaimPending(ctx, pvc)
		}
		node = c.nodeOrStub(nodeName)
	}

	pv, err := findMatch(pvc, c.volumeLister.List("", nil), node)
	if err != nil {
		c.claimEvent(pvc, corev1.EventTypeWarning, "FailedBinding", "%v", err)
		return nil
	}
	if pv != nil {
		return c.bind(ctx, pv, pvc)
	}
	switch {
	case className == "":
		c.claimEvent(pvc, corev1.EventTypeNormal, "FailedBinding", "no persistent volumes available for this claim and no storage class is set")
		return c.setClaimPending(ctx, pvc)
	case class == nil:
		c.claimEvent(pvc, corev1.EventTypeWarning, "ProvisioningFailed", "storageclass.storage.k8s.io %q not found", className)
		return c.setClaimPending(ctx, pvc)
	}
	return c.provision(ctx, pvc, class, node)
}

func waitsForConsumer(class *storagev1.StorageClass) bool {
	return class != nil && class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
}

// nodeOrStub returns the cached node, or one carrying only the name and
// hostname label when the cache does not have it (yet).
func (c *Controller) nodeOrStub(name string) *corev1.Node {
	if node, ok := c.nodeLister.Get("", name); ok {
		return node
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}}}
}

// syncPreboundClaim binds a claim that names its volume.
func (c *Controller) syncPreboundClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	pv, ok := c.volumeLister.Get("", pvc.Spec.VolumeName)
	if !ok {
		c.log.Debug("volume requested by claim not found", "claim", informer.Key(pvc.Namespace, pvc.Name), "volume", pvc.Spec.VolumeName)
		return c.setClaimPending(ctx, pvc)
	}
	switch {
	case pv.Spec.ClaimRef == nil:
		if reason := unsatisfied(pv, pvc); reason != "" {
			c.claimEvent(pvc, corev1.EventTypeWarning, "VolumeMismatch", "Cannot bind to requested volume %q: %s", pv.Name, reason)
			return c.setClaimPending(ctx, pvc)
		}
		return c.bind(ctx, pv, pvc)
	case volumeBoundToClaim(pv, pvc):
		return c.bind(ctx, pv, pvc)
	}
	c.claimEvent(pvc, corev1.EventTypeWarning, "FailedBinding", "volume %q already bound to a different claim.", pv.Name)
	return c.setClaimPending(ctx, pvc)
}

// unsatisfied is checkVolumeSatisfyClaim: why pv cannot serve pvc, or "".
func unsatisfied(pv *corev1.PersistentVolume, pvc *corev1.PersistentVolumeClaim) string {
	request := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	size := pv.Spec.Capacity[corev1.ResourceStorage]
	switch {
	case size.Cmp(request) < 0:
		return "requested PV is too small"
	case volumeClass(pv) != claimClass(pvc):
		return "storageClassName does not match"
	case volumeModeMismatch(pvc, pv):
		return "incompatible volumeMode"
	case !accessModesCover(pv.Spec.AccessModes, pvc.Spec.AccessModes):
		return "incompatible accessMode"
	}
	return ""
}

// syncBoundClaim keeps a bound claim and its volume consistent, or marks
// the claim Lost when its volume is gone or taken.
func (c *Controller) syncBoundClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	if pvc.Spec.VolumeName == "" {
		c.claimEvent(pvc, corev1.EventTypeWarning, "ClaimLost", "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!")
		return c.setClaimPhase(ctx, pvc, corev1.ClaimLost)
	}
	pv, ok := c.volumeLister.Get("", pvc.Spec.VolumeName)
	if !ok {
		// The cache may lag behind a volume created a moment ago.
		obj, err := c.api.Get(ctx, VolumesGVR, "", pvc.Spec.VolumeName)
		switch {
		case apierrors.IsNotFound(err):
			c.claimEvent(pvc, corev1.EventTypeWarning, "ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
			return c.setClaimPhase(ctx, pvc, corev1.ClaimLost)
		case err != nil:
			return fmt.Errorf("get persistentvolume %s: %w", pvc.Spec.VolumeName, err)
		}
		if pv, ok = obj.(*corev1.PersistentVolume); !ok {
			return fmt.Errorf("get persistentvolume %s: unexpected type %T", pvc.Spec.VolumeName, obj)
		}
	}
	if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID == pvc.UID {
		// Unbound volume (fixed by binding again) or properly bound (bind
		// only writes what differs).
		return c.bind(ctx, pv, pvc)
	}
	c.claimEvent(pvc, corev1.EventTypeWarning, "ClaimMisbound", "Two claims are bound to the same volume, this one is bound incorrectly")
	return c.setClaimPhase(ctx, pvc, corev1.ClaimLost)
}

// bind binds pv and pvc to each other in Kubernetes' order: the volume's
// claimRef, its phase, the claim's volumeName and annotations, its status.
// Each step writes only what differs, so bind also repairs a half-done
// binding.
func (c *Controller) bind(ctx context.Context, pv *corev1.PersistentVolume, pvc *corev1.PersistentVolumeClaim) error {
	pv, err := c.bindVolumeToClaim(ctx, pv, pvc)
	if err != nil {
		return err
	}
	if pv, err = c.setVolumePhase(ctx, pv, corev1.VolumeBound, ""); err != nil {
		return err
	}
	if pvc, err = c.bindClaimToVolume(ctx, pvc, pv); err != nil {
		return err
	}
	if _, err := c.setClaimBound(ctx, pvc, pv); err != nil {
		return err
	}
	c.log.Debug("bound", "claim", informer.Key(pvc.Namespace, pvc.Name), "volume", pv.Name)
	return nil
}

func (c *Controller) bindVolumeToClaim(ctx context.Context, pv *corev1.PersistentVolume, pvc *corev1.PersistentVolumeClaim) (*corev1.PersistentVolume, error) {
	ref := pv.Spec.ClaimRef
	if ref != nil && ref.Namespace == pvc.Namespace && ref.Name == pvc.Name && ref.UID == pvc.UID {
		return pv, nil
	}
	updated := pv.DeepCopy()
	updated.Spec.ClaimRef = &corev1.ObjectReference{
		Kind: "PersistentVolumeClaim", APIVersion: "v1",
		Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID, ResourceVersion: pvc.ResourceVersion,
	}
	// A volume the controller (not a user or provisioner) bound may be
	// unbound by it again later.
	if !volumeBoundToClaim(pv, pvc) {
		metav1.SetMetaDataAnnotation(&updated.ObjectMeta, annBoundByController, "yes")
	}
	return c.updateVolume(ctx, updated, "")
}

func (c *Controller) bindClaimToVolume(ctx context.Context, pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) (*corev1.PersistentVolumeClaim, error) {
	updated := pvc.DeepCopy()
	if updated.Spec.VolumeName != pv.Name {
		updated.Spec.VolumeName = pv.Name
		metav1.SetMetaDataAnnotation(&updated.ObjectMeta, annBoundByController, "yes")
	}
	if updated.Annotations[annBindCompleted] == "" {
		metav1.SetMetaDataAnnotation(&updated.ObjectMeta, annBindCompleted, "yes")
	}
	if reflect.DeepEqual(updated.Spec, pvc.Spec) && reflect.DeepEqual(updated.Annotations, pvc.Annotations) {
		return pvc, nil
	}
	return c.updateClaim(ctx, updated, "")
}

// setClaimBound sets phase Bound and the volume's access modes and
// capacity in the claim's status.
func (c *Controller) setClaimBound(ctx context.Context, pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) (*corev1.PersistentVolumeClaim, error) {
	updated := pvc.DeepCopy()
	updated.Status.Phase = corev1.ClaimBound
	if !reflect.DeepEqual(updated.Status.AccessModes, pv.Spec.AccessModes) {
		updated.Status.AccessModes = pv.Spec.AccessModes
	}
	want, ok := pv.Spec.Capacity[corev1.ResourceStorage]
	if have := updated.Status.Capacity[corev1.ResourceStorage]; !ok || want.Cmp(have) != 0 {
		updated.Status.Capacity = pv.Spec.Capacity.DeepCopy()
	}
	if reflect.DeepEqual(updated.Status, pvc.Status) {
		return pvc, nil
	}
	return c.updateClaim(ctx, updated, "status")
}

func (c *Controller) setClaimPending(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	return c.setClaimPhase(ctx, pvc, corev1.ClaimPending)
}

func (c *Controller) setClaimPhase(ctx context.Context, pvc *corev1.PersistentVolumeClaim, phase corev1.PersistentVolumeClaimPhase) error {
	if pvc.Status.Phase == phase {
		return nil
	}
	updated := pvc.DeepCopy()
	updated.Status.Phase = phase
	_, err := c.updateClaim(ctx, updated, "status")
	return err
}
