package daemonset

import (
	"bytes"
	"context"
	"errors"
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
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/orch-dev/orch/server/controllers/history"
)

// manage creates daemon pods on eligible nodes that have none and deletes
// those that must go: on ineligible or vanished nodes, failed ones, and
// duplicates. changed reports whether it wrote anything; retry asks for a
// later look (failed pods are replaced after a delay).
func (c *Controller) manage(ctx context.Context, ds *appsv1.DaemonSet, nodes []*corev1.Node, byNode map[string][]*corev1.Pod, hash string) (changed bool, retry time.Duration, err error) {
	var createOn, toDelete []string
	surge := maxSurge(ds, 1) > 0
	known := make(map[string]bool, len(nodes))
	for _, node := range nodes {
		known[node.Name] = true
		pods := byNode[node.Name]
		shouldRun, shouldContinue := nodeShouldRunDaemonPod(node, ds)
		switch {
		case shouldRun && len(pods) == 0:
			createOn = append(createOn, node.Name)
		case shouldContinue:
			var running []*corev1.Pod
			for _, p := range pods {
				if p.DeletionTimestamp != nil {
					continue
				}
				if p.Status.Phase == corev1.PodFailed {
					c.event(ds, corev1.EventTypeWarning, "FailedDaemonPod", "Found failed daemon pod %s/%s on node %s, will try to kill it", p.Namespace, p.Name, node.Name)
					toDelete = append(toDelete, p.Name)
					retry = failedPodRetryDelay
					continue
				}
				running = append(running, p)
			}
			toDelete = append(toDelete, excessPods(ds, running, hash, surge, c.now())...)
		case len(pods) > 0:
			for _, p := range pods {
				if p.DeletionTimestamp == nil {
					toDelete = append(toDelete, p.Name)
				}
			}
		}
	}
	// Pods for nodes that no longer exist.
	for node, pods := range byNode {
		if known[node] {
			continue
		}
		for _, p := range pods {
			if p.DeletionTimestamp == nil {
				toDelete = append(toDelete, p.Name)
			}
		}
	}
	if len(createOn) == 0 && len(toDelete) == 0 {
		return false, retry, nil
	}
	return true, retry, c.syncNodes(ctx, ds, createOn, toDelete, hash)
}

// excessPods are the running daemon pods on one node to delete. Without
// surge only the oldest stays. With surge an old and a new pod may run
// together while the new one is not yet available and the old one is
// ready; otherwise the new one stays.
func excessPods(ds *appsv1.DaemonSet, running []*corev1.Pod, hash string, surge bool, now time.Time) []string {
	if len(running) <= 1 {
		return nil
	}
	slices.SortStableFunc(running, byCreationAndPhase)
	var out []string
	if !surge {
		for _, p := range running[1:] {
			out = append(out, p.Name)
		}
		return out
	}
	var oldestNew, oldestOld *corev1.Pod
	for _, p := range running {
		if p.Labels[revisionHashLabel] == hash {
			if oldestNew == nil {
				oldestNew = p
				continue
			}
		} else if oldestOld == nil {
			oldestOld = p
			continue
		}
		out = append(out, p.Name)
	}
	if oldestNew != nil && oldestOld != nil {
		if !podReady(oldestOld) || podAvailable(oldestNew, ds.Spec.MinReadySeconds, now) {
			out = append(out, oldestOld.Name)
		}
	}
	return out
}

// byCreationAndPhase puts older pods first, and among equals scheduled and
// running ones before others.
func byCreationAndPhase(a, b *corev1.Pod) int {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		if a.CreationTimestamp.Before(&b.CreationTimestamp) {
			return -1
		}
		return 1
	}
	rank := func(p *corev1.Pod) int {
		switch p.Status.Phase {
		case corev1.PodRunning:
			return 0
		case corev1.PodPending:
			return 1
		}
		return 2
	}
	return rank(a) - rank(b)
}

