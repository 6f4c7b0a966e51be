package statefulset

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// syncState is one reconcile of a StatefulSet: what it read and the status
// it computes while acting.
type syncState struct {
	c                               *Controller
	set                             *appsv1.StatefulSet
	current, update                 *appsv1.ControllerRevision
	currentTemplate, updateTemplate *corev1.PodTemplateSpec
	now                             time.Time

	status  appsv1.StatefulSetStatus
	requeue time.Duration
}

func (s *syncState) retryAfter(d time.Duration) {
	if d > 0 && (s.requeue == 0 || d < s.requeue) {
		s.requeue = d
	}
}

// count adds pod to the status counts (sign -1 removes it).
func (s *syncState) count(pod *corev1.Pod, sign int32) {
	s.status.Replicas += sign
	if isRunningAndReady(pod) {
		s.status.ReadyReplicas += sign
		if isRunningAndAvailable(pod, s.set.Spec.MinReadySeconds, s.now) {
			s.status.AvailableReplicas += sign
		} else if sign > 0 {
			s.retryAfter(availableIn(pod, s.set.Spec.MinReadySeconds, s.now))
		}
	}
	if !isTerminating(pod) {
		if podRevision(pod) == s.current.Name {
			s.status.CurrentReplicas += sign
		}
		if podRevision(pod) == s.update.Name {
			s.status.UpdatedReplicas += sign
		}
	}
}

// newVersionedPod is the pod for ordinal: at the current revision below
// the rolling update's partition, else at the update revision.
func (s *syncState) newVersionedPod(ordinal int) *corev1.Pod {
	set := s.set
	if set.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType {
		ru := set.Spec.UpdateStrategy.RollingUpdate
		if (ru == nil && ordinal < replicaCount(set)) ||
			(ru != nil && ru.Partition != nil && ordinal < startOrdinal(set)+int(*ru.Partition)) {
			return newPod(set, s.currentTemplate, s.current.Name, ordinal)
		}
	}
	return newPod(set, s.updateTemplate, s.update.Name, ordinal)
}

// sync brings set's pods one step closer to the spec, following
// Kubernetes' StatefulSet control loop.
func (s *syncState) sync(ctx context.Context, pods []*corev1.Pod) error {
	set := s.set
	start := startOrdinal(set)
	n := replicaCount(set)
	replicas := make([]*corev1.Pod, n)
	var condemned []*corev1.Pod
	firstUnhealthy := (*corev1.Pod)(nil)
	for _, p := range pods {
		s.count(p, 1)
		ord := ordinalOf(p)
		if ord >= start && ord < start+n {
			replicas[ord-start] = p
		} else if ord >= 0 {
			condemned = append(condemned, p)
		}
	}
	for i := range replicas {
		if replicas[i] == nil {
			replicas[i] = s.newVersionedPod(start + i)
		}
	}
	slices.SortFunc(condemned, func(a, b *corev1.Pod) int { return ordinalOf(a) - ordinalOf(b) })
	for _, p := range append(slices.Clone(replicas), condemned...) {
		if p.ResourceVersion != "" && !isHealthy(p) {
			if firstUnhealthy == nil || ordinalOf(p) < ordinalOf(firstUnhealthy) {
				firstUnhealthy = p
			}
		}
	}
	if set.DeletionTimestamp != nil {
		return nil
	}
	monotonic := set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement

	for i, pod := range replicas {
		ord := start + i
		created := pod.ResourceVersion != ""
		if created && (isFailed(pod) || isSucceeded(pod)) && !isTerminating(pod) {
			// Finished pods are replaced; the new one is created once the
			// old one is gone.
			if err := s.deletePod(ctx, pod); err != nil {
				return err
			}
			if monotonic {
				return nil
			}
			continue
		}
		if !created {
			if err := s.createPod(ctx, pod, ord); err != nil {
				return err
			}
			if monotonic {
				return nil
			}
			continue
		}
		if isTerminating(pod) {
			// Wait for the old incarnation to go before its successor.
			if monotonic {
				return nil
			}
			continue
		}
		if !isRunningAndReady(pod) && monotonic {
			return nil
		}
		if monotonic && !isRunningAndAvailable(pod, set.Spec.MinReadySeconds, s.now) {
			s.retryAfter(availableIn(pod, set.Spec.MinReadySeconds, s.now))
			return nil
		}
		if err := s.fixIdentityAndStorage(ctx, pod, ord, false); err != nil {
			return err
		}
	}

	// Scale down from the highest ordinal; in order, one at a time, and
	// only once every remaining replica is healthy.
	for i := len(condemned) - 1; i >= 0; i-- {
		pod := condemned[i]
		if isTerminating(pod) {
			if monotonic {
				return nil
			}
			continue
		}
		if monotonic && !isHealthy(pod) && pod != firstUnhealthy {
			return nil
		}
		if err := s.fixIdentityAndStorage(ctx, pod, ordinalOf(pod), true); err != nil {
			return err
		}
		if err := s.deletePod(ctx, pod); err != nil {
			return err
		}
		if monotonic {
			return nil
		}
	}

	if set.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType {
		return nil
	}
	// Rolling update: the highest ordinal not at the update revision is
	// deleted (and recreated by the next pass), down to the partition, one
	// at a time, waiting for each to be healthy again.
	updateMin := 0
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
		updateMin = int(*ru.Partition)
	}
	for i := len(replicas) - 1; i >= updateMin; i-- {
		pod := replicas[i]
		if podRevision(pod) != s.update.Name && !isTerminating(pod) {
			return s.deletePod(ctx, pod)
		}
		if !isHealthy(pod) {
			return nil
		}
	}
	return nil
}

