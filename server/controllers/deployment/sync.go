package deployment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/controllers/history"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
)

// rollout is the state of one sync of a Deployment.
type rollout struct {
	// d is a private copy of the Deployment; its status and revision
	// annotation are what writeStatus persists.
	d *appsv1.Deployment
	// storedRevision is d's revision annotation as stored.
	storedRevision string
	rsList         []*appsv1.ReplicaSet
	// podsByRS holds the pods of each ReplicaSet (Recreate only).
	podsByRS map[types.UID][]*corev1.Pod
	now      time.Time
	// requeue asks for another sync after this long (progress deadline).
	requeue time.Duration
}

// reconcile converges the Deployment with key ns/name.
func (c *Controller) reconcile(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	cached, ok := c.deployments.Get(ns, name)
	if !ok {
		return nil
	}
	r := &rollout{d: cached.DeepCopy(), storedRevision: cached.Annotations[RevisionAnnotation], now: c.now()}
	d := r.d

	if d.Spec.Selector != nil && len(d.Spec.Selector.MatchLabels) == 0 && len(d.Spec.Selector.MatchExpressions) == 0 {
		c.event(d, corev1.EventTypeWarning, reasonSelectingAll, messageSelectingAll)
		if d.Status.ObservedGeneration < d.Generation {
			d.Status.ObservedGeneration = d.Generation
			return c.writeStatus(ctx, r)
		}
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		c.log.Warn("ignoring deployment with an invalid selector", "key", key, "err", err)
		return nil
	}

	if r.rsList, err = c.claimReplicaSets(ctx, d, sel); err != nil {
		return err
	}
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		r.podsByRS = c.podsByReplicaSet(d, sel, r.rsList)
	}

	if d.DeletionTimestamp != nil {
		return c.syncStatusOnly(ctx, r)
	}
	if err := c.checkPausedConditions(ctx, r); err != nil {
		return err
	}
	if d.Spec.Paused {
		return c.sync(ctx, r)
	}
	if c.isScalingEvent(r) {
		return c.sync(ctx, r)
	}
	switch d.Spec.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		err = c.rolloutRecreate(ctx, r)
	case appsv1.RollingUpdateDeploymentStrategyType:
		err = c.rolloutRolling(ctx, r)
	default:
		return fmt.Errorf("deployment %s: unexpected strategy type %q", key, d.Spec.Strategy.Type)
	}
	if err == nil && r.requeue > 0 {
		return queue.RequeueAfter(r.requeue)
	}
	return err
}

