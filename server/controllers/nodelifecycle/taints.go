package nodelifecycle

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// The NoExecute taints the controller owns.
var (
	notReadyTaint    = corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute}
	unreachableTaint = corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}
)

// conditionTaints maps node conditions in a given status to the key of
// the NoSchedule taint they earn (upstream nodeConditionToTaintKeyStatusMap).
var conditionTaints = map[corev1.NodeConditionType]map[corev1.ConditionStatus]string{
	corev1.NodeReady: {
		corev1.ConditionFalse:   corev1.TaintNodeNotReady,
		corev1.ConditionUnknown: corev1.TaintNodeUnreachable,
	},
	corev1.NodeMemoryPressure:     {corev1.ConditionTrue: corev1.TaintNodeMemoryPressure},
	corev1.NodeDiskPressure:       {corev1.ConditionTrue: corev1.TaintNodeDiskPressure},
	corev1.NodeNetworkUnavailable: {corev1.ConditionTrue: corev1.TaintNodeNetworkUnavailable},
	corev1.NodePIDPressure:        {corev1.ConditionTrue: corev1.TaintNodePIDPressure},
}

// noScheduleKeys are the NoSchedule taint keys the controller owns.
var noScheduleKeys = map[string]bool{
	corev1.TaintNodeNotReady:           true,
	corev1.TaintNodeUnreachable:        true,
	corev1.TaintNodeMemoryPressure:     true,
	corev1.TaintNodeDiskPressure:       true,
	corev1.TaintNodeNetworkUnavailable: true,
	corev1.TaintNodePIDPressure:        true,
	corev1.TaintNodeUnschedulable:      true,
}

// sameTaint compares taints as the API identifies them: by key and effect.
func sameTaint(a, b *corev1.Taint) bool { return a.Key == b.Key && a.Effect == b.Effect }

func hasTaint(taints []corev1.Taint, t *corev1.Taint) bool {
	return slices.ContainsFunc(taints, func(x corev1.Taint) bool { return sameTaint(&x, t) })
}

// wantedNoScheduleTaints are the NoSchedule taints node's conditions and
// spec.unschedulable call for.
func wantedNoScheduleTaints(node *corev1.Node) []corev1.Taint {
	var taints []corev1.Taint
	for _, cond := range node.Status.Conditions {
		if key, ok := conditionTaints[cond.Type][cond.Status]; ok {
			taints = append(taints, corev1.Taint{Key: key, Effect: corev1.TaintEffectNoSchedule})
		}
	}
	if node.Spec.Unschedulable {
		taints = append(taints, corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule})
	}
	return taints
}

// reconcileNoScheduleTaints makes the node's controller-owned NoSchedule
// taints match its conditions and cordon (upstream
// doNoScheduleTaintingPass).
func (c *Controller) reconcileNoScheduleTaints(ctx context.Context, name string) error {
	node, ok := c.nodeLister.Get("", name)
	if !ok {
		return nil
	}
	wanted := wantedNoScheduleTaints(node)
	var add, remove []corev1.Taint
	for _, t := range wanted {
		if !hasTaint(node.Spec.Taints, &t) {
			add = append(add, t)
		}
	}
	for _, t := range node.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule && noScheduleKeys[t.Key] && !hasTaint(wanted, &t) {
			remove = append(remove, t)
		}
	}
	if len(add) == 0 && len(remove) == 0 {
		return nil
	}
	if err := c.swapTaints(ctx, name, add, remove); err != nil {
		return fmt.Errorf("update NoSchedule taints of node %s: %w", name, err)
	}
	return nil
}

// swapTaints adds and removes taints on the node as it is in the API
// (re-read after conflicts). Added taints get timeAdded, which the taint
// eviction controller's users read.
func (c *Controller) swapTaints(ctx context.Context, name string, add, remove []corev1.Taint) error {
	for attempt := 0; ; attempt++ {
		node, err := c.getNode(ctx, name)
		if err != nil {
			return err
		}
		taints := make([]corev1.Taint, 0, len(node.Spec.Taints)+len(add))
		changed := false
		for _, t := range node.Spec.Taints {
			if hasTaint(remove, &t) {
				changed = true
				continue
			}
			taints = append(taints, t)
		}
		now := c.now()
		for _, t := range add {
			if hasTaint(taints, &t) {
				continue
			}
			t.TimeAdded = now.DeepCopy()
			taints = append(taints, t)
			changed = true
		}
		if !changed {
			return nil
		}
		updated := node.DeepCopy()
		updated.Spec.Taints = taints
		if len(taints) == 0 {
			updated.Spec.Taints = nil
		}
		_, err = c.updateNode(ctx, updated, "")
		if err == nil || attempt >= maxUpdateRetries || !apierrors.IsConflict(err) {
			return err
		}
	}
}