// createPod creates pod's claims, then pod.
func (s *syncState) createPod(ctx context.Context, pod *corev1.Pod, ordinal int) error {
	set := s.set
	if err := s.ensureClaims(ctx, pod, ordinal, false); err != nil {
		s.c.event(set, corev1.EventTypeWarning, "FailedCreate", "create Pod %s in StatefulSet %s failed error: %s", pod.Name, set.Name, err)
		return err
	}
	_, err := s.c.api.Create(ctx, podsGVR, pod, s.c.opts.FieldManager)
	if apierrors.IsAlreadyExists(err) {
		// The cache is behind; the next pass sees it.
		return nil
	}
	if err != nil {
		s.c.event(set, corev1.EventTypeWarning, "FailedCreate", "create Pod %s in StatefulSet %s failed error: %s", pod.Name, set.Name, err)
		return fmt.Errorf("create pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	s.c.event(set, corev1.EventTypeNormal, "SuccessfulCreate", "create Pod %s in StatefulSet %s successful", pod.Name, set.Name)
	s.count(pod, 1)
	return nil
}

func (s *syncState) deletePod(ctx context.Context, pod *corev1.Pod) error {
	set := s.set
	_, err := s.c.api.Delete(ctx, podsGVR, pod.Namespace, pod.Name, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		s.c.event(set, corev1.EventTypeWarning, "FailedDelete", "delete Pod %s in StatefulSet %s failed error: %s", pod.Name, set.Name, err)
		return fmt.Errorf("delete pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	s.c.event(set, corev1.EventTypeNormal, "SuccessfulDelete", "delete Pod %s in StatefulSet %s successful", pod.Name, set.Name)
	s.count(pod, -1)
	return nil
}

// fixIdentityAndStorage restores a live pod's identity labels and makes
// sure its claims exist with the owners the retention policy asks for
// (condemned: the pod is about to be removed by a scale-down).
func (s *syncState) fixIdentityAndStorage(ctx context.Context, pod *corev1.Pod, ordinal int, condemned bool) error {
	if err := s.ensureClaims(ctx, pod, ordinal, condemned); err != nil {
		return err
	}
	if labelsMatchIdentity(s.set, pod) || condemned {
		return nil
	}
	updated := pod.DeepCopy()
	if updated.Labels == nil {
		updated.Labels = map[string]string{}
	}
	updated.Labels[appsv1.StatefulSetPodNameLabel] = pod.Name
	updated.Labels[appsv1.PodIndexLabel] = fmt.Sprint(ordinal)
	if _, err := s.c.updatePod(ctx, updated); err != nil && !apierrors.IsNotFound(err) {
		s.c.event(s.set, corev1.EventTypeWarning, "FailedUpdate", "update Pod %s in StatefulSet %s failed error: %s", pod.Name, s.set.Name, err)
		return fmt.Errorf("update identity of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// ensureClaims creates pod's missing PVCs and sets their owner references
// from persistentVolumeClaimRetentionPolicy: the set owns them when
// whenDeleted is Delete; a condemned pod owns them when whenScaled is
// Delete. The garbage collector deletes them with their owner.
func (s *syncState) ensureClaims(ctx context.Context, pod *corev1.Pod, ordinal int, condemned bool) error {
	set := s.set
	policy := set.Spec.PersistentVolumeClaimRetentionPolicy
	deleteWithSet := policy != nil && policy.WhenDeleted == appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	deleteWithPod := condemned && pod.UID != "" && policy != nil && policy.WhenScaled == appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	setType := metav1.TypeMeta{APIVersion: kind.GroupVersion().String(), Kind: kind.Kind}
	podType := metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}

	var errs []error
	for _, claim := range claimsFor(set, ordinal) {
		existing, ok := s.c.claims.Get(claim.Namespace, claim.Name)
		if !ok {
			if condemned {
				continue
			}
			claim.OwnerReferences, _ = ownerRefs(nil, set, setType, deleteWithSet)
			_, err := s.c.api.Create(ctx, claimsGVR, claim, s.c.opts.FieldManager)
			switch {
			case apierrors.IsAlreadyExists(err):
			case err != nil:
				s.c.event(set, corev1.EventTypeWarning, "FailedCreate", "create Claim %s for Pod %s in StatefulSet %s failed error: %s", claim.Name, pod.Name, set.Name, err)
				errs = append(errs, fmt.Errorf("create claim %s/%s: %w", claim.Namespace, claim.Name, err))
			default:
				s.c.event(set, corev1.EventTypeNormal, "SuccessfulCreate", "create Claim %s Pod %s in StatefulSet %s success", claim.Name, pod.Name, set.Name)
			}
			continue
		}
		if existing.DeletionTimestamp != nil {
			continue
		}
		refs, changedSet := ownerRefs(slices.Clone(existing.OwnerReferences), set, setType, deleteWithSet)
		var changedPod bool
		if pod.UID != "" {
			refs, changedPod = ownerRefs(refs, pod, podType, deleteWithPod)
		}
		if !changedSet && !changedPod {
			continue
		}
		updated := existing.DeepCopy()
		updated.OwnerReferences = refs
		if _, err := s.c.api.Update(ctx, claimsGVR, updated, "", s.c.opts.FieldManager); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("update owners of claim %s/%s: %w", claim.Namespace, claim.Name, err))
		}
	}
	return errors.Join(errs...)
}