// claimReplicaSets adopts and releases ReplicaSets as Kubernetes'
// ControllerRefManager does, and returns the Deployment's.
func (c *Controller) claimReplicaSets(ctx context.Context, d *appsv1.Deployment, sel labels.Selector) ([]*appsv1.ReplicaSet, error) {
	candidates := c.sets.List(d.Namespace, nil)
	owned, err := history.Claim(ctx, candidates, d, deploymentKind, sel, nil, c.updateReplicaSet)
	if err != nil {
		return nil, fmt.Errorf("claim replica sets of deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	return owned, nil
}

// podsByReplicaSet groups the pods matching the Deployment by the
// ReplicaSet among rsList that controls them.
func (c *Controller) podsByReplicaSet(d *appsv1.Deployment, sel labels.Selector, rsList []*appsv1.ReplicaSet) map[types.UID][]*corev1.Pod {
	out := make(map[types.UID][]*corev1.Pod, len(rsList))
	for _, rs := range rsList {
		out[rs.UID] = nil
	}
	for _, p := range c.pods.List(d.Namespace, sel) {
		ref := metav1.GetControllerOfNoCopy(p)
		if ref == nil {
			continue
		}
		if _, ok := out[ref.UID]; ok {
			out[ref.UID] = append(out[ref.UID], p)
		}
	}
	return out
}

// writeStatus persists r.d's revision annotation (on the main resource,
// since the status subresource keeps metadata) and status.
func (c *Controller) writeStatus(ctx context.Context, r *rollout) error {
	if rev := r.d.Annotations[RevisionAnnotation]; rev != r.storedRevision {
		status := r.d.Status
		obj, err := c.api.Update(ctx, deploymentsGVR, r.d, "", c.opts.FieldManager)
		if err != nil {
			return fmt.Errorf("update revision of deployment %s/%s: %w", r.d.Namespace, r.d.Name, err)
		}
		out, ok := obj.(*appsv1.Deployment)
		if !ok {
			return fmt.Errorf("update deployment %s/%s: unexpected type %T", r.d.Namespace, r.d.Name, obj)
		}
		r.d = out.DeepCopy()
		r.d.Status = status
		r.storedRevision = rev
	}
	obj, err := c.api.Update(ctx, deploymentsGVR, r.d, "status", c.opts.FieldManager)
	if err != nil {
		return fmt.Errorf("update status of deployment %s/%s: %w", r.d.Namespace, r.d.Name, err)
	}
	out, ok := obj.(*appsv1.Deployment)
	if !ok {
		return fmt.Errorf("update deployment %s/%s: unexpected type %T", r.d.Namespace, r.d.Name, obj)
	}
	r.d = out.DeepCopy()
	return nil
}

// checkPausedConditions records pause and resume in the Progressing
// condition, unless the rollout already timed out.
func (c *Controller) checkPausedConditions(ctx context.Context, r *rollout) error {
	d := r.d
	if !hasProgressDeadline(d) {
		return nil
	}
	cond := getCondition(d.Status, appsv1.DeploymentProgressing)
	if cond != nil && cond.Reason == reasonTimedOut {
		return nil
	}
	pausedCond := cond != nil && cond.Reason == reasonPaused
	switch {
	case d.Spec.Paused && !pausedCond:
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, reasonPaused, messagePaused, r.now))
	case !d.Spec.Paused && pausedCond:
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, reasonResumed, messageResumed, r.now))
	default:
		return nil
	}
	return c.writeStatus(ctx, r)
}

// isScalingEvent: some active ReplicaSet was sized for another
// spec.replicas (desired-replicas annotation), i.e. the Deployment was
// resized rather than changed.
func (c *Controller) isScalingEvent(r *rollout) bool {
	newRS := findNewReplicaSet(r.d, r.rsList)
	all := append(findOldReplicaSets(r.d, r.rsList), newRS)
	for _, rs := range activeReplicaSets(all) {
		desired, ok := annotatedInt(rs, DesiredReplicasAnnotation)
		if ok && desired != desiredReplicas(r.d) {
			return true
		}
	}
	return false
}

// sync resizes the ReplicaSets of a paused or resized Deployment without
// rolling, and updates its status.
func (c *Controller) sync(ctx context.Context, r *rollout) error {
	newRS, oldRSs, err := c.replicaSetsAndSyncRevision(ctx, r, false)
	if err != nil {
		return err
	}
	if err := c.scale(ctx, r, newRS, oldRSs); err != nil {
		return err
	}
	if r.d.Spec.Paused {
		if err := c.cleanup(ctx, r, oldRSs); err != nil {
			return err
		}
	}
	return c.syncStatusOnlyWith(ctx, r, append(oldRSs, newRS), newRS)
}

func (c *Controller) syncStatusOnly(ctx context.Context, r *rollout) error {
	newRS, oldRSs, err := c.replicaSetsAndSyncRevision(ctx, r, false)
	if err != nil {
		return err
	}
	return c.syncStatusOnlyWith(ctx, r, append(oldRSs, newRS), newRS)
}

func (c *Controller) syncStatusOnlyWith(ctx context.Context, r *rollout, allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	st := calculateStatus(r.d, allRSs, newRS, r.now)
	if apiequality.Semantic.DeepEqual(r.d.Status, st) {
		return nil
	}
	r.d.Status = st
	return c.writeStatus(ctx, r)
}

