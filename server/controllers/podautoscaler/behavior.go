package podautoscaler

import (
	"math"
	"sync"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/utils/ptr"
)

// timestampedRecommendation is one past proposal of an autoscaler.
type timestampedRecommendation struct {
	replicas  int32
	timestamp time.Time
}

// scaleEvent is one past change of a target's replicas by an autoscaler.
type scaleEvent struct {
	change    int32
	timestamp time.Time
}

// history is what the controller remembers of each autoscaler between
// syncs. It is kept in memory, as upstream keeps it: a restart of the
// server forgets past recommendations and scale events.
type history struct {
	recommendations []timestampedRecommendation
	scaleUp         []scaleEvent
	scaleDown       []scaleEvent
}

// histories holds the history of every autoscaler by key.
type histories struct {
	mu sync.Mutex
	m  map[string]*history
}

func (h *histories) get(key string) *history {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]*history{}
	}
	if h.m[key] == nil {
		h.m[key] = &history{}
	}
	return h.m[key]
}

// recordInitial records replicas as the first recommendation of an
// autoscaler it knows nothing about.
func (h *histories) recordInitial(key string, replicas int32, now time.Time) {
	hist := h.get(key)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(hist.recommendations) == 0 {
		hist.recommendations = []timestampedRecommendation{{replicas: replicas, timestamp: now}}
	}
}

func (h *histories) forget(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, key)
}

// defaultBehavior completes a behavior as the API defaults a given one, and
// supplies the defaults when none is given; the scale-down window, when
// unset, is the controller's (--horizontal-pod-autoscaler-downscale-
// stabilization, 5 minutes). Upstream runs a separate, older algorithm
// for autoscalers without a behavior (scale up to max(2×current, 4) at
// once); orch uses the default behavior for them, which differs from it
// only in the scale-up rate (4 pods or 100% per 15 s).
func defaultBehavior(b *autoscalingv2.HorizontalPodAutoscalerBehavior, downscaleWindow time.Duration) (up, down autoscalingv2.HPAScalingRules) {
	up = autoscalingv2.HPAScalingRules{
		StabilizationWindowSeconds: ptr.To[int32](0),
		SelectPolicy:               ptr.To(autoscalingv2.MaxChangePolicySelect),
		Policies: []autoscalingv2.HPAScalingPolicy{
			{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
			{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
		},
	}
	down = autoscalingv2.HPAScalingRules{
		StabilizationWindowSeconds: ptr.To(int32(downscaleWindow / time.Second)),
		SelectPolicy:               ptr.To(autoscalingv2.MaxChangePolicySelect),
		Policies:                   []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}},
	}
	if b == nil {
		return up, down
	}
	complete := func(given *autoscalingv2.HPAScalingRules, def autoscalingv2.HPAScalingRules) autoscalingv2.HPAScalingRules {
		if given == nil {
			return def
		}
		out := *given
		if out.StabilizationWindowSeconds == nil {
			out.StabilizationWindowSeconds = def.StabilizationWindowSeconds
		}
		if out.SelectPolicy == nil {
			out.SelectPolicy = def.SelectPolicy
		}
		if out.Policies == nil {
			out.Policies = def.Policies
		}
		return out
	}
	return complete(b.ScaleUp, up), complete(b.ScaleDown, down)
}

// normalization is what normalize decides, with the conditions to report.
type normalization struct {
	replicas int32
	// AbleToScale (True): ScaleUpStabilized, ScaleDownStabilized or
	// ReadyForNewScale.
	stabilizedReason, stabilizedMessage string
	// ScalingLimited: True with a reason when the rate or the bounds
	// changed the stabilized recommendation.
	limited                       bool
	limitedReason, limitedMessage string
}

// normalize turns a proposal into the replicas to set: first the
// stabilization windows (the lowest proposal of the scale-up window and
// the highest of the scale-down window bound it, so that a dip or a spike
// does not flap the target), then the scaling policies' rates and the
// min/max bounds. It is upstream's normalizeDesiredReplicasWithBehaviors;
// it records the proposal in h.
func normalize(h *history, now time.Time, up, down autoscalingv2.HPAScalingRules, minReplicas, maxReplicas, current, proposed int32) normalization {
	stabilized := stabilize(h, now, up, down, current, proposed)
	n := normalization{stabilizedReason: "ReadyForNewScale", stabilizedMessage: "recommended size matches current size"}
	if stabilized != proposed {
		if proposed >= current {
			n.stabilizedReason = "ScaleUpStabilized"
			n.stabilizedMessage = "recent recommendations were lower than current one, applying the lowest recent recommendation"
		} else {
			n.stabilizedReason = "ScaleDownStabilized"
			n.stabilizedMessage = "recent recommendations were higher than current one, applying the highest recent recommendation"
		}
	}
	n.replicas, n.limitedReason, n.limitedMessage = limitRate(h, now, up, down, minReplicas, maxReplicas, current, stabilized)
	n.limited = n.replicas != stabilized
	return n
}

