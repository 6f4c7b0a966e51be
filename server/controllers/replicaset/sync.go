package replicaset

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/controllers/history"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
)

// Kubernetes' condition reasons for ReplicaFailure.
const (
	reasonFailedCreate = "FailedCreate"
	reasonFailedDelete = "FailedDelete"
)

// reconcile converges the ReplicaSet with key ns/name.
func (c *Controller) reconcile(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	obj, rs, ok := c.get(ns, name)
	if !ok {
		c.expect.Forget(key)
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil || sel.Empty() {
		// Validation forbids both; an empty selector would take every
		// pod of the namespace.
		c.log.Warn("ignoring object with an invalid or empty selector", "key", key, "err", err)
		return nil
	}
	now := c.now()
	needsSync := c.expect.Satisfied(key, now)

	var active []*corev1.Pod
	// Only its own pods and the orphans can be claimed (upstream's
	// FilterPodsByOwner), so the others of the namespace are not walked.
	for _, p := range c.pods.Controlled(ns, rs.UID) {
		if podActive(p) {
			active = append(active, p)
		}
	}
	pods, err := history.Claim(ctx, active, rs, c.kind.gvk, sel, nil, c.updatePod)
	if err != nil {
		return fmt.Errorf("claim pods of %s %s: %w", c.kind.gvk.Kind, key, err)
	}

	var manageErr error
	if needsSync && rs.DeletionTimestamp == nil {
		manageErr = c.manageReplicas(ctx, key, rs, pods, now)
	}
	status := calculateStatus(rs, pods, manageErr, c.now())
	updated, err := c.updateStatus(ctx, obj, rs, status)
	if err != nil {
		return fmt.Errorf("update status of %s %s: %w", c.kind.gvk.Kind, key, err)
	}
	if manageErr != nil {
		return manageErr
	}
	if updated.Spec.MinReadySeconds > 0 && updated.Status.ReadyReplicas == replicas(updated) && updated.Status.AvailableReplicas != replicas(updated) {
		// Look again when the ready pods have become available.
		return queue.RequeueAfter(time.Duration(updated.Spec.MinReadySeconds) * time.Second)
	}
	if !needsSync {
		return queue.RequeueAfter(expectationsRecheck)
	}
	return nil
}

func replicas(rs *appsv1.ReplicaSet) int32 {
	if rs.Spec.Replicas == nil {
		return 1
	}
	return *rs.Spec.Replicas
}

// manageReplicas creates or deletes pods so that rs has spec.replicas
// active ones.
func (c *Controller) manageReplicas(ctx context.Context, key string, rs *appsv1.ReplicaSet, pods []*corev1.Pod, now time.Time) error {
	diff := len(pods) - int(replicas(rs))
	switch {
	case diff < 0:
		n := min(-diff, c.opts.BurstReplicas)
		c.expect.ExpectCreates(key, n, now)
		created, err := slowStartBatch(n, func() error { return c.createPod(ctx, rs) })
		// Creates skipped after a failed batch, and the failed ones, will
		// never be observed.
		for range n - created {
			c.expect.ObserveCreate(key, "")
		}
		return err
	case diff > 0:
		n := min(diff, c.opts.BurstReplicas)
		victims := podsToDelete(pods, c.relatedPods(rs, pods), n, now)
		keys := make([]string, len(victims))
		for i, p := range victims {
			keys[i] = informer.Key(p.Namespace, p.Name)
		}
		c.expect.ExpectDeletes(key, keys, now)
		return c.deletePods(ctx, key, rs, victims)
	}
	return nil
}

// relatedPods are the pods of rs and of the ReplicaSets that share its
// controller (a Deployment's old and new ReplicaSets), used to spread a
// scale-down over nodes.
func (c *Controller) relatedPods(rs *appsv1.ReplicaSet, own []*corev1.Pod) []*corev1.Pod {
	owner := metav1.GetControllerOfNoCopy(rs)
	if owner == nil {
		return own
	}
	siblings := map[types.UID]bool{}
	for _, obj := range c.sets.List(rs.Namespace, nil) {
		other, ok := c.kind.toReplicaSet(obj)
		if !ok {
			continue
		}
		if ref := metav1.GetControllerOfNoCopy(other); ref != nil && ref.UID == owner.UID {
			siblings[other.UID] = true
		}
	}
	var related []*corev1.Pod
	for uid := range siblings {
		related = append(related, c.pods.OwnedBy(rs.Namespace, uid)...)
	}
	return related
}

// slowStartBatch calls fn n times, in batches of 1, 2, 4, ... run
// concurrently, and stops after the first batch with a failure, so that a
// create that fails (quota, admission) is not sent n times. It returns the
// successes and the first error.
func slowStartBatch(n int, fn func() error) (int, error) {
	successes := 0
	for batch := 1; successes < n; batch *= 2 {
		size := min(batch, n-successes)
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			firstErr error
			ok       int
		)
		for range size {
			wg.Go(func() {
				err := fn()
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					ok++
				} else if firstErr == nil {
					firstErr = err
				}
			})
		}
		wg.Wait()
		successes += ok
		if firstErr != nil {
			return successes, firstErr
		}
	}
	return successes, nil
}

// maxPodNameBase keeps <base><5 random characters> a DNS label, as the API
// server's generateName does.
const maxPodNameBase = 58

// maxNameAttempts bounds the retries after a random name was taken.
const maxNameAttempts = 3