// replicaSetsAndSyncRevision returns the new ReplicaSet (creating it if
// create is set and it does not exist) and the old ones, and brings the
// revision annotations up to date.
func (c *Controller) replicaSetsAndSyncRevision(ctx context.Context, r *rollout, create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet, error) {
	oldRSs := findOldReplicaSets(r.d, r.rsList)
	newRS, err := c.newReplicaSet(ctx, r, oldRSs, create)
	if err != nil {
		return nil, nil, err
	}
	return newRS, oldRSs, nil
}

// newReplicaSet finds (and syncs the annotations of) or creates the
// ReplicaSet of the Deployment's current template.
func (c *Controller) newReplicaSet(ctx context.Context, r *rollout, oldRSs []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, error) {
	d := r.d
	existing := findNewReplicaSet(d, r.rsList)
	newRevision := strconv.FormatInt(maxRevision(oldRSs)+1, 10)

	if existing != nil {
		rs := existing.DeepCopy()
		annotationsChanged := setNewReplicaSetAnnotations(d, rs, newRevision, true)
		minReadyChanged := rs.Spec.MinReadySeconds != d.Spec.MinReadySeconds
		if annotationsChanged || minReadyChanged {
			rs.Spec.MinReadySeconds = d.Spec.MinReadySeconds
			updated, err := c.updateReplicaSet(ctx, rs)
			if err != nil {
				return nil, fmt.Errorf("update replica set %s/%s: %w", rs.Namespace, rs.Name, err)
			}
			rs = updated
		}
		needsUpdate := setDeploymentRevision(d, rs.Annotations[RevisionAnnotation])
		if hasProgressDeadline(d) && getCondition(d.Status, appsv1.DeploymentProgressing) == nil {
			msg := fmt.Sprintf("Found new replica set %q", rs.Name)
			setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonFoundNewRS, msg, r.now))
			needsUpdate = true
		}
		if needsUpdate {
			if err := c.writeStatus(ctx, r); err != nil {
				return nil, err
			}
		}
		return rs, nil
	}
	if !create {
		return nil, nil
	}

	tmpl := d.Spec.Template.DeepCopy()
	hash := ComputeHash(tmpl, d.Status.CollisionCount)
	tmpl.Labels = withLabel(d.Spec.Template.Labels, appsv1.DefaultDeploymentUniqueLabelKey, hash)
	selector := d.Spec.Selector.DeepCopy()
	if selector.MatchLabels == nil {
		selector.MatchLabels = map[string]string{}
	}
	selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	zero := int32(0)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:            d.Name + "-" + hash,
			Namespace:       d.Namespace,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, deploymentKind)},
			Labels:          tmpl.Labels,
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas:        &zero,
			MinReadySeconds: d.Spec.MinReadySeconds,
			Selector:        selector,
			Template:        *tmpl,
		},
	}
	size := newRSNewReplicas(d, append(slices.Clone(oldRSs), rs), rs)
	rs.Spec.Replicas = &size
	setNewReplicaSetAnnotations(d, rs, newRevision, false)

	created, alreadyExisted, err := c.createReplicaSet(ctx, r, rs)
	if err != nil {
		return nil, err
	}
	if !alreadyExisted && size > 0 {
		c.event(d, corev1.EventTypeNormal, reasonScalingReplicaSet, "Scaled up replica set %s from 0 to %d", created.Name, size)
	}
	needsUpdate := setDeploymentRevision(d, newRevision)
	if !alreadyExisted && hasProgressDeadline(d) {
		msg := fmt.Sprintf("Created new replica set %q", created.Name)
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonNewRSCreated, msg, r.now))
		needsUpdate = true
	}
	if needsUpdate {
		if err := c.writeStatus(ctx, r); err != nil {
			return nil, err
		}
	}
	return created, nil
}

