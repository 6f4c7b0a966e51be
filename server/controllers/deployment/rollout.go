package deployment

import (
	"context"
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
)

// rolloutRolling takes one RollingUpdate step: grow the new ReplicaSet
// within maxSurge, or else shrink old ones within maxUnavailable; once
// complete, clean up the history.
func (c *Controller) rolloutRolling(ctx context.Context, r *rollout) error {
	newRS, oldRSs, err := c.replicaSetsAndSyncRevision(ctx, r, true)
	if err != nil {
		return err
	}
	all := append(slices.Clone(oldRSs), newRS)

	scaledUp, err := c.reconcileNewReplicaSet(ctx, r, all, newRS)
	if err != nil {
		return err
	}
	if scaledUp {
		return c.syncRolloutStatus(ctx, r, c.current(r, all), c.currentOne(r, newRS))
	}
	scaledDown, err := c.reconcileOldReplicaSets(ctx, r, c.current(r, all), activeReplicaSets(c.current(r, oldRSs)), c.currentOne(r, newRS))
	if err != nil {
		return err
	}
	if scaledDown {
		return c.syncRolloutStatus(ctx, r, c.current(r, all), c.currentOne(r, newRS))
	}
	if deploymentComplete(r.d, &r.d.Status) {
		if err := c.cleanup(ctx, r, c.current(r, oldRSs)); err != nil {
			return err
		}
	}
	return c.syncRolloutStatus(ctx, r, c.current(r, all), c.currentOne(r, newRS))
}

// current returns the latest known version of each ReplicaSet of rss.
func (c *Controller) current(r *rollout, rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	out := make([]*appsv1.ReplicaSet, len(rss))
	for i, rs := range rss {
		out[i] = c.currentOne(r, rs)
	}
	return out
}

func (c *Controller) currentOne(r *rollout, rs *appsv1.ReplicaSet) *appsv1.ReplicaSet {
	if rs == nil {
		return nil
	}
	for _, cur := range r.rsList {
		if cur.UID == rs.UID {
			return cur
		}
	}
	return rs
}

// reconcileNewReplicaSet grows (or, above spec.replicas, shrinks) the new
// ReplicaSet as far as maxSurge allows.
func (c *Controller) reconcileNewReplicaSet(ctx context.Context, r *rollout, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, error) {
	d := r.d
	switch n := replicasOf(newRS); {
	case n == desiredReplicas(d):
		return false, nil
	case n > desiredReplicas(d):
		scaled, _, err := c.scaleAndRecord(ctx, r, newRS, desiredReplicas(d))
		return scaled, err
	}
	scaled, _, err := c.scaleAndRecord(ctx, r, newRS, newRSNewReplicas(d, all, newRS))
	return scaled, err
}

// reconcileOldReplicaSets shrinks old ReplicaSets as far as
// maxUnavailable allows, unhealthy replicas first.
func (c *Controller) reconcileOldReplicaSets(ctx context.Context, r *rollout, all, oldRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, error) {
	d := r.d
	if specReplicas(oldRSs) == 0 {
		return false, nil
	}
	minAvailable := desiredReplicas(d) - maxUnavailable(d)
	newUnavailable := replicasOf(newRS) - newRS.Status.AvailableReplicas
	maxScaledDown := specReplicas(all) - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return false, nil
	}
	oldRSs, cleaned, err := c.cleanupUnhealthyReplicas(ctx, r, oldRSs, maxScaledDown)
	if err != nil {
		return false, err
	}
	all = append(slices.Clone(oldRSs), newRS)
	scaled, err := c.scaleDownOldForRollingUpdate(ctx, r, all, oldRSs)
	if err != nil {
		return false, err
	}
	return cleaned+scaled > 0, nil
}

// cleanupUnhealthyReplicas removes up to limit unavailable replicas of old
// ReplicaSets, oldest first: they serve nothing, and would otherwise hold
// the rollout back.
func (c *Controller) cleanupUnhealthyReplicas(ctx context.Context, r *rollout, oldRSs []*appsv1.ReplicaSet, limit int32) ([]*appsv1.ReplicaSet, int32, error) {
	oldRSs = slices.Clone(oldRSs)
	slices.SortStableFunc(oldRSs, byCreation)
	var total int32
	for i, rs := range oldRSs {
		if total >= limit {
			break
		}
		n := replicasOf(rs)
		if n == 0 || n == rs.Status.AvailableReplicas {
			continue
		}
		down := min(limit-total, n-rs.Status.AvailableReplicas)
		if n-down > n {
			return nil, 0, fmt.Errorf("replica set %s/%s: invalid scale-down to %d", rs.Namespace, rs.Name, n-down)
		}
		_, updated, err := c.scaleAndRecord(ctx, r, rs, n-down)
		if err != nil {
			return nil, total, err
		}
		total += down
		oldRSs[i] = updated
	}
	return oldRSs, total, nil
}