// syncNodes creates a pod on each node of createOn and deletes the pods
// named in toDelete, in slow-start batches as Kubernetes does so that a
// failing API is not flooded.
func (c *Controller) syncNodes(ctx context.Context, ds *appsv1.DaemonSet, createOn, toDelete []string, hash string) error {
	key := ds.Namespace + "/" + ds.Name
	var errs []error
	err := slowStartBatch(len(createOn), func(i int) error {
		pod := newPod(ds, createOn[i], hash, c.podSuffix())
		c.expect.ExpectCreate(key, pod.Name, c.now())
		_, err := c.api.Create(ctx, podsGVR, pod, c.opts.FieldManager)
		if err != nil {
			c.expect.ObserveCreate(key, pod.Name)
			if apierrors.IsAlreadyExists(err) {
				// A random suffix taken: the next sync picks another.
				return nil
			}
			c.event(ds, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
			return fmt.Errorf("create daemon pod for node %s: %w", createOn[i], err)
		}
		c.event(ds, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %v", pod.Name)
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range toDelete {
		c.expect.ExpectDelete(key, name, c.now())
		_, err := c.api.Delete(ctx, podsGVR, ds.Namespace, name, nil)
		if err != nil {
			c.expect.ObserveDelete(key, name)
			if apierrors.IsNotFound(err) {
				continue
			}
			c.event(ds, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
			errs = append(errs, fmt.Errorf("delete daemon pod %s/%s: %w", ds.Namespace, name, err))
			continue
		}
		c.event(ds, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %v", name)
	}
	return errors.Join(errs...)
}

// slowStartBatch calls fn for 0..n-1 in batches of 1, 2, 4, ... run
// concurrently, stopping after the first batch with an error.
func slowStartBatch(n int, fn func(i int) error) error {
	done := 0
	for batch := 1; done < n; batch *= 2 {
		size := min(batch, n-done)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		for i := done; i < done+size; i++ {
			wg.Go(func() {
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		done += size
	}
	return nil
}

// maxPodNameBase keeps <base><5 random characters> a DNS label, as the API
// server's generateName does.
const maxPodNameBase = 58

func randomSuffix() string { return rand.String(5) }

// newPod is ds's pod for nodeName at revision hash. The name is chosen
// here, the way generateName would, so that the controller knows it before
// the create returns.
func newPod(ds *appsv1.DaemonSet, nodeName, hash, suffix string) *corev1.Pod {
	tmpl := ds.Spec.Template.DeepCopy()
	base := ds.Name + "-"
	if len(base) > maxPodNameBase {
		base = base[:maxPodNameBase]
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            base + suffix,
			GenerateName:    base,
			Namespace:       ds.Namespace,
			Labels:          tmpl.Labels,
			Annotations:     tmpl.Annotations,
			Finalizers:      tmpl.Finalizers,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ds, kind)},
		},
		Spec: tmpl.Spec,
	}
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[revisionHashLabel] = hash
	pod.Labels[templateGenerationLabel] = fmt.Sprint(ds.Generation)
	pod.Spec.Affinity = nodeNameAffinity(pod.Spec.Affinity, nodeName)
	addDaemonTolerations(&pod.Spec)
	return pod
}

// constructHistory returns the revision of ds's current template, creating
// it or renumbering an old equal one (a rollback) so that it is the
// newest, and the other revisions ds owns.
func (c *Controller) constructHistory(ctx context.Context, ds *appsv1.DaemonSet, sel labels.Selector) (cur *appsv1.ControllerRevision, old []*appsv1.ControllerRevision, err error) {
	revs, err := c.history.Claim(ctx, ds, kind, sel)
	if err != nil {
		return nil, nil, fmt.Errorf("claim revisions of daemon set %s/%s: %w", ds.Namespace, ds.Name, err)
	}
	data, err := history.TemplatePatch(&ds.Spec.Template)
	if err != nil {
		return nil, nil, fmt.Errorf("daemon set %s/%s: %w", ds.Namespace, ds.Name, err)
	}
	for _, r := range revs {
		switch {
		case !bytes.Equal(r.Data.Raw, data):
			old = append(old, r)
		case cur == nil || r.Revision > cur.Revision:
			if cur != nil {
				old = append(old, cur)
			}
			cur = r
		default:
			old = append(old, r)
		}
	}
	next := history.Next(old)
	if cur == nil {
		count := int32(0)
		if ds.Status.CollisionCount != nil {
			count = *ds.Status.CollisionCount
		}
		before := count
		rev := history.New(ds, kind, ds.Spec.Template.Labels, data, next, &count)
		cur, err = c.history.Create(ctx, ds, rev, &count)
		if count != before {
			// Remember the collision so that the next hash differs.
			if uerr := c.setCollisionCount(ctx, ds, count); uerr != nil {
				err = errors.Join(err, uerr)
			}
		}
		if err != nil {
			return nil, nil, err
		}
		return cur, old, nil
	}
	if cur.Revision < next {
		cur, err = c.history.UpdateRevision(ctx, cur, next)
		if err != nil {
			return nil, nil, err
		}
	}
	return cur, old, nil
}

func (c *Controller) setCollisionCount(ctx context.Context, ds *appsv1.DaemonSet, count int32) error {
	updated := ds.DeepCopy()
	updated.Status.CollisionCount = &count
	if _, err := c.api.Update(ctx, daemonSetsGVR, updated, "status", c.opts.FieldManager); err != nil {
		return fmt.Errorf("update collision count of daemon set %s/%s: %w", ds.Namespace, ds.Name, err)
	}
	return nil
}

// cleanupHistory deletes the oldest revisions no pod uses beyond
// revisionHistoryLimit.
func (c *Controller) cleanupHistory(ctx context.Context, ds *appsv1.DaemonSet, pods []*corev1.Pod, cur *appsv1.ControllerRevision, old []*appsv1.ControllerRevision) error {
	limit := int32(defaultRevisionHistory)
	if ds.Spec.RevisionHistoryLimit != nil {
		limit = *ds.Spec.RevisionHistoryLimit
	}
	if len(old) <= int(limit) {
		return nil
	}
	inUse := map[string]bool{cur.Labels[revisionHashLabel]: true}
	for _, p := range pods {
		if h := p.Labels[revisionHashLabel]; h != "" {
			inUse[h] = true
		}
	}
	return c.history.Truncate(ctx, old, func(r *appsv1.ControllerRevision) bool {
		return r.Name == cur.Name || inUse[r.Labels[revisionHashLabel]]
	}, limit)
}

// updateStatus writes ds's status as Kubernetes counts it. retry asks for a
// later look when a pod becomes available only after minReadySeconds.
func (c *Controller) updateStatus(ctx context.Context, ds *appsv1.DaemonSet, nodes []*corev1.Node, byNode map[string][]*corev1.Pod, hash string) (retry time.Duration, err error) {
	now := c.now()
	st := appsv1.DaemonSetStatus{
		ObservedGeneration: ds.Generation,
		CollisionCount:     ds.Status.CollisionCount,
		Conditions:         ds.Status.Conditions,
	}
	for _, node := range nodes {
		shouldRun, _ := nodeShouldRunDaemonPod(node, ds)
		pods := byNode[node.Name]
		if !shouldRun {
			if len(pods) > 0 {
				st.NumberMisscheduled++
			}
			continue
		}
		st.DesiredNumberScheduled++
		if len(pods) == 0 {
			continue
		}
		st.CurrentNumberScheduled++
		sorted := slices.Clone(pods)
		slices.SortStableFunc(sorted, byCreationAndPhase)
		pod := sorted[0]
		if podReady(pod) {
			st.NumberReady++
			if podAvailable(pod, ds.Spec.MinReadySeconds, now) {
				st.NumberAvailable++
			} else {
				retry = minPositive(retry, availableIn(pod, ds.Spec.MinReadySeconds, now))
			}
		}
		if pod.Labels[revisionHashLabel] == hash {
			st.UpdatedNumberScheduled++
		}
	}
	st.NumberUnavailable = max(st.DesiredNumberScheduled-st.NumberAvailable, 0)
	if apiequality.Semantic.DeepEqual(st, ds.Status) {
		return retry, nil
	}
	updated := ds.DeepCopy()
	updated.Status = st
	if _, err := c.api.Update(ctx, daemonSetsGVR, updated, "status", c.opts.FieldManager); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("update status of daemon set %s/%s: %w", ds.Namespace, ds.Name, err)
	}
	return retry, nil
}

// maxSurge and maxUnavailable of ds's rolling update, scaled to desired
// pods as Kubernetes does (surge rounds up, unavailable down); with both 0
// unavailable is 1.
func maxSurge(ds *appsv1.DaemonSet, desired int) int {
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil || ru.MaxSurge == nil {
		return 0
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, desired, true)
	if err != nil {
		return 0
	}
	return n
}

func maxUnavailable(ds *appsv1.DaemonSet, desired int) int {
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	unavailable := intstr.FromInt32(1)
	if ru != nil && ru.MaxUnavailable != nil {
		unavailable = *ru.MaxUnavailable
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(&unavailable, desired, false)
	if err != nil {
		n = 1
	}
	if n == 0 && maxSurge(ds, desired) == 0 {
		n = 1
	}
	return n
}

func podReady(pod *corev1.Pod) bool {
	return readyCondition(pod) != nil
}

func readyCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		c := &pod.Status.Conditions[i]
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return c
		}
	}
	return nil
}

// podAvailable: ready for at least minReadySeconds.
func podAvailable(pod *corev1.Pod, minReadySeconds int32, now time.Time) bool {
	return podReady(pod) && availableIn(pod, minReadySeconds, now) <= 0
}

// availableIn is how long until a ready pod counts as available.
func availableIn(pod *corev1.Pod, minReadySeconds int32, now time.Time) time.Duration {
	c := readyCondition(pod)
	if c == nil || minReadySeconds == 0 {
		return 0
	}
	return c.LastTransitionTime.Add(time.Duration(minReadySeconds) * time.Second).Sub(now)
}