// createReplicaSet creates rs. A name already taken by this Deployment's
// ReplicaSet of the same template (the cache was behind) is that one; a
// name taken by anything else is a hash collision: the collision count
// goes up so that the next sync hashes differently.
func (c *Controller) createReplicaSet(ctx context.Context, r *rollout, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, bool, error) {
	d := r.d
	obj, err := c.api.Create(ctx, replicaSetsGVR, rs, c.opts.FieldManager)
	if err == nil {
		created, ok := obj.(*appsv1.ReplicaSet)
		if !ok {
			return nil, false, fmt.Errorf("create replica set %s/%s: unexpected type %T", rs.Namespace, rs.Name, obj)
		}
		return created, false, nil
	}
	if apierrors.IsAlreadyExists(err) {
		obj, getErr := c.api.Get(ctx, replicaSetsGVR, rs.Namespace, rs.Name)
		if getErr != nil {
			return nil, true, fmt.Errorf("get replica set %s/%s: %w", rs.Namespace, rs.Name, getErr)
		}
		if cur, ok := obj.(*appsv1.ReplicaSet); ok {
			if ref := metav1.GetControllerOfNoCopy(cur); ref != nil && ref.UID == d.UID && equalIgnoreHash(&d.Spec.Template, &cur.Spec.Template) {
				return cur, true, nil
			}
		}
		if d.Status.CollisionCount == nil {
			d.Status.CollisionCount = new(int32)
		}
		*d.Status.CollisionCount++
		if werr := c.writeStatus(ctx, r); werr != nil {
			return nil, true, errors.Join(err, werr)
		}
		return nil, true, fmt.Errorf("replica set %s/%s: pod template hash collision: %w", rs.Namespace, rs.Name, err)
	}
	msg := fmt.Sprintf("Failed to create new replica set %q: %v", rs.Name, err)
	if hasProgressDeadline(d) {
		setCondition(&d.Status, newCondition(appsv1.DeploymentReplicaFailure, corev1.ConditionTrue, reasonFailedRSCreate, msg, r.now))
		if werr := c.writeStatus(ctx, r); werr != nil {
			c.log.Warn("couldn't record replica set create failure", "deployment", d.Name, "err", werr)
		}
	}
	c.event(d, corev1.EventTypeWarning, reasonFailedRSCreate, "%s", msg)
	return nil, false, fmt.Errorf("create replica set %s/%s: %w", rs.Namespace, rs.Name, err)
}

func withLabel(in map[string]string, key, value string) map[string]string {
	out := make(map[string]string, len(in)+1)
	for k, v := range in {
		out[k] = v
	}
	out[key] = value
	return out
}

// setDeploymentRevision sets d's revision annotation; it reports a change.
func setDeploymentRevision(d *appsv1.Deployment, revision string) bool {
	if d.Annotations[RevisionAnnotation] == revision {
		return false
	}
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	d.Annotations[RevisionAnnotation] = revision
	return true
}

// scale resizes the ReplicaSets to spec.replicas outside a rollout step:
// the one active ReplicaSet takes it all; a saturated new ReplicaSet
// leaves the old ones at zero; during a rolling update the difference is
// spread in proportion to the ReplicaSets' sizes.
func (c *Controller) scale(ctx context.Context, r *rollout, newRS *appsv1.ReplicaSet, oldRSs []*appsv1.ReplicaSet) error {
	d := r.d
	if rs := findActiveOrLatest(newRS, oldRSs); rs != nil {
		if replicasOf(rs) == desiredReplicas(d) {
			return nil
		}
		_, _, err := c.scaleAndRecord(ctx, r, rs, desiredReplicas(d))
		return err
	}
	if isSaturated(d, newRS) {
		for _, old := range activeReplicaSets(oldRSs) {
			if _, _, err := c.scaleAndRecord(ctx, r, old, 0); err != nil {
				return err
			}
		}
		return nil
	}
	if !isRollingUpdate(d) {
		return nil
	}
	all := activeReplicaSets(append(slices.Clone(oldRSs), newRS))
	var allowed int32
	if desiredReplicas(d) > 0 {
		allowed = desiredReplicas(d) + maxSurge(d)
	}
	toAdd := allowed - specReplicas(all)
	op := ""
	switch {
	case toAdd > 0:
		slices.SortStableFunc(all, bySizeNewer)
		op = "up"
	case toAdd < 0:
		slices.SortStableFunc(all, bySizeOlder)
		op = "down"
	}
	added := int32(0)
	sizes := make([]int32, len(all))
	for i, rs := range all {
		sizes[i] = replicasOf(rs)
		if toAdd != 0 {
			p := proportion(rs, d, toAdd, added)
			sizes[i] += p
			added += p
		}
	}
	for i, rs := range all {
		if i == 0 && toAdd != 0 {
			// The leftover goes to the largest ReplicaSet.
			sizes[i] = max(sizes[i]+toAdd-added, 0)
		}
		if _, _, err := c.scaleReplicaSet(ctx, r, rs, sizes[i], op); err != nil {
			return err
		}
	}
	return nil
}