// scaleDownOldForRollingUpdate shrinks old ReplicaSets, oldest first, by
// the available pods above spec.replicas - maxUnavailable.
func (c *Controller) scaleDownOldForRollingUpdate(ctx context.Context, r *rollout, all, oldRSs []*appsv1.ReplicaSet) (int32, error) {
	d := r.d
	minAvailable := desiredReplicas(d) - maxUnavailable(d)
	available := availableReplicas(all)
	if available <= minAvailable {
		return 0, nil
	}
	oldRSs = slices.Clone(oldRSs)
	slices.SortStableFunc(oldRSs, byCreation)
	want := available - minAvailable
	var total int32
	for _, rs := range oldRSs {
		if total >= want {
			break
		}
		if replicasOf(rs) == 0 {
			continue
		}
		down := min(replicasOf(rs), want-total)
		if _, _, err := c.scaleAndRecord(ctx, r, rs, replicasOf(rs)-down); err != nil {
			return total, err
		}
		total += down
	}
	return total, nil
}

// rolloutRecreate scales every old ReplicaSet to zero, waits until their
// pods are gone, then creates and scales up the new one.
func (c *Controller) rolloutRecreate(ctx context.Context, r *rollout) error {
	newRS, oldRSs, err := c.replicaSetsAndSyncRevision(ctx, r, false)
	if err != nil {
		return err
	}
	scaledDown := false
	for _, rs := range activeReplicaSets(oldRSs) {
		scaled, _, err := c.scaleAndRecord(ctx, r, rs, 0)
		if err != nil {
			return err
		}
		scaledDown = scaledDown || scaled
	}
	oldRSs = c.current(r, oldRSs)
	all := append(slices.Clone(oldRSs), newRS)
	if scaledDown || oldPodsRunning(newRS, oldRSs, r.podsByRS) {
		return c.syncRolloutStatus(ctx, r, all, newRS)
	}
	if newRS == nil {
		if newRS, oldRSs, err = c.replicaSetsAndSyncRevision(ctx, r, true); err != nil {
			return err
		}
		all = append(slices.Clone(oldRSs), newRS)
	}
	if _, _, err := c.scaleAndRecord(ctx, r, newRS, desiredReplicas(r.d)); err != nil {
		return err
	}
	if deploymentComplete(r.d, &r.d.Status) {
		if err := c.cleanup(ctx, r, c.current(r, oldRSs)); err != nil {
			return err
		}
	}
	return c.syncRolloutStatus(ctx, r, c.current(r, all), c.currentOne(r, newRS))
}

// oldPodsRunning: an old ReplicaSet still reports pods, or has a pod that
// has not finished (terminating pods count: Recreate promises no overlap).
func oldPodsRunning(newRS *appsv1.ReplicaSet, oldRSs []*appsv1.ReplicaSet, podsByRS map[types.UID][]*corev1.Pod) bool {
	if actualReplicas(oldRSs) > 0 {
		return true
	}
	for uid, pods := range podsByRS {
		if newRS != nil && newRS.UID == uid {
			continue
		}
		for _, p := range pods {
			switch p.Status.Phase {
			case corev1.PodFailed, corev1.PodSucceeded:
				continue
			default:
				return true
			}
		}
	}
	return false
}