// createPod creates one pod of rs and records the event.
func (c *Controller) createPod(ctx context.Context, rs *appsv1.ReplicaSet) error {
	var err error
	for range maxNameAttempts {
		pod := newPod(rs, c.kind, c.podSuffix())
		if len(pod.Labels) == 0 {
			err = fmt.Errorf("unable to create pods, no labels")
			break
		}
		var obj runtime.Object
		obj, err = c.api.Create(ctx, podsGVR, pod, c.opts.FieldManager)
		if apierrors.IsAlreadyExists(err) {
			continue
		}
		if err == nil {
			c.event(rs, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %v", accessorName(obj))
			return nil
		}
		break
	}
	if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		// Creates into a terminating namespace fail by design.
		return nil
	}
	c.event(rs, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
	return err
}

// newPod is a pod of rs's template. The name is chosen here, the way
// generateName would, so that a retry after a lost answer cannot double.
func newPod(rs *appsv1.ReplicaSet, kind *workloadKind, suffix string) *corev1.Pod {
	tmpl := rs.Spec.Template.DeepCopy()
	base := rs.Name + "-"
	if len(base) > maxPodNameBase {
		base = base[:maxPodNameBase]
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            base + suffix,
			GenerateName:    base,
			Namespace:       rs.Namespace,
			Labels:          tmpl.Labels,
			Annotations:     tmpl.Annotations,
			Finalizers:      tmpl.Finalizers,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, kind.gvk)},
		},
		Spec: tmpl.Spec,
	}
}

// deletePods deletes victims concurrently; it returns the first error.
func (c *Controller) deletePods(ctx context.Context, key string, rs *appsv1.ReplicaSet, victims []*corev1.Pod) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, pod := range victims {
		wg.Go(func() {
			_, err := c.api.Delete(ctx, podsGVR, pod.Namespace, pod.Name, nil)
			if err == nil {
				c.event(rs, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %v", pod.Name)
				return
			}
			// The informer will not see this deletion.
			c.expect.ObserveDelete(key, informer.Key(pod.Namespace, pod.Name))
			if apierrors.IsNotFound(err) {
				return
			}
			c.event(rs, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
			mu.Lock()
			defer mu.Unlock()
			if firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	return firstErr
}

// calculateStatus is rs's status for its active pods and the outcome of
// this sync's creates or deletes.
func calculateStatus(rs *appsv1.ReplicaSet, pods []*corev1.Pod, manageErr error, now time.Time) appsv1.ReplicaSetStatus {
	st := *rs.Status.DeepCopy()
	templateLabels := labels.SelectorFromSet(rs.Spec.Template.Labels)
	var fullyLabeled, ready, available int32
	for _, p := range pods {
		if templateLabels.Matches(labels.Set(p.Labels)) {
			fullyLabeled++
		}
		if podReady(p) {
			ready++
			if podAvailable(p, rs.Spec.MinReadySeconds, now) {
				available++
			}
		}
	}
	failure := findCondition(st.Conditions, appsv1.ReplicaSetReplicaFailure)
	switch {
	case manageErr != nil && failure == nil:
		reason := ""
		if diff := len(pods) - int(replicas(rs)); diff < 0 {
			reason = reasonFailedCreate
		} else if diff > 0 {
			reason = reasonFailedDelete
		}
		st.Conditions = append(st.Conditions, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(now), Reason: reason, Message: manageErr.Error(),
		})
	case manageErr == nil && failure != nil:
		st.Conditions = slices.DeleteFunc(st.Conditions, func(c appsv1.ReplicaSetCondition) bool {
			return c.Type == appsv1.ReplicaSetReplicaFailure
		})
	}
	if len(st.Conditions) == 0 {
		st.Conditions = nil
	}
	st.Replicas = int32(len(pods))
	st.FullyLabeledReplicas = fullyLabeled
	st.ReadyReplicas = ready
	st.AvailableReplicas = available
	return st
}

func findCondition(conds []appsv1.ReplicaSetCondition, t appsv1.ReplicaSetConditionType) *appsv1.ReplicaSetCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// statusUpdateRetries is how often a status write is retried after a
// conflict with a fresh read, as Kubernetes does once.
const statusUpdateRetries = 1

// updateStatus writes status (with observedGeneration) unless nothing
// changed, and returns the ReplicaSet view of the result.
func (c *Controller) updateStatus(ctx context.Context, obj runtime.Object, rs *appsv1.ReplicaSet, status appsv1.ReplicaSetStatus) (*appsv1.ReplicaSet, error) {
	status.ObservedGeneration = rs.Generation
	for attempt := 0; ; attempt++ {
		if statusEqual(rs.Status, status) {
			return rs, nil
		}
		out, err := c.api.Update(ctx, c.kind.gvr, c.kind.withStatus(obj, status), "status", c.opts.FieldManager)
		if err == nil {
			if view, ok := c.kind.toReplicaSet(out); ok {
				return view, nil
			}
			return nil, fmt.Errorf("unexpected type %T", out)
		}
		if !apierrors.IsConflict(err) || attempt >= statusUpdateRetries {
			return nil, err
		}
		fresh, gerr := c.api.Get(ctx, c.kind.gvr, rs.Namespace, rs.Name)
		if gerr != nil {
			return nil, err
		}
		view, ok := c.kind.toReplicaSet(fresh)
		if !ok || view.UID != rs.UID {
			return nil, err
		}
		obj, rs = fresh, view
		status.ObservedGeneration = rs.Generation
	}
}

func statusEqual(a, b appsv1.ReplicaSetStatus) bool {
	return a.Replicas == b.Replicas && a.FullyLabeledReplicas == b.FullyLabeledReplicas &&
		a.ReadyReplicas == b.ReadyReplicas && a.AvailableReplicas == b.AvailableReplicas &&
		a.ObservedGeneration == b.ObservedGeneration &&
		apiequality.Semantic.DeepEqual(a.Conditions, b.Conditions)
}