// processTaintBasedEviction queues a not-ready node for its NoExecute
// taint, swaps the taint at once if the node already has the other one,
// or removes both when the node is ready.
func (c *Controller) processTaintBasedEviction(ctx context.Context, node *corev1.Node, ready *corev1.NodeCondition) {
	switch ready.Status {
	case corev1.ConditionFalse:
		if hasTaint(node.Spec.Taints, &unreachableTaint) {
			if err := c.swapTaints(ctx, node.Name, []corev1.Taint{notReadyTaint}, []corev1.Taint{unreachableTaint}); err != nil {
				c.log.Warn("couldn't swap the unreachable taint for not-ready; will retry", "node", node.Name, "err", err)
			}
		} else if !hasTaint(node.Spec.Taints, &notReadyTaint) {
			c.markNodeForTainting(node)
		}
	case corev1.ConditionUnknown:
		if hasTaint(node.Spec.Taints, &notReadyTaint) {
			if err := c.swapTaints(ctx, node.Name, []corev1.Taint{unreachableTaint}, []corev1.Taint{notReadyTaint}); err != nil {
				c.log.Warn("couldn't swap the not-ready taint for unreachable; will retry", "node", node.Name, "err", err)
			}
		} else if !hasTaint(node.Spec.Taints, &unreachableTaint) {
			c.markNodeForTainting(node)
		}
	case corev1.ConditionTrue:
		if err := c.markNodeAsReachable(ctx, node); err != nil {
			c.log.Warn("couldn't remove NoExecute taints of a ready node; will retry", "node", node.Name, "err", err)
		} else {
			c.log.Debug("node is ready", "node", node.Name)
		}
	}
}

// markNodeForTainting queues the node in its zone's rate-limited taint
// queue.
func (c *Controller) markNodeForTainting(node *corev1.Node) {
	if c.zoneFor(zoneKey(node)).tainter.add(node.Name) {
		c.log.Info("node is not ready; queued for its NoExecute taint", "node", node.Name)
	}
}

// markNodeAsReachable removes the node's NoExecute taints and takes it
// out of the taint queues.
func (c *Controller) markNodeAsReachable(ctx context.Context, node *corev1.Node) error {
	for _, z := range c.zones {
		z.tainter.remove(node.Name)
	}
	if !hasTaint(node.Spec.Taints, &notReadyTaint) && !hasTaint(node.Spec.Taints, &unreachableTaint) {
		return nil
	}
	if err := c.swapTaints(ctx, node.Name, nil, []corev1.Taint{notReadyTaint, unreachableTaint}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	c.log.Info("removed NoExecute taints", "node", node.Name)
	return nil
}

// doNoExecuteTaintingPass taints the queued nodes as fast as their zones'
// rate limits allow.
func (c *Controller) doNoExecuteTaintingPass(ctx context.Context) {
	for _, z := range c.zones {
		z.tainter.try(c.clock.Now(), func(name string) bool {
			node, ok := c.nodeLister.Get("", name)
			if !ok {
				return true
			}
			ready := getCondition(&node.Status, corev1.NodeReady)
			if ready == nil {
				c.log.Warn("queued node has no Ready condition", "node", name)
				return true
			}
			var add, remove corev1.Taint
			switch ready.Status {
			case corev1.ConditionFalse:
				add, remove = notReadyTaint, unreachableTaint
			case corev1.ConditionUnknown:
				add, remove = unreachableTaint, notReadyTaint
			default:
				// Ready again since it was queued.
				return true
			}
			if err := c.swapTaints(ctx, name, []corev1.Taint{add}, []corev1.Taint{remove}); err != nil {
				if apierrors.IsNotFound(err) {
					return true
				}
				c.log.Warn("couldn't add NoExecute taint; will retry", "node", name, "taint", add.Key, "err", err)
				return false
			}
			c.log.Info("added NoExecute taint", "node", name, "taint", add.Key)
			return true
		})
	}
}
