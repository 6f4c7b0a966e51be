package volume

import (
	"context"
	"fmt"
	"path"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// provision gets a volume made for a claim no existing volume fits. The
// claim is annotated with its class' provisioner, which is how external
// provisioners (rancher's local-path-provisioner, CSI external-provisioner)
// find their work; orch's own local-path provisioner runs here.
func (c *Controller) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, node *corev1.Node) error {
	if pvc.Annotations[annStorageProvisioner] != class.Provisioner || pvc.Annotations[annBetaStorageProvisioner] != class.Provisioner {
		updated := pvc.DeepCopy()
		metav1.SetMetaDataAnnotation(&updated.ObjectMeta, annStorageProvisioner, class.Provisioner)
		metav1.SetMetaDataAnnotation(&updated.ObjectMeta, annBetaStorageProvisioner, class.Provisioner)
		var err error
		if pvc, err = c.updateClaim(ctx, updated, ""); err != nil {
			return fmt.Errorf("set provisioner: %w", err)
		}
	}
	if class.Provisioner != LocalPathProvisioner {
		c.claimEvent(pvc, corev1.EventTypeNormal, "ExternalProvisioning",
			"Waiting for a volume to be created either by the external provisioner '%s' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
			class.Provisioner)
		return c.setClaimPending(ctx, pvc)
	}

	name := provisionedVolumeName(pvc)
	if exists, err := c.volumeExists(ctx, name); err != nil || exists {
		// Provisioned already (the cache may not show it yet); binding
		// follows once the volume's sync queues the claim.
		return err
	}
	if msg := c.localPathUnsupported(pvc, node); msg != "" {
		c.claimEvent(pvc, corev1.EventTypeWarning, "ProvisioningFailed", "failed to provision volume with StorageClass %q: %s", class.Name, msg)
		return c.setClaimPending(ctx, pvc)
	}

	c.claimEvent(pvc, corev1.EventTypeNormal, "Provisioning", "External provisioner is provisioning volume for claim \"%s/%s\"", pvc.Namespace, pvc.Name)
	pv := LocalPathVolume(pvc, class, node, c.opts.StorageDir)
	_, err := c.api.Create(ctx, VolumesGVR, pv, c.opts.FieldManager)
	switch {
	case apierrors.IsAlreadyExists(err):
		return nil
	case err != nil:
		c.claimEvent(pvc, corev1.EventTypeWarning, "ProvisioningFailed", "failed to provision volume with StorageClass %q: %v", class.Name, err)
		return fmt.Errorf("create persistentvolume %s: %w", name, err)
	}
	c.claimEvent(pvc, corev1.EventTypeNormal, "ProvisioningSucceeded", "Successfully provisioned volume %s", name)
	c.log.Info("provisioned", "claim", pvc.Namespace+"/"+pvc.Name, "volume", name, "node", node.Name)
	return nil
}

// volumeExists looks for a volume in the cache, then in the API server.
func (c *Controller) volumeExists(ctx context.Context, name string) (bool, error) {
	if _, ok := c.volumeLister.Get("", name); ok {
		return true, nil
	}
	_, err := c.api.Get(ctx, VolumesGVR, "", name)
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("get persistentvolume %s: %w", name, err)
}

// localPathUnsupported says why the local-path provisioner cannot serve
// the claim, or "".
func (c *Controller) localPathUnsupported(pvc *corev1.PersistentVolumeClaim, node *corev1.Node) string {
	switch {
	case node == nil:
		// Which node's disk to use is only known once a pod is scheduled.
		return "configuration error, no node was specified (use volumeBindingMode WaitForFirstConsumer)"
	case pvc.Spec.Selector != nil:
		return "claim Selector is not supported"
	case pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode != corev1.PersistentVolumeFilesystem:
		return "only volumeMode Filesystem is supported"
	}
	for _, m := range pvc.Spec.AccessModes {
		if m != corev1.ReadWriteOnce && m != corev1.ReadWriteOncePod {
			// A directory on one node cannot be shared across nodes.
			return fmt.Sprintf("access mode %s is not supported", m)
		}
	}
	return ""
}

// provisionedVolumeName is the name provisioners give a claim's volume.
func provisionedVolumeName(pvc *corev1.PersistentVolumeClaim) string {
	return "pvc-" + string(pvc.UID)
}

// LocalPathVolume is the volume the local-path provisioner makes for pvc on
// node: a hostPath directory under storageDir named like rancher's
// local-path-provisioner names it, reachable only from that node and
// pre-bound to the claim.
func LocalPathVolume(pvc *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, node *corev1.Node, storageDir string) *corev1.PersistentVolume {
	name := provisionedVolumeName(pvc)
	hostname := node.Name
	if h := node.Labels[corev1.LabelHostname]; h != "" {
		hostname = h
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	mode := corev1.PersistentVolumeFilesystem
	dirType := corev1.HostPathDirectoryOrCreate
	return &corev1.PersistentVolume{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolume"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{annProvisionedBy: class.Provisioner},
			Finalizers:  []string{pvProtectionFinalizer},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes: pvc.Spec.AccessModes,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{
					Path: path.Join(storageDir, fmt.Sprintf("%s_%s_%s", name, pvc.Namespace, pvc.Name)),
					Type: &dirType,
				},
			},
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID, ResourceVersion: pvc.ResourceVersion,
			},
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			VolumeMode:                    &mode,
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{hostname},
				}}}},
			}},
		},
	}
}