// scaleAndRecord scales rs to size (if it is not already) with an event.
func (c *Controller) scaleAndRecord(ctx context.Context, r *rollout, rs *appsv1.ReplicaSet, size int32) (bool, *appsv1.ReplicaSet, error) {
	if replicasOf(rs) == size {
		return false, rs, nil
	}
	op := "down"
	if replicasOf(rs) < size {
		op = "up"
	}
	return c.scaleReplicaSet(ctx, r, rs, size, op)
}

// scaleReplicaSet writes rs's size and replicas annotations; it reports
// whether the size changed.
func (c *Controller) scaleReplicaSet(ctx context.Context, r *rollout, rs *appsv1.ReplicaSet, size int32, op string) (bool, *appsv1.ReplicaSet, error) {
	d := r.d
	sizeChanged := replicasOf(rs) != size
	maxReplicas := desiredReplicas(d) + maxSurge(d)
	if !sizeChanged && !replicasAnnotationsNeedUpdate(rs, desiredReplicas(d), maxReplicas) {
		return false, rs, nil
	}
	from := replicasOf(rs)
	cp := rs.DeepCopy()
	cp.Spec.Replicas = &size
	setReplicasAnnotations(cp, desiredReplicas(d), maxReplicas)
	updated, err := c.updateReplicaSet(ctx, cp)
	if err != nil {
		return false, rs, fmt.Errorf("scale replica set %s/%s to %d: %w", rs.Namespace, rs.Name, size, err)
	}
	if sizeChanged {
		c.event(d, corev1.EventTypeNormal, reasonScalingReplicaSet, "Scaled %s replica set %s from %d to %d", op, rs.Name, from, size)
	}
	c.replaceInList(r, updated)
	return sizeChanged, updated, nil
}

// replaceInList keeps r.rsList current after a write.
func (c *Controller) replaceInList(r *rollout, rs *appsv1.ReplicaSet) {
	for i := range r.rsList {
		if r.rsList[i].UID == rs.UID {
			r.rsList[i] = rs
		}
	}
}

// cleanup deletes the oldest old ReplicaSets beyond revisionHistoryLimit
// that are scaled to zero and settled.
func (c *Controller) cleanup(ctx context.Context, r *rollout, oldRSs []*appsv1.ReplicaSet) error {
	d := r.d
	if !hasRevisionHistoryLimit(d) {
		return nil
	}
	var cleanable []*appsv1.ReplicaSet
	for _, rs := range oldRSs {
		if rs != nil && rs.DeletionTimestamp == nil {
			cleanable = append(cleanable, rs)
		}
	}
	diff := len(cleanable) - int(*d.Spec.RevisionHistoryLimit)
	if diff <= 0 {
		return nil
	}
	slices.SortStableFunc(cleanable, byRevision)
	for _, rs := range cleanable[:diff] {
		if rs.Status.Replicas != 0 || replicasOf(rs) != 0 || rs.Generation > rs.Status.ObservedGeneration {
			continue
		}
		_, err := c.api.Delete(ctx, replicaSetsGVR, rs.Namespace, rs.Name, &metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &rs.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete old replica set %s/%s: %w", rs.Namespace, rs.Name, err)
		}
	}
	return nil
}
