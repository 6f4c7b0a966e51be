package nodelifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/controllers/informer"
)

// NodeLeaseNamespace holds the nodes' heartbeat leases, named like them.
const NodeLeaseNamespace = corev1.NamespaceNodeLease

// Condition reasons and messages, in Kubernetes' words.
const (
	reasonStatusUnknown      = "NodeStatusUnknown"
	messageStatusUnknown     = "Kubelet stopped posting node status."
	reasonStatusNeverUpdated = "NodeStatusNeverUpdated"
	messageNeverUpdated      = "Kubelet never posted node status."
)

// labelExcludeDisruption keeps a node out of the zone health counts
// (upstream labelNodeDisruptionExclusion).
const labelExcludeDisruption = "node.kubernetes.io/exclude-disruption"

// watchedConditions are set to Unknown when a node goes silent.
// NetworkUnavailable is left alone: the network, not the kubelet, owns it.
var watchedConditions = []corev1.NodeConditionType{
	corev1.NodeReady,
	corev1.NodeMemoryPressure,
	corev1.NodeDiskPressure,
	corev1.NodePIDPressure,
}

// nodeHealth is what the controller last saw of a node, timed by its own
// clock.
type nodeHealth struct {
	// status is the node status last observed (or written).
	status *corev1.NodeStatus
	// probeTimestamp is when a heartbeat was last seen.
	probeTimestamp time.Time
	// readyTransitionTimestamp is when the Ready condition last changed.
	readyTransitionTimestamp time.Time
	// leaseRenewTime is the lease's spec.renewTime last seen (nil: none).
	leaseRenewTime *metav1.MicroTime
}

func (c *Controller) getHealth(name string) *nodeHealth {
	c.healthMu.RLock()
	defer c.healthMu.RUnlock()
	if h := c.health[name]; h != nil {
		cp := *h
		return &cp
	}
	return nil
}

func (c *Controller) setHealth(name string, h *nodeHealth) {
	c.healthMu.Lock()
	defer c.healthMu.Unlock()
	if h == nil {
		delete(c.health, name)
		return
	}
	c.health[name] = h
}

func getCondition(status *corev1.NodeStatus, t corev1.NodeConditionType) *corev1.NodeCondition {
	if status == nil {
		return nil
	}
	for i := range status.Conditions {
		if status.Conditions[i].Type == t {
			return &status.Conditions[i]
		}
	}
	return nil
}

