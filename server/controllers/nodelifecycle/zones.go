package nodelifecycle

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// zoneState is the health of a zone (upstream ZoneState).
type zoneState string

const (
	stateInitial           zoneState = "Initial"
	stateNormal            zoneState = "Normal"
	stateFullDisruption    zoneState = "FullDisruption"
	statePartialDisruption zoneState = "PartialDisruption"
)

// zone is one failure domain: its state and its queue of nodes waiting
// for a NoExecute taint.
type zone struct {
	state   zoneState
	tainter *taintQueue
}

// zoneKey identifies a node's failure domain by its region and zone labels
// ("" for nodes without them), as upstream GetZoneKey.
func zoneKey(node *corev1.Node) string {
	region := node.Labels[corev1.LabelTopologyRegion]
	if region == "" {
		region = node.Labels[corev1.LabelFailureDomainBetaRegion]
	}
	zone := node.Labels[corev1.LabelTopologyZone]
	if zone == "" {
		zone = node.Labels[corev1.LabelFailureDomainBetaZone]
	}
	if region == "" && zone == "" {
		return ""
	}
	return region + ":\x00:" + zone
}

// zoneFor returns the zone called key, creating it at the normal rate.
func (c *Controller) zoneFor(key string) *zone {
	z := c.zones[key]
	if z == nil {
		z = &zone{state: stateInitial, tainter: newTaintQueue(c.opts.EvictionRate, c.clock.Now())}
		c.zones[key] = z
	}
	return z
}

// computeZoneState classifies a zone by its nodes' Ready conditions (nil:
// none): fully disrupted when none is ready, partially when more than two
// and at least UnhealthyZoneThreshold of them are not.
func (c *Controller) computeZoneState(conditions []*corev1.NodeCondition) zoneState {
	ready, notReady := 0, 0
	for _, cond := range conditions {
		if cond != nil && cond.Status == corev1.ConditionTrue {
			ready++
		} else {
			notReady++
		}
	}
	switch {
	case ready == 0 && notReady > 0:
		return stateFullDisruption
	case notReady > 2 && float64(notReady)/float64(notReady+ready) >= c.opts.UnhealthyZoneThreshold:
		return statePartialDisruption
	}
	return stateNormal
}

// zoneRate is the taint rate of a zone of size nodes in state.
func (c *Controller) zoneRate(state zoneState, size int) float64 {
	switch state {
	case statePartialDisruption:
		// A large cluster keeps evicting slowly; a small one stops, since
		// most of it is gone and there is nowhere to reschedule.
		if size > c.opts.LargeClusterThreshold {
			return c.opts.SecondaryEvictionRate
		}
		return 0
	default:
		// A fully disrupted zone among healthy ones is evicted at the
		// normal rate: its pods have somewhere else to go.
		return c.opts.EvictionRate
	}
}

// handleDisruption updates the zones' states and rates (upstream
// handleDisruption). When every zone is fully disrupted the controller
// stops evicting and lifts the NoExecute taints it set; when a node comes
// back it resumes.
func (c *Controller) handleDisruption(ctx context.Context, zoneConditions map[string][]*corev1.NodeCondition, nodes []*corev1.Node) {
	newStates := make(map[string]zoneState, len(zoneConditions))
	allAreFullyDisrupted := true
	for key, conds := range zoneConditions {
		newStates[key] = c.computeZoneState(conds)
		if newStates[key] != stateFullDisruption {
			allAreFullyDisrupted = false
		}
	}
	allWasFullyDisrupted := true
	for key, z := range c.zones {
		if _, ok := zoneConditions[key]; !ok {
			// No (monitored) node left in it.
			if z.tainter.len() == 0 {
				delete(c.zones, key)
			}
			continue
		}
		if z.state != stateFullDisruption {
			allWasFullyDisrupted = false
		}
	}
	if allAreFullyDisrupted && allWasFullyDisrupted {
		return
	}
	now := c.clock.Now()
	switch {
	case allAreFullyDisrupted:
		c.log.Warn("all nodes are not ready; entering disruption mode: no evictions until a node is ready")
		for _, node := range nodes {
			if err := c.markNodeAsReachable(ctx, node); err != nil {
				c.log.Warn("couldn't remove NoExecute taints", "node", node.Name, "err", err)
			}
		}
		for _, z := range c.zones {
			z.tainter.setRate(0, now)
			z.state = stateFullDisruption
		}
	case allWasFullyDisrupted:
		c.log.Info("some nodes are ready again; leaving disruption mode")
		// Give every node a fresh grace period: their silence may have
		// been ours.
		for _, node := range nodes {
			if h := c.getHealth(node.Name); h != nil {
				h.probeTimestamp, h.readyTransitionTimestamp = now, now
				c.setHealth(node.Name, h)
			}
		}
		for key, z := range c.zones {
			state := newStates[key]
			z.tainter.setRate(c.zoneRate(state, len(zoneConditions[key])), now)
			z.state = state
		}
	default:
		for key, z := range c.zones {
			state, ok := newStates[key]
			if !ok || state == z.state {
				continue
			}
			c.log.Info("zone changed state", "zone", key, "state", state)
			z.tainter.setRate(c.zoneRate(state, len(zoneConditions[key])), now)
			z.state = state
		}
	}
}

// taintQueue is a zone's FIFO of node names waiting for a NoExecute taint,
// drained through a token bucket of burst 1 (upstream
// RateLimitedTimedQueue with a token bucket limiter).
type taintQueue struct {
	order  []string
	queued map[string]bool

	rate   float64 // tokens per second; 0 stops the queue
	tokens float64
	last   time.Time
}

func newTaintQueue(rate float64, now time.Time) *taintQueue {
	return &taintQueue{queued: map[string]bool{}, rate: rate, tokens: 1, last: now}
}

// add queues name; it reports false if it was queued already.
func (q *taintQueue) add(name string) bool {
	if q.queued[name] {
		return false
	}
	q.queued[name] = true
	q.order = append(q.order, name)
	return true
}

func (q *taintQueue) remove(name string) {
	if !q.queued[name] {
		return
	}
	delete(q.queued, name)
	for i, n := range q.order {
		if n == name {
			q.order = append(q.order[:i], q.order[i+1:]...)
			break
		}
	}
}

func (q *taintQueue) len() int { return len(q.order) }

// setRate changes the rate; a new rate starts with a full bucket, as
// upstream's SwapLimiter makes a new limiter.
func (q *taintQueue) setRate(rate float64, now time.Time) {
	if rate == q.rate {
		return
	}
	q.rate, q.tokens, q.last = rate, 1, now
}

// take consumes a token if one is available at now.
func (q *taintQueue) take(now time.Time) bool {
	if q.rate <= 0 {
		return false
	}
	if elapsed := now.Sub(q.last); elapsed > 0 {
		q.tokens = min(1, q.tokens+elapsed.Seconds()*q.rate)
	}
	q.last = now
	if q.tokens < 1 {
		return false
	}
	q.tokens--
	return true
}

// try hands queued names to fn, oldest first, while tokens last; fn
// reports whether the name is done (else it goes to the back of the
// queue). Every attempt costs a token, as upstream.
func (q *taintQueue) try(now time.Time, fn func(name string) bool) {
	for n := len(q.order); n > 0 && len(q.order) > 0; n-- {
		if !q.take(now) {
			return
		}
		name := q.order[0]
		q.order = q.order[1:]
		delete(q.queued, name)
		if !fn(name) {
			q.add(name)
		}
	}
}
