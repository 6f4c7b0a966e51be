package volume

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/orch-dev/orch/server/scheduling"
)

// findMatch is FindMatchingVolume: the volume pre-bound to the claim if
// there is one that fits, else the best Available volume: the smallest set
// of access modes that covers the claim's, then the smallest capacity at
// least the request. node is the selected node of a WaitForFirstConsumer
// claim (nil otherwise): volumes must then be reachable from it.
func findMatch(pvc *corev1.PersistentVolumeClaim, volumes []*corev1.PersistentVolume, node *corev1.Node) (*corev1.PersistentVolume, error) {
	request := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	class := claimClass(pvc)
	var selector labels.Selector
	if pvc.Spec.Selector != nil {
		s, err := metav1.LabelSelectorAsSelector(pvc.Spec.Selector)
		if err != nil {
			return nil, fmt.Errorf("claim %s/%s: invalid selector: %w", pvc.Namespace, pvc.Name, err)
		}
		selector = s
	}

	var best *corev1.PersistentVolume
	var bestSize resource.Quantity
	for _, pv := range volumes {
		size := pv.Spec.Capacity[corev1.ResourceStorage]
		if size.Cmp(request) < 0 || volumeModeMismatch(pvc, pv) || pv.DeletionTimestamp != nil {
			continue
		}
		reachable := node == nil || nodeAffinityMatches(pv, node)
		if volumeBoundToClaim(pv, pvc) {
			// A volume pre-bound to the claim (by a user or a provisioner)
			// is the only one it may get.
			if volumeClass(pv) != class || !reachable {
				return nil, nil
			}
			return pv, nil
		}
		switch {
		case pv.Status.Phase != corev1.VolumeAvailable, pv.Spec.ClaimRef != nil:
			continue
		case selector != nil && !selector.Matches(labels.Set(pv.Labels)):
			continue
		case volumeClass(pv) != class, !reachable, !accessModesCover(pv.Spec.AccessModes, pvc.Spec.AccessModes):
			continue
		}
		if best == nil || betterFit(pv, size, best, bestSize) {
			best, bestSize = pv, size
		}
	}
	return best, nil
}

// betterFit: fewer access modes first (Kubernetes indexes volumes by mode
// set and tries the smallest sets first), then less capacity, then name for
// a stable choice.
func betterFit(pv *corev1.PersistentVolume, size resource.Quantity, best *corev1.PersistentVolume, bestSize resource.Quantity) bool {
	if a, b := len(pv.Spec.AccessModes), len(best.Spec.AccessModes); a != b {
		return a < b
	}
	if cmp := size.Cmp(bestSize); cmp != 0 {
		return cmp < 0
	}
	return pv.Name < best.Name
}

// accessModesCover: every mode the claim asks for is one the volume has.
func accessModesCover(have, want []corev1.PersistentVolumeAccessMode) bool {
	for _, m := range want {
		if !slices.Contains(have, m) {
			return false
		}
	}
	return true
}

// volumeModeMismatch compares volume modes, unset meaning Filesystem.
func volumeModeMismatch(pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) bool {
	mode := func(m *corev1.PersistentVolumeMode) corev1.PersistentVolumeMode {
		if m == nil {
			return corev1.PersistentVolumeFilesystem
		}
		return *m
	}
	return mode(pvc.Spec.VolumeMode) != mode(pv.Spec.VolumeMode)
}

// volumeBoundToClaim: the volume's claimRef names the claim (and, if it
// has a uid, this incarnation of it).
func volumeBoundToClaim(pv *corev1.PersistentVolume, pvc *corev1.PersistentVolumeClaim) bool {
	ref := pv.Spec.ClaimRef
	if ref == nil || ref.Namespace != pvc.Namespace || ref.Name != pvc.Name {
		return false
	}
	return ref.UID == "" || ref.UID == pvc.UID
}

// nodeAffinityMatches reports whether the volume's required node affinity
// admits node; a volume without one is reachable from every node.
func nodeAffinityMatches(pv *corev1.PersistentVolume, node *corev1.Node) bool {
	na := pv.Spec.NodeAffinity
	if na == nil || na.Required == nil {
		return true
	}
	return scheduling.MatchesNodeSelectorTerms(na.Required.NodeSelectorTerms, node)
}
