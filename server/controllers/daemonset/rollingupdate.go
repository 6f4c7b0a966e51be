package daemonset

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// rollingUpdate replaces pods of old revisions, as Kubernetes'
// rollingUpdate does. Without surge it deletes old pods (manage then
// creates new ones): unavailable old pods at once, available ones only as
// long as fewer than maxUnavailable of the nodes' daemon pods are
// unavailable. With surge it starts a new pod next to an old one (manage
// deletes the old one once the new one is available): at once where the
// old pod is unavailable, elsewhere up to maxSurge new pods at a time.
// retry asks for a later look when pods become available by time alone.
func (c *Controller) rollingUpdate(ctx context.Context, ds *appsv1.DaemonSet, nodes []*corev1.Node, byNode map[string][]*corev1.Pod, hash string) (retry time.Duration, err error) {
	now := c.now()
	desired := 0
	var eligible []*corev1.Node
	for _, node := range nodes {
		if shouldRun, shouldContinue := nodeShouldRunDaemonPod(node, ds); shouldContinue {
			eligible = append(eligible, node)
			if shouldRun {
				desired++
			}
		}
	}
	available := func(p *corev1.Pod) bool {
		if podAvailable(p, ds.Spec.MinReadySeconds, now) {
			return true
		}
		if podReady(p) {
			retry = minPositive(retry, availableIn(p, ds.Spec.MinReadySeconds, now))
		}
		return false
	}
	surge, unavailable := maxSurge(ds, desired), maxUnavailable(ds, desired)

	if surge == 0 {
		numUnavailable := 0
		var replaceNow, candidates []string
		for _, node := range eligible {
			newPod, oldPod, ok := updatedPodsOnNode(byNode[node.Name], hash)
			switch {
			case !ok:
				// manage cleans up duplicates first.
				numUnavailable++
			case newPod == nil && oldPod == nil, newPod != nil && oldPod != nil:
				// manage creates or deletes the right pod.
				numUnavailable++
			case newPod != nil:
				if !available(newPod) {
					numUnavailable++
				}
			default:
				if !available(oldPod) {
					replaceNow = append(replaceNow, oldPod.Name)
				} else {
					candidates = append(candidates, oldPod.Name)
				}
			}
		}
		budget := min(max(unavailable-numUnavailable, 0), len(candidates))
		toDelete := append(replaceNow, candidates[:budget]...)
		if len(toDelete) == 0 {
			return retry, nil
		}
		return retry, c.syncNodes(ctx, ds, nil, toDelete, hash)
	}

	numSurge := 0
	var createNow, candidates []string
	for _, node := range eligible {
		newPod, oldPod, ok := updatedPodsOnNode(byNode[node.Name], hash)
		switch {
		case !ok:
			numSurge++
		case oldPod == nil:
			// Up to date, or nothing yet (manage creates it).
		case newPod == nil:
			shouldRun, _ := nodeShouldRunDaemonPod(node, ds)
			switch {
			case !available(oldPod):
				createNow = append(createNow, node.Name)
			case shouldRun:
				candidates = append(candidates, node.Name)
			}
		default:
			// The new pod is the surge; manage deletes the old one once
			// the new one is available.
			numSurge++
			available(newPod)
		}
	}
	budget := min(max(surge-numSurge, 0), len(candidates))
	createOn := append(createNow, candidates[:budget]...)
	if len(createOn) == 0 {
		return retry, nil
	}
	return retry, c.syncNodes(ctx, ds, createOn, nil, hash)
}

// updatedPodsOnNode finds the one pod of the current revision and the one
// of another revision among a node's pods that are not being deleted; ok
// is false when there are several of either.
func updatedPodsOnNode(pods []*corev1.Pod, hash string) (newPod, oldPod *corev1.Pod, ok bool) {
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		if p.Labels[revisionHashLabel] == hash {
			if newPod != nil {
				return nil, nil, false
			}
			newPod = p
		} else {
			if oldPod != nil {
				return nil, nil, false
			}
			oldPod = p
		}
	}
	return newPod, oldPod, true
}