// syncRolloutStatus computes the status with the Progressing condition
// and writes it if it changed; an unchanged in-progress rollout is looked
// at again when its progress deadline passes.
func (c *Controller) syncRolloutStatus(ctx context.Context, r *rollout, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	d := r.d
	st := calculateStatus(d, all, newRS, r.now)
	if !hasProgressDeadline(d) {
		removeCondition(&st, appsv1.DeploymentProgressing)
	}
	cur := getCondition(d.Status, appsv1.DeploymentProgressing)
	complete := st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == reasonNewRSAvailable
	if hasProgressDeadline(d) && !complete {
		switch {
		case deploymentComplete(d, &st):
			msg := fmt.Sprintf("Deployment %q has successfully progressed.", d.Name)
			if newRS != nil {
				msg = fmt.Sprintf("ReplicaSet %q has successfully progressed.", newRS.Name)
			}
			setCondition(&st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonNewRSAvailable, msg, r.now))
		case deploymentProgressing(d, &st):
			msg := fmt.Sprintf("Deployment %q is progressing.", d.Name)
			if newRS != nil {
				msg = fmt.Sprintf("ReplicaSet %q is progressing.", newRS.Name)
			}
			cond := newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonRSUpdated, msg, r.now)
			// Progress refreshes lastUpdateTime even with the same reason;
			// the transition time stays while the status stays True.
			if cur != nil {
				if cur.Status == corev1.ConditionTrue {
					cond.LastTransitionTime = cur.LastTransitionTime
				}
				removeCondition(&st, appsv1.DeploymentProgressing)
			}
			st.Conditions = append(st.Conditions, cond)
		case deploymentTimedOut(d, &st, r.now):
			msg := fmt.Sprintf("Deployment %q has timed out progressing.", d.Name)
			if newRS != nil {
				msg = fmt.Sprintf("ReplicaSet %q has timed out progressing.", newRS.Name)
			}
			setCondition(&st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionFalse, reasonTimedOut, msg, r.now))
		}
	}
	if failure := replicaFailure(all, newRS); failure != nil {
		setCondition(&st, *failure)
	} else {
		removeCondition(&st, appsv1.DeploymentReplicaFailure)
	}
	if apiequality.Semantic.DeepEqual(d.Status, st) {
		r.requeue = stuckRequeue(d, st, r.now)
		return nil
	}
	d.Status = st
	return c.writeStatus(ctx, r)
}

// stuckRequeue is when an unchanged, unfinished rollout must be checked
// against its progress deadline (0: no need).
func stuckRequeue(d *appsv1.Deployment, st appsv1.DeploymentStatus, now time.Time) time.Duration {
	cond := getCondition(d.Status, appsv1.DeploymentProgressing)
	if !hasProgressDeadline(d) || cond == nil || deploymentComplete(d, &st) || cond.Reason == reasonTimedOut {
		return 0
	}
	after := cond.LastUpdateTime.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second).Sub(now)
	if after < time.Second {
		return time.Second
	}
	return after + time.Second
}

// replicaFailure is the ReplicaFailure condition of the new ReplicaSet,
// else of an old one, as a Deployment condition.
func replicaFailure(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) *appsv1.DeploymentCondition {
	ordered := all
	if newRS != nil {
		ordered = append([]*appsv1.ReplicaSet{newRS}, all...)
	}
	for _, rs := range ordered {
		if rs == nil {
			continue
		}
		for _, cond := range rs.Status.Conditions {
			if cond.Type == appsv1.ReplicaSetReplicaFailure && cond.Status == corev1.ConditionTrue {
				return &appsv1.DeploymentCondition{
					Type: appsv1.DeploymentReplicaFailure, Status: cond.Status,
					LastUpdateTime: cond.LastTransitionTime, LastTransitionTime: cond.LastTransitionTime,
					Reason: cond.Reason, Message: cond.Message,
				}
			}
		}
	}
	return nil
}

// calculateStatus is the Deployment's status from its ReplicaSets, with
// the Available condition.
func calculateStatus(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, now time.Time) appsv1.DeploymentStatus {
	available := availableReplicas(all)
	unavailable := max(specReplicas(all)-available, 0)
	st := appsv1.DeploymentStatus{
		ObservedGeneration:  d.Generation,
		Replicas:            actualReplicas(all),
		UpdatedReplicas:     actualReplicas([]*appsv1.ReplicaSet{newRS}),
		ReadyReplicas:       readyReplicas(all),
		AvailableReplicas:   available,
		UnavailableReplicas: unavailable,
		CollisionCount:      d.Status.CollisionCount,
	}
	st.Conditions = append(st.Conditions, d.Status.Conditions...)
	if available >= desiredReplicas(d)-maxUnavailable(d) {
		setCondition(&st, newCondition(appsv1.DeploymentAvailable, corev1.ConditionTrue, reasonMinAvailable, messageMinAvailable, now))
	} else {
		setCondition(&st, newCondition(appsv1.DeploymentAvailable, corev1.ConditionFalse, reasonMinUnavailable, messageMinUnavailable, now))
	}
	return st
}