// monitorNodeHealth is one pass over every node: notice new and removed
// nodes, mark silent ones Unknown, queue or remove NoExecute taints, mark
// pods of nodes that just stopped being ready not ready, and adjust the
// zones' eviction rates.
func (c *Controller) monitorNodeHealth(ctx context.Context) {
	nodes := c.nodeLister.List("", nil)
	slices.SortFunc(nodes, func(a, b *corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	c.syncKnownNodes(nodes)

	zoneConditions := map[string][]*corev1.NodeCondition{}
	for _, cached := range nodes {
		if ctx.Err() != nil {
			return
		}
		node, observed, current, err := c.updateNodeHealth(ctx, cached)
		if err != nil {
			if !apierrors.IsNotFound(err) {
				c.log.Warn("couldn't update node health; no pods will be evicted from it", "node", cached.Name, "err", err)
			}
			continue
		}
		if _, excluded := node.Labels[labelExcludeDisruption]; !excluded {
			key := zoneKey(node)
			zoneConditions[key] = append(zoneConditions[key], current)
		}
		if current == nil {
			continue
		}
		c.processTaintBasedEviction(ctx, node, current)
		switch {
		case current.Status != corev1.ConditionTrue && observed.Status == corev1.ConditionTrue:
			c.recorder.Eventf(withKind(node, nodeKind), corev1.EventTypeNormal, "NodeNotReady", "Node %s status is now: %s", node.Name, "NodeNotReady")
			fallthrough
		case c.nodesToRetry[node.Name] && current.Status != corev1.ConditionTrue:
			if err := c.markPodsNotReady(ctx, c.podsByNode.Pods(node.Name, c.podLister), node.Name); err != nil {
				c.log.Warn("couldn't mark pods not ready", "node", node.Name, "err", err)
				c.nodesToRetry[node.Name] = true
				continue
			}
		}
		delete(c.nodesToRetry, node.Name)
	}
	c.handleDisruption(ctx, zoneConditions, nodes)
}

// syncKnownNodes records nodes that appeared or went away since the last
// pass, with Kubernetes' RegisteredNode and RemovingNode events.
func (c *Controller) syncKnownNodes(nodes []*corev1.Node) {
	current := make(map[string]bool, len(nodes))
	for _, node := range nodes {
		current[node.Name] = true
		if _, known := c.knownNodes[node.Name]; !known {
			c.recorder.Eventf(withKind(node, nodeKind), corev1.EventTypeNormal, "RegisteredNode", "Node %s event: Registered Node %s in Controller", node.Name, node.Name)
			c.log.Debug("registered node", "node", node.Name)
		}
		c.knownNodes[node.Name] = node
		c.zoneFor(zoneKey(node))
	}
	for name, node := range c.knownNodes {
		if current[name] {
			continue
		}
		c.recorder.Eventf(withKind(node, nodeKind), corev1.EventTypeNormal, "RemovingNode", "Node %s event: Removing Node %s from Controller", name, name)
		delete(c.knownNodes, name)
		delete(c.nodesToRetry, name)
		c.setHealth(name, nil)
		for _, z := range c.zones {
			z.tainter.remove(name)
		}
	}
}

// updateNodeHealth runs tryUpdateNodeHealth, re-reading the node after
// write conflicts. It returns the node as it is now.
func (c *Controller) updateNodeHealth(ctx context.Context, node *corev1.Node) (*corev1.Node, corev1.NodeCondition, *corev1.NodeCondition, error) {
	node = node.DeepCopy()
	for attempt := 0; ; attempt++ {
		observed, current, err := c.tryUpdateNodeHealth(ctx, node)
		if err == nil || attempt >= maxUpdateRetries || !apierrors.IsConflict(err) {
			return node, observed, current, err
		}
		if node, err = c.getNode(ctx, node.Name); err != nil {
			return nil, observed, nil, err
		}
	}
}

// tryUpdateNodeHealth notes the node's heartbeats and, if it has been
// silent for longer than its grace period, sets its conditions to Unknown
// (modifying node). It returns the Ready condition as observed (before
// any change) and as it is now (nil if the node has none).
func (c *Controller) tryUpdateNodeHealth(ctx context.Context, node *corev1.Node) (corev1.NodeCondition, *corev1.NodeCondition, error) {
	health := c.getHealth(node.Name)
	now := c.clock.Now()

	var (
		observed    corev1.NodeCondition
		gracePeriod time.Duration
	)
	current := getCondition(&node.Status, corev1.NodeReady)
	if current == nil {
		// Never posted: time it from the node's creation.
		observed = corev1.NodeCondition{
			Type:               corev1.NodeReady,
			Status:             corev1.ConditionUnknown,
			LastHeartbeatTime:  node.CreationTimestamp,
			LastTransitionTime: node.CreationTimestamp,
		}
		gracePeriod = c.opts.StartupGracePeriod
		if health != nil {
			health.status = &node.Status
		} else {
			health = &nodeHealth{
				status:                   &node.Status,
				probeTimestamp:           node.CreationTimestamp.Time,
				readyTransitionTimestamp: node.CreationTimestamp.Time,
			}
		}
	} else {
		observed = *current
		gracePeriod = c.opts.GracePeriod
	}

	var saved *corev1.NodeCondition
	var savedRenew *metav1.MicroTime
	if health != nil {
		saved = getCondition(health.status, corev1.NodeReady)
		savedRenew = health.leaseRenewTime
	}
	switch {
	case health == nil:
		// First sight (or a restart of the controller): give it a full
		// grace period from now.
		health = &nodeHealth{status: &node.Status, probeTimestamp: now, readyTransitionTimestamp: now}
	case saved == nil && current != nil, saved != nil && current == nil:
		health = &nodeHealth{status: &node.Status, probeTimestamp: now, readyTransitionTimestamp: now, leaseRenewTime: savedRenew}
	case saved != nil && current != nil && !saved.LastHeartbeatTime.Equal(&current.LastHeartbeatTime):
		transition := health.readyTransitionTimestamp
		if !saved.LastTransitionTime.Equal(&current.LastTransitionTime) {
			transition = now
		}
		health = &nodeHealth{status: &node.Status, probeTimestamp: now, readyTransitionTimestamp: transition, leaseRenewTime: savedRenew}
	}
	// A renewed lease is a heartbeat too.
	if lease, ok := c.leaseLister.Get(NodeLeaseNamespace, node.Name); ok && lease.Spec.RenewTime != nil &&
		(savedRenew == nil || savedRenew.Before(lease.Spec.RenewTime)) {
		health.leaseRenewTime = lease.Spec.RenewTime.DeepCopy()
		health.probeTimestamp = now
	}
	defer func() { c.setHealth(node.Name, health) }()

	if !now.After(health.probeTimestamp.Add(gracePeriod)) {
		return observed, current, nil
	}
	transitionTime := metav1.NewTime(now)
	for _, t := range watchedConditions {
		cond := getCondition(&node.Status, t)
		if cond == nil {
			node.Status.Conditions = append(node.Status.Conditions, corev1.NodeCondition{
				Type:               t,
				Status:             corev1.ConditionUnknown,
				Reason:             reasonStatusNeverUpdated,
				Message:            messageNeverUpdated,
				LastHeartbeatTime:  node.CreationTimestamp,
				LastTransitionTime: transitionTime,
			})
			continue
		}
		if cond.Status != corev1.ConditionUnknown {
			cond.Status = corev1.ConditionUnknown
			cond.Reason = reasonStatusUnknown
			cond.Message = messageStatusUnknown
			cond.LastTransitionTime = transitionTime
		}
	}
	current = getCondition(&node.Status, corev1.NodeReady)
	if apiequality.Semantic.DeepEqual(current, &observed) {
		return observed, current, nil
	}
	c.log.Info("node stopped posting status", "node", node.Name, "silentFor", now.Sub(health.probeTimestamp).Round(time.Second))
	updated, err := c.updateNode(ctx, node, "status")
	if err != nil {
		return observed, current, fmt.Errorf("set node %s conditions unknown: %w", node.Name, err)
	}
	*node = *updated
	health = &nodeHealth{
		status:                   &updated.Status,
		probeTimestamp:           health.probeTimestamp,
		readyTransitionTimestamp: now,
		leaseRenewTime:           health.leaseRenewTime,
	}
	return observed, getCondition(&node.Status, corev1.NodeReady), nil
}

// reconcilePod marks a pod newly bound to a not-ready node not ready.
func (c *Controller) reconcilePod(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	pod, ok := c.podLister.Get(ns, name)
	if !ok || pod.Spec.NodeName == "" {
		return nil
	}
	health := c.getHealth(pod.Spec.NodeName)
	if health == nil {
		// Not monitored yet, or gone.
		return nil
	}
	if _, ok := c.nodeLister.Get("", pod.Spec.NodeName); !ok {
		return nil
	}
	ready := getCondition(health.status, corev1.NodeReady)
	if ready == nil || ready.Status == corev1.ConditionTrue {
		return nil
	}
	return c.markPodsNotReady(ctx, []*corev1.Pod{pod}, pod.Spec.NodeName)
}

// markPodsNotReady sets the Ready condition of the pods on nodeName to
// False (upstream MarkPodsNotReady), so that endpoints stop sending them
// traffic while their node cannot say how they are.
func (c *Controller) markPodsNotReady(ctx context.Context, pods []*corev1.Pod, nodeName string) error {
	var errs []error
	for _, pod := range pods {
		if pod.Spec.NodeName != nodeName {
			continue
		}
		i := slices.IndexFunc(pod.Status.Conditions, func(cond corev1.PodCondition) bool { return cond.Type == corev1.PodReady })
		if i < 0 || pod.Status.Conditions[i].Status == corev1.ConditionFalse {
			continue
		}
		updated := pod.DeepCopy()
		updated.Status.Conditions[i].Status = corev1.ConditionFalse
		updated.Status.Conditions[i].LastTransitionTime = c.now()
		if _, err := c.api.Update(ctx, podsGVR, updated, "status", c.opts.FieldManager); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			errs = append(errs, fmt.Errorf("mark pod %s/%s not ready: %w", pod.Namespace, pod.Name, err))
			continue
		}
		c.recorder.Eventf(withKind(pod, podKind), corev1.EventTypeWarning, "NodeNotReady", "Node is not ready")
	}
	return errors.Join(errs...)
}
