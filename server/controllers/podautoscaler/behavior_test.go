package podautoscaler

import (
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/utils/ptr"
)

func TestScaleLimit(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	pods := func(v int32) autoscalingv2.HPAScalingPolicy {
		return autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PodsScalingPolicy, Value: v, PeriodSeconds: 60}
	}
	percent := func(v int32) autoscalingv2.HPAScalingPolicy {
		return autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PercentScalingPolicy, Value: v, PeriodSeconds: 60}
	}
	rules := func(sel autoscalingv2.ScalingPolicySelect, ps ...autoscalingv2.HPAScalingPolicy) autoscalingv2.HPAScalingRules {
		return autoscalingv2.HPAScalingRules{SelectPolicy: ptr.To(sel), Policies: ps}
	}
	recent := []scaleEvent{{change: 4, timestamp: now.Add(-30 * time.Second)}}
	old := []scaleEvent{{change: 4, timestamp: now.Add(-90 * time.Second)}}
	tests := []struct {
		name       string
		up         bool
		current    int32
		upEvents   []scaleEvent
		downEvents []scaleEvent
		rules      autoscalingv2.HPAScalingRules
		want       int32
	}{
		{name: "up by pods", up: true, current: 10, rules: rules(autoscalingv2.MaxChangePolicySelect, pods(4)), want: 14},
		{name: "up by percent, rounded up", up: true, current: 10, rules: rules(autoscalingv2.MaxChangePolicySelect, percent(33)), want: 14},
		{name: "up, Max of policies", up: true, current: 10, rules: rules(autoscalingv2.MaxChangePolicySelect, pods(4), percent(100)), want: 20},
		{name: "up, Min of policies", up: true, current: 10, rules: rules(autoscalingv2.MinChangePolicySelect, pods(4), percent(100)), want: 14},
		{name: "up, a recent scale-up counts against the period", up: true, current: 14, upEvents: recent, rules: rules(autoscalingv2.MaxChangePolicySelect, pods(4)), want: 14},
		{name: "up, an older one does not", up: true, current: 14, upEvents: old, rules: rules(autoscalingv2.MaxChangePolicySelect, pods(4)), want: 18},
		{name: "up disabled", up: true, current: 10, rules: rules(autoscalingv2.DisabledPolicySelect, pods(4)), want: 10},
		{name: "down by pods", current: 10, rules: rules(autoscalingv2.MaxChangePolicySelect, pods(3)), want: 7},
		{name: "down by percent, truncated", current: 10, rules: rules(autoscalingv2.MaxChangePolicySelect, percent(33)), want: 6},
		{name: "down, Max of policies", current: 10, rules: rules(autoscalingv2.MaxChangePolicySelect, pods(3), percent(50)), want: 5},
		{name: "down, Min of policies", current: 10, rules: rules(autoscalingv2.MinChangePolicySelect, pods(3), percent(50)), want: 7},
		{name: "down, a recent scale-down counts against the period", current: 6, downEvents: recent, rules: rules(autoscalingv2.MaxChangePolicySelect, pods(4)), want: 6},
		{name: "down disabled", current: 10, rules: rules(autoscalingv2.DisabledPolicySelect, pods(3)), want: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scaleLimit(now, tt.current, tt.upEvents, tt.downEvents, tt.rules, tt.up); got != tt.want {
				t.Errorf("scaleLimit = %d, want %d", got, tt.want)
			}
		})
	}
}
