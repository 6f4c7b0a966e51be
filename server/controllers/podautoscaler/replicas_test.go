package podautoscaler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/server/metricsapi"
)

var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// testPod is a Running pod, Ready for ten minutes, requesting request of
// cpu and 1Gi of memory ("" for no requests).
func testPod(i int, request string) *corev1.Pod {
	long := metav1.NewTime(testNow.Add(-10 * time.Minute))
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%d", i), Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &long,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: long}}},
	}
	if request != "" {
		p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(request), corev1.ResourceMemory: resource.MustParse("1Gi")}
	}
	return p
}

func usageOf(values map[string]string) map[string]metricsapi.PodUsage {
	out := map[string]metricsapi.PodUsage{}
	for pod, v := range values {
		q := resource.MustParse(v)
		out[pod] = metricsapi.PodUsage{MilliValue: q.MilliValue(), Timestamp: testNow.Add(-5 * time.Second), Window: 15 * time.Second}
	}
	return out
}

func TestResourceReplicas(t *testing.T) {
	three := func(mutate ...func([]*corev1.Pod)) []*corev1.Pod {
		pods := []*corev1.Pod{testPod(0, "1"), testPod(1, "1"), testPod(2, "1")}
		for _, m := range mutate {
			m(pods)
		}
		return pods
	}
	for _, tc := range []struct {
		name        string
		current     int32
		pods        []*corev1.Pod
		usage       map[string]string
		res         corev1.ResourceName
		utilization int32  // target percent, or
		average     string // target average value
		want        int32
		wantUtil    int32
		wantErr     string
	}{
		{name: "at target", current: 3, pods: three(), usage: map[string]string{"p-0": "500m", "p-1": "500m", "p-2": "500m"},
			res: corev1.ResourceCPU, utilization: 50, want: 3, wantUtil: 50},
		{name: "twice the target", current: 3, pods: three(), usage: map[string]string{"p-0": "1", "p-1": "1", "p-2": "1"},
			res: corev1.ResourceCPU, utilization: 50, want: 6, wantUtil: 100},
		{name: "within tolerance", current: 3, pods: three(), usage: map[string]string{"p-0": "540m", "p-1": "540m", "p-2": "540m"},
			res: corev1.ResourceCPU, utilization: 50, want: 3, wantUtil: 54},
		{name: "scale down", current: 3, pods: three(), usage: map[string]string{"p-0": "100m", "p-1": "100m", "p-2": "100m"},
			res: corev1.ResourceCPU, utilization: 50, want: 1, wantUtil: 10},
		{name: "missing metrics count as nothing when scaling up", current: 3, pods: three(),
			usage: map[string]string{"p-0": "1", "p-1": "1"}, res: corev1.ResourceCPU, utilization: 50, want: 4, wantUtil: 100},
		{name: "missing metrics count as the request when scaling down", current: 3, pods: three(),
			usage: map[string]string{"p-0": "100m", "p-1": "100m"}, res: corev1.ResourceCPU, utilization: 50, want: 3, wantUtil: 10},
		{name: "pending pods count as nothing when scaling up", current: 3,
			pods:  three(func(p []*corev1.Pod) { p[2].Status.Phase = corev1.PodPending }),
			usage: map[string]string{"p-0": "1", "p-1": "1"}, res: corev1.ResourceCPU, utilization: 50, want: 4, wantUtil: 100},
		{name: "pods just ready do not count for cpu", current: 3,
			pods: three(func(p []*corev1.Pod) {
				p[2].Status.StartTime = &metav1.Time{Time: testNow.Add(-time.Minute)}
				p[2].Status.Conditions[0].LastTransitionTime = metav1.NewTime(testNow.Add(-10 * time.Second))
			}),
			usage: map[string]string{"p-0": "500m", "p-1": "500m", "p-2": "3"}, res: corev1.ResourceCPU, utilization: 50, want: 3, wantUtil: 50},
		{name: "deleted pods are ignored", current: 3,
			pods:  three(func(p []*corev1.Pod) { p[2].DeletionTimestamp = &metav1.Time{Time: testNow} }),
			usage: map[string]string{"p-0": "500m", "p-1": "500m", "p-2": "5"}, res: corev1.ResourceCPU, utilization: 50, want: 3, wantUtil: 50},
		{name: "memory average value", current: 3, pods: three(),
			usage: map[string]string{"p-0": "200Mi", "p-1": "200Mi", "p-2": "200Mi"}, res: corev1.ResourceMemory, average: "100Mi", want: 6},
		{name: "memory utilization", current: 2, pods: three()[:2],
			usage: map[string]string{"p-0": "768Mi", "p-1": "768Mi"}, res: corev1.ResourceMemory, utilization: 50, want: 3, wantUtil: 75},
		{name: "missing request", current: 3, pods: []*corev1.Pod{testPod(0, "1"), testPod(1, "")},
			usage: map[string]string{"p-0": "1", "p-1": "1"}, res: corev1.ResourceCPU, utilization: 50,
			wantErr: "missing request for cpu in container c of Pod p-1"},
		{name: "no metrics", current: 3, pods: three(), usage: map[string]string{}, res: corev1.ResourceCPU, utilization: 50,
			wantErr: "unable to get metrics for resource cpu: no metrics returned from resource metrics API"},
		{name: "only unready pods", current: 1, pods: three(func(p []*corev1.Pod) { p[0].Status.Conditions = nil })[:1],
			usage: map[string]string{"p-0": "1"}, res: corev1.ResourceCPU, utilization: 50,
			wantErr: "did not receive metrics for targeted pods (pods might be unready)"},
		{name: "no pods", current: 1, usage: map[string]string{"x": "1"}, res: corev1.ResourceCPU, utilization: 50,
			wantErr: "no pods returned by selector while calculating replica count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := replicaCalculator{tolerance: defaultTolerance, now: testNow}
			var avg int64
			if tc.average != "" {
				q := resource.MustParse(tc.average)
				avg = q.MilliValue()
			}
			got, err := rc.resourceReplicas(tc.current, tc.pods, usageOf(tc.usage), tc.res, tc.utilization, avg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.replicas != tc.want || got.utilization != tc.wantUtil {
				t.Fatalf("got %d replicas at %d%%, want %d at %d%%", got.replicas, got.utilization, tc.want, tc.wantUtil)
			}
		})
	}
}

