package disruption

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
)

// reconcile brings the status of the budget called key up to date. When
// the status cannot be computed it fails safe: no disruptions allowed, the
// SyncFailed condition, and a retry with back-off.
func (c *Controller) reconcile(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	pdb, ok := c.pdbs.Get(ns, name)
	if !ok {
		return nil
	}
	recheck, err := c.sync(ctx, pdb)
	switch {
	case err == nil:
		if recheck > 0 {
			// A disruptedPods entry expires then.
			return queue.RequeueAfter(recheck)
		}
		return nil
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		// Someone (an eviction) wrote the budget since we read it, or
		// deleted it: the watch event of that write queues the budget
		// again once the cache has it, so this is no failure.
		c.log.Debug("budget changed while syncing", "podDisruptionBudget", key, "err", err)
		return nil
	case ctx.Err() != nil:
		return err
	}
	// The queue logs the error it gets back.
	if ferr := c.failSafe(ctx, pdb, err); ferr != nil {
		return fmt.Errorf("pdb %s: %w (and setting SyncFailed: %v)", key, err, ferr)
	}
	// Kubernetes stops here until the next event; retrying with back-off
	// keeps the controller level-triggered for errors that heal by
	// themselves (a workload that appears in the cache later).
	return fmt.Errorf("pdb %s: %w", key, err)
}

// sync computes and writes pdb's status; it returns when the earliest
// disruptedPods entry expires (0 if none).
func (c *Controller) sync(ctx context.Context, pdb *policyv1.PodDisruptionBudget) (time.Duration, error) {
	pods, err := c.podsForPDB(pdb)
	if err != nil {
		c.recorder.Eventf(pdb, corev1.EventTypeWarning, "NoPods", "Failed to get pods: %v", err)
		return 0, err
	}
	if len(pods) == 0 {
		c.recorder.Eventf(pdb, corev1.EventTypeNormal, "NoPods", "No matching pods found")
	}

	expected, desiredHealthy, unmanaged, err := c.expectedPodCount(ctx, pdb, pods)
	if err != nil {
		c.recorder.Eventf(pdb, corev1.EventTypeWarning, "CalculateExpectedPodCountFailed", "Failed to calculate the number of expected pods: %v", err)
		return 0, err
	}
	if len(unmanaged) > 0 {
		// Not an error: erroring would only make the controller loop.
		c.log.Debug("pods without a controller", "podDisruptionBudget", pdb.Namespace+"/"+pdb.Name, "pods", unmanaged)
		c.recorder.Eventf(pdb, corev1.EventTypeWarning, "UnmanagedPods", "Pods selected by this PodDisruptionBudget (selector: %v) were found "+
			"to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. "+
			"To account for these pods please set \".spec.minAvailable\" "+
			"field of the PDB to an integer value.", pdb.Spec.Selector)
	}

	now := c.clock.Now()
	disrupted, recheckAt := c.disruptedPods(pdb, pods, now)
	currentHealthy := countHealthyPods(pods, disrupted, now)
	if err := c.updateStatus(ctx, pdb, currentHealthy, desiredHealthy, expected, disrupted); err != nil {
		return 0, err
	}
	if recheckAt.IsZero() {
		return 0, nil
	}
	// Never 0: 0 means "no recheck".
	return max(recheckAt.Sub(now), time.Millisecond), nil
}

func (c *Controller) podsForPDB(pdb *policyv1.PodDisruptionBudget) ([]*corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector: %w", err)
	}
	return c.pods.List(pdb.Namespace, sel), nil
}

// expectedPodCount returns expectedPods and desiredHealthy for pdb, and the
// names of matching pods without a controller (counted for neither when
// the budget needs controllers' scales).
func (c *Controller) expectedPodCount(ctx context.Context, pdb *policyv1.PodDisruptionBudget, pods []*corev1.Pod) (expected, desiredHealthy int32, unmanaged []string, err error) {
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		expected, unmanaged, err = c.expectedScale(ctx, pods)
		if err != nil {
			return 0, 0, nil, err
		}
		maxUnavailable, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, int(expected), true)
		if err != nil {
			return 0, 0, nil, fmt.Errorf("maxUnavailable: %w", err)
		}
		desiredHealthy = max(expected-int32(maxUnavailable), 0)
	case pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.Type == intstr.Int:
		// An absolute minimum needs no controllers: the pods present are
		// the pods expected.
		desiredHealthy = pdb.Spec.MinAvailable.IntVal
		expected = int32(len(pods))
	case pdb.Spec.MinAvailable != nil:
		expected, unmanaged, err = c.expectedScale(ctx, pods)
		if err != nil {
			return 0, 0, nil, err
		}
		minAvailable, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, int(expected), true)
		if err != nil {
			return 0, 0, nil, fmt.Errorf("minAvailable: %w", err)
		}
		desiredHealthy = int32(minAvailable)
	}
	return expected, desiredHealthy, unmanaged, nil
}