// stabilize is upstream's stabilizeRecommendationWithBehaviors.
func stabilize(h *history, now time.Time, up, down autoscalingv2.HPAScalingRules, current, proposed int32) int32 {
	upCutoff := now.Add(-time.Duration(*up.StabilizationWindowSeconds) * time.Second)
	downCutoff := now.Add(-time.Duration(*down.StabilizationWindowSeconds) * time.Second)
	upRecommendation, downRecommendation := proposed, proposed
	oldest := -1
	for i, rec := range h.recommendations {
		if rec.timestamp.After(upCutoff) {
			upRecommendation = min(rec.replicas, upRecommendation)
		}
		if rec.timestamp.After(downCutoff) {
			downRecommendation = max(rec.replicas, downRecommendation)
		}
		if rec.timestamp.Before(upCutoff) && rec.timestamp.Before(downCutoff) {
			oldest = i
		}
	}
	recommendation := current
	if recommendation < upRecommendation {
		recommendation = upRecommendation
	}
	if recommendation > downRecommendation {
		recommendation = downRecommendation
	}
	// Reuse a slot that no window covers any more, so the slice stays as
	// long as the longest window holds.
	rec := timestampedRecommendation{replicas: proposed, timestamp: now}
	if oldest >= 0 {
		h.recommendations[oldest] = rec
	} else {
		h.recommendations = append(h.recommendations, rec)
	}
	return recommendation
}

// limitRate is upstream's convertDesiredReplicasWithBehaviorRate.
func limitRate(h *history, now time.Time, up, down autoscalingv2.HPAScalingRules, minReplicas, maxReplicas, current, desired int32) (int32, string, string) {
	switch {
	case desired > current:
		limit := max(scaleLimit(now, current, h.scaleUp, h.scaleDown, up, true), current)
		allowed, reason, message := maxReplicas, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
		if allowed > limit {
			allowed, reason, message = limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
		}
		if desired > allowed {
			return allowed, reason, message
		}
	case desired < current:
		limit := min(scaleLimit(now, current, h.scaleUp, h.scaleDown, down, false), current)
		allowed, reason, message := minReplicas, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
		if allowed < limit {
			allowed, reason, message = limit, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
		}
		if desired < allowed {
			return allowed, reason, message
		}
	}
	return desired, "DesiredWithinRange", "the desired count is within the acceptable range"
}

// changeInPeriod sums the changes of the events within the last period.
func changeInPeriod(now time.Time, periodSeconds int32, events []scaleEvent) int32 {
	cutoff := now.Add(-time.Duration(periodSeconds) * time.Second)
	var sum int32
	for _, e := range events {
		if e.timestamp.After(cutoff) {
			sum += e.change
		}
	}
	return sum
}

// scaleLimit is the bound the scale-up (up) or scale-down policies put on
// the replica count now: the most replicas allowed when scaling up, the
// fewest when scaling down. Each policy allows its value (pods or percent)
// beyond what the target had at the start of its period; selectPolicy
// picks the largest change (Max) or the smallest (Min). As upstream, a
// percentage is rounded up when scaling up and truncated when scaling down.
func scaleLimit(now time.Time, current int32, upEvents, downEvents []scaleEvent, rules autoscalingv2.HPAScalingRules, up bool) int32 {
	if *rules.SelectPolicy == autoscalingv2.DisabledPolicySelect {
		return current
	}
	// The largest change is the highest count up and the lowest down; Min
	// reverses that.
	highest := up != (*rules.SelectPolicy == autoscalingv2.MinChangePolicySelect)
	result := int32(math.MaxInt32)
	if highest {
		result = math.MinInt32
	}
	for _, p := range rules.Policies {
		start := current - changeInPeriod(now, p.PeriodSeconds, upEvents) + changeInPeriod(now, p.PeriodSeconds, downEvents)
		var proposed int32
		switch {
		case p.Type == autoscalingv2.PodsScalingPolicy && up:
			proposed = start + p.Value
		case p.Type == autoscalingv2.PodsScalingPolicy:
			proposed = start - p.Value
		case p.Type == autoscalingv2.PercentScalingPolicy && up:
			proposed = int32(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		case p.Type == autoscalingv2.PercentScalingPolicy:
			proposed = int32(float64(start) * (1 - float64(p.Value)/100))
		}
		if highest {
			result = max(result, proposed)
		} else {
			result = min(result, proposed)
		}
	}
	return result
}

// recordScale remembers a change for the rate policies, dropping events
// older than the longest policy period.
func recordScale(h *history, now time.Time, up, down autoscalingv2.HPAScalingRules, from, to int32) {
	prune := func(events []scaleEvent, rules autoscalingv2.HPAScalingRules) []scaleEvent {
		var longest int32
		for _, p := range rules.Policies {
			longest = max(longest, p.PeriodSeconds)
		}
		cutoff := now.Add(-time.Duration(longest) * time.Second)
		kept := events[:0]
		for _, e := range events {
			if e.timestamp.After(cutoff) {
				kept = append(kept, e)
			}
		}
		return kept
	}
	switch {
	case to > from:
		h.scaleUp = append(prune(h.scaleUp, up), scaleEvent{change: to - from, timestamp: now})
	case to < from:
		h.scaleDown = append(prune(h.scaleDown, down), scaleEvent{change: from - to, timestamp: now})
	}
}