func rules(window int32, sel autoscalingv2.ScalingPolicySelect, policies ...autoscalingv2.HPAScalingPolicy) autoscalingv2.HPAScalingRules {
	return autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To(window), SelectPolicy: ptr.To(sel), Policies: policies}
}

func TestNormalize(t *testing.T) {
	up, down := defaultBehavior(nil, 60*time.Second)
	ago := func(s int) time.Time { return testNow.Add(-time.Duration(s) * time.Second) }
	pods := func(v, period int32) autoscalingv2.HPAScalingPolicy {
		return autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PodsScalingPolicy, Value: v, PeriodSeconds: period}
	}
	percent := func(v, period int32) autoscalingv2.HPAScalingPolicy {
		return autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PercentScalingPolicy, Value: v, PeriodSeconds: period}
	}
	for _, tc := range []struct {
		name                  string
		up, down              autoscalingv2.HPAScalingRules
		history               history
		min, max              int32
		current, proposed     int32
		want                  int32
		stabilized, limitedBy string // condition reasons; "" limitedBy: not limited
	}{
		{name: "steady", up: up, down: down, min: 1, max: 10, current: 3, proposed: 3, want: 3, stabilized: "ReadyForNewScale"},
		{name: "scale down held by the window", up: up, down: down, min: 1, max: 10, current: 5, proposed: 2,
			history: history{recommendations: []timestampedRecommendation{{5, ago(30)}}}, want: 5, stabilized: "ScaleDownStabilized"},
		{name: "highest recent recommendation wins", up: up, down: down, min: 1, max: 10, current: 5, proposed: 2,
			history: history{recommendations: []timestampedRecommendation{{3, ago(30)}, {4, ago(50)}, {9, ago(90)}}}, want: 4, stabilized: "ScaleDownStabilized"},
		{name: "scale down after the window", up: up, down: down, min: 1, max: 10, current: 5, proposed: 2,
			history: history{recommendations: []timestampedRecommendation{{5, ago(90)}}}, want: 2, stabilized: "ReadyForNewScale"},
		{name: "scale up rate: max(4 pods, 100%)", up: up, down: down, min: 1, max: 50, current: 2, proposed: 20,
			want: 6, stabilized: "ReadyForNewScale", limitedBy: "ScaleUpLimit"},
		{name: "max replicas", up: up, down: down, min: 1, max: 5, current: 2, proposed: 20,
			want: 5, stabilized: "ReadyForNewScale", limitedBy: "TooManyReplicas"},
		{name: "min replicas", up: up, down: rules(0, autoscalingv2.MaxChangePolicySelect, percent(100, 15)), min: 2, max: 5, current: 4, proposed: 1,
			want: 2, stabilized: "ReadyForNewScale", limitedBy: "TooFewReplicas"},
		{name: "pods policy counts recent scale ups", up: rules(0, autoscalingv2.MaxChangePolicySelect, pods(1, 60)), down: down,
			history: history{scaleUp: []scaleEvent{{1, ago(30)}}}, min: 1, max: 10, current: 3, proposed: 5,
			want: 3, stabilized: "ReadyForNewScale", limitedBy: "ScaleUpLimit"},
		{name: "min change select", up: rules(0, autoscalingv2.MinChangePolicySelect, pods(1, 15), percent(100, 15)), down: down,
			min: 1, max: 10, current: 4, proposed: 10, want: 5, stabilized: "ReadyForNewScale", limitedBy: "ScaleUpLimit"},
		{name: "scale down disabled", up: up, down: rules(0, autoscalingv2.DisabledPolicySelect), min: 1, max: 10, current: 5, proposed: 2,
			want: 5, stabilized: "ReadyForNewScale", limitedBy: "ScaleDownLimit"},
		{name: "scale down by half", up: up, down: rules(0, autoscalingv2.MaxChangePolicySelect, percent(50, 60)), min: 1, max: 10, current: 10, proposed: 1,
			want: 5, stabilized: "ReadyForNewScale", limitedBy: "ScaleDownLimit"},
		{name: "scale up window holds a spike", up: rules(60, autoscalingv2.MaxChangePolicySelect, percent(100, 15)), down: down,
			history: history{recommendations: []timestampedRecommendation{{3, ago(20)}}}, min: 1, max: 10, current: 3, proposed: 8,
			want: 3, stabilized: "ScaleUpStabilized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.history
			n := normalize(&h, testNow, tc.up, tc.down, tc.min, tc.max, tc.current, tc.proposed)
			if n.replicas != tc.want || n.stabilizedReason != tc.stabilized || n.limited != (tc.limitedBy != "") ||
				(tc.limitedBy != "" && n.limitedReason != tc.limitedBy) {
				t.Fatalf("got %+v, want %d replicas, %s, limited by %q", n, tc.want, tc.stabilized, tc.limitedBy)
			}
			if last := h.recommendations[len(h.recommendations)-1]; last.replicas != tc.proposed && len(tc.history.recommendations) == 0 {
				t.Errorf("proposal not recorded: %+v", h.recommendations)
			}
		})
	}
}

func TestRecordScalePrunesOldEvents(t *testing.T) {
	up, down := defaultBehavior(nil, time.Minute)
	h := &history{scaleUp: []scaleEvent{{2, testNow.Add(-time.Hour)}}}
	recordScale(h, testNow, up, down, 2, 5)
	recordScale(h, testNow, up, down, 5, 4)
	if len(h.scaleUp) != 1 || h.scaleUp[0].change != 3 || len(h.scaleDown) != 1 || h.scaleDown[0].change != 1 {
		t.Fatalf("history = %+v", h)
	}
}