// disruptedPods keeps pdb's disruptedPods entries of pods that are not yet
// being deleted and were evicted less than DeletionTimeout ago, and returns
// when the first kept entry expires (zero if none). Expired entries earn
// the pod a NotDeleted warning.
func (c *Controller) disruptedPods(pdb *policyv1.PodDisruptionBudget, pods []*corev1.Pod, now time.Time) (map[string]metav1.Time, time.Time) {
	result := map[string]metav1.Time{}
	var recheck time.Time
	if pdb.Status.DisruptedPods == nil {
		return result, recheck
	}
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil {
			continue
		}
		at, found := pdb.Status.DisruptedPods[pod.Name]
		if !found {
			continue
		}
		expires := at.Add(DeletionTimeout)
		if expires.Before(now) {
			c.log.Info("pod was expected to be deleted but was not", "pod", pod.Namespace+"/"+pod.Name, "podDisruptionBudget", pdb.Namespace+"/"+pdb.Name)
			c.recorder.Eventf(pod, corev1.EventTypeWarning, "NotDeleted", "Pod was expected by PDB %s/%s to be deleted but it wasn't", pdb.Namespace, pdb.Name)
			continue
		}
		if recheck.IsZero() || expires.Before(recheck) {
			recheck = expires
		}
		result[pod.Name] = at
	}
	return result, recheck
}

// countHealthyPods counts the Ready pods that are not being deleted and not
// about to be (a recent eviction).
func countHealthyPods(pods []*corev1.Pod, disrupted map[string]metav1.Time, now time.Time) int32 {
	var n int32
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil {
			continue
		}
		if at, found := disrupted[pod.Name]; found && at.Add(DeletionTimeout).After(now) {
			continue
		}
		if podReady(pod) {
			n++
		}
	}
	return n
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// updateStatus writes the computed status unless it is already there.
func (c *Controller) updateStatus(ctx context.Context, pdb *policyv1.PodDisruptionBudget, currentHealthy, desiredHealthy, expected int32, disrupted map[string]metav1.Time) error {
	// A budget matching no pods allows nothing, so that when its first pods
	// appear it is safe before this controller has seen them.
	allowed := currentHealthy - desiredHealthy
	if expected <= 0 || allowed <= 0 {
		allowed = 0
	}
	st := &pdb.Status
	if st.CurrentHealthy == currentHealthy && st.DesiredHealthy == desiredHealthy &&
		st.ExpectedPods == expected && st.DisruptionsAllowed == allowed &&
		apiequality.Semantic.DeepEqual(st.DisruptedPods, disrupted) &&
		st.ObservedGeneration == pdb.Generation && conditionUpToDate(pdb) {
		return nil
	}
	updated := pdb.DeepCopy()
	updated.Status = policyv1.PodDisruptionBudgetStatus{
		CurrentHealthy:     currentHealthy,
		DesiredHealthy:     desiredHealthy,
		ExpectedPods:       expected,
		DisruptionsAllowed: allowed,
		DisruptedPods:      disrupted,
		ObservedGeneration: pdb.Generation,
		Conditions:         updated.Status.Conditions,
	}
	setDisruptionAllowedCondition(updated, c.clock.Now())
	return c.writeStatus(ctx, updated)
}

func (c *Controller) writeStatus(ctx context.Context, pdb *policyv1.PodDisruptionBudget) error {
	if _, err := c.api.Update(ctx, pdbsGVR, pdb, "status", c.opts.FieldManager); err != nil {
		return fmt.Errorf("update status of pdb %s/%s: %w", pdb.Namespace, pdb.Name, err)
	}
	return nil
}

// setDisruptionAllowedCondition sets DisruptionAllowed from
// status.disruptionsAllowed, as the API server's eviction does too.
func setDisruptionAllowedCondition(pdb *policyv1.PodDisruptionBudget, now time.Time) {
	cond := metav1.Condition{
		Type:               policyv1.DisruptionAllowedCondition,
		Status:             metav1.ConditionFalse,
		Reason:             policyv1.InsufficientPodsReason,
		ObservedGeneration: pdb.Status.ObservedGeneration,
		LastTransitionTime: metav1.NewTime(now),
	}
	if pdb.Status.DisruptionsAllowed > 0 {
		cond.Status = metav1.ConditionTrue
		cond.Reason = policyv1.SufficientPodsReason
	}
	if pdb.Status.Conditions == nil {
		pdb.Status.Conditions = []metav1.Condition{}
	}
	meta.SetStatusCondition(&pdb.Status.Conditions, cond)
}

// conditionUpToDate reports whether DisruptionAllowed agrees with the
// status and the generation.
func conditionUpToDate(pdb *policyv1.PodDisruptionBudget) bool {
	cond := meta.FindStatusCondition(pdb.Status.Conditions, policyv1.DisruptionAllowedCondition)
	if cond == nil || pdb.Status.ObservedGeneration != pdb.Generation {
		return false
	}
	if pdb.Status.DisruptionsAllowed > 0 {
		return cond.Status == metav1.ConditionTrue && cond.Reason == policyv1.SufficientPodsReason
	}
	return cond.Status == metav1.ConditionFalse && cond.Reason == policyv1.InsufficientPodsReason
}

// failSafe records that pdb's status could not be computed: no disruption
// is allowed until it can be.
func (c *Controller) failSafe(ctx context.Context, pdb *policyv1.PodDisruptionBudget, cause error) error {
	updated := pdb.DeepCopy()
	updated.Status.DisruptionsAllowed = 0
	if updated.Status.Conditions == nil {
		updated.Status.Conditions = []metav1.Condition{}
	}
	meta.SetStatusCondition(&updated.Status.Conditions, metav1.Condition{
		Type:               policyv1.DisruptionAllowedCondition,
		Status:             metav1.ConditionFalse,
		Reason:             policyv1.SyncFailedReason,
		Message:            cause.Error(),
		ObservedGeneration: updated.Status.ObservedGeneration,
		LastTransitionTime: metav1.NewTime(c.clock.Now()),
	})
	if apiequality.Semantic.DeepEqual(updated.Status, pdb.Status) {
		return nil
	}
	return c.writeStatus(ctx, updated)
}
