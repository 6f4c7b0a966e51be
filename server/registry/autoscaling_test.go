package registry

import (
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func newTestHPA() *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MaxReplicas:    5,
		},
	}
}

func TestHPATableEntries(t *testing.T) {
	tbl, err := NewTable()
	if err != nil {
		t.Fatal(err)
	}
	v2 := tbl.Lookup(autoscalingV2GV, "horizontalpodautoscalers")
	v1 := tbl.Lookup(autoscalingV1GV, "horizontalpodautoscalers")
	if v2.Storage != nil || v1.StorageResource() != v2 {
		t.Errorf("v1 is stored as %v, want the v2 entry", v1.StorageResource().GroupVersionResource())
	}
	for _, r := range []*Resource{v1, v2} {
		if sprint(r.ShortNames) != "[hpa]" || !r.HasSubresource("status") || r.Kind != "HorizontalPodAutoscaler" {
			t.Errorf("%s: %v %v %s", r.GroupVersion, r.ShortNames, r.Subresources, r.Kind)
		}
	}
}

func TestHPADefaults(t *testing.T) {
	r := groupResource(t, "autoscaling", "v2", "horizontalpodautoscalers")
	h := newTestHPA()
	r.Default(h)
	if *h.Spec.MinReplicas != 1 || len(h.Spec.Metrics) != 1 || !isCPUResourceMetric(h.Spec.Metrics[0]) ||
		*h.Spec.Metrics[0].Resource.Target.AverageUtilization != 80 || h.Spec.Metrics[0].Resource.Target.Type != autoscalingv2.UtilizationMetricType {
		t.Errorf("defaults %+v", h.Spec)
	}
	if h.Spec.Behavior != nil {
		t.Errorf("behavior defaulted without being asked: %+v", h.Spec.Behavior)
	}
	checkErrors(t, r.Validate(h))

	// A given behavior is completed, keeping what was set.
	h = newTestHPA()
	h.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](60)}}
	r.Default(h)
	up, down := h.Spec.Behavior.ScaleUp, h.Spec.Behavior.ScaleDown
	if up == nil || *up.StabilizationWindowSeconds != 0 || *up.SelectPolicy != autoscalingv2.MaxChangePolicySelect || len(up.Policies) != 2 {
		t.Errorf("scale up %+v", up)
	}
	if *down.StabilizationWindowSeconds != 60 || len(down.Policies) != 1 || down.Policies[0].Type != autoscalingv2.PercentScalingPolicy || down.Policies[0].Value != 100 {
		t.Errorf("scale down %+v", down)
	}
	checkErrors(t, r.Validate(h))
}

func TestValidateHPA(t *testing.T) {
	r := groupResource(t, "autoscaling", "v2", "horizontalpodautoscalers")
	q := resource.MustParse
	tests := []struct {
		name   string
		mutate func(h *autoscalingv2.HorizontalPodAutoscaler)
		want   []string
	}{
		{"valid", func(*autoscalingv2.HorizontalPodAutoscaler) {}, nil},
		{"min zero", func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.MinReplicas = ptr.To[int32](0) }, []string{"spec.minReplicas: FieldValueInvalid"}},
		{"min above max", func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.MinReplicas = ptr.To[int32](6) }, []string{"spec.maxReplicas: FieldValueInvalid"}},
		{"max zero", func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.MaxReplicas = 0 },
			[]string{"spec.maxReplicas: FieldValueInvalid", "spec.maxReplicas: FieldValueInvalid"}},
		{"no target", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.ScaleTargetRef = autoscalingv2.CrossVersionObjectReference{}
		},
			[]string{"spec.scaleTargetRef.kind: FieldValueRequired", "spec.scaleTargetRef.name: FieldValueRequired"}},
		{"bad target name", func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.ScaleTargetRef.Name = "a/b" }, []string{"spec.scaleTargetRef.name: FieldValueInvalid"}},
		{"zero utilization", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Metrics = []autoscalingv2.MetricSpec{cpuUtilizationMetric(0)}
		},
			[]string{"spec.metrics[0].resource.target.averageUtilization: FieldValueInvalid"}},
		{"resource without target", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceMemory}}}
		}, []string{"spec.metrics[0].resource.target.type: FieldValueRequired", "spec.metrics[0].resource.target.averageUtilization: FieldValueRequired"}},
		{"source missing", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.PodsMetricSourceType}}
		}, []string{"spec.metrics[0].pods: FieldValueRequired"}},
		{"two sources", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			m := cpuUtilizationMetric(50)
			m.Pods = &autoscalingv2.PodsMetricSource{Metric: autoscalingv2.MetricIdentifier{Name: "qps"}, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(q("10"))}}
			h.Spec.Metrics = []autoscalingv2.MetricSpec{m}
		}, []string{"spec.metrics[0].pods: FieldValueForbidden"}},
		{"unknown type", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: "Magic"}}
		},
			[]string{"spec.metrics[0].type: FieldValueNotSupported"}},
		{"external negative", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
				Metric: autoscalingv2.MetricIdentifier{Name: "queue"}, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: ptr.To(q("-1"))},
			}}}
		}, []string{"spec.metrics[0].external.target.value: FieldValueInvalid"}},
		{"behavior without policies", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: &autoscalingv2.HPAScalingRules{Policies: []autoscalingv2.HPAScalingPolicy{}}}
		}, []string{"spec.behavior.scaleUp.policies: FieldValueRequired"}},
		{"behavior bad policy", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{
				StabilizationWindowSeconds: ptr.To[int32](4000),
				Policies:                   []autoscalingv2.HPAScalingPolicy{{Type: "Nodes", Value: 0, PeriodSeconds: 2000}},
			}}
		}, []string{"spec.behavior.scaleDown.stabilizationWindowSeconds: FieldValueInvalid", "spec.behavior.scaleDown.policies[0].type: FieldValueNotSupported",
			"spec.behavior.scaleDown.policies[0].value: FieldValueInvalid", "spec.behavior.scaleDown.policies[0].periodSeconds: FieldValueInvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHPA()
			r.Default(h)
			tt.mutate(h)
			checkErrors(t, r.Validate(h), tt.want...)
		})
	}
}

// fullHPA uses every part of the v2 type the v1 form must carry.
func fullHPA() *autoscalingv2.HorizontalPodAutoscaler {
	q := resource.MustParse
	h := newTestHPA()
	h.Annotations = map[string]string{"owner": "me"}
	h.Spec.MinReplicas = ptr.To[int32](2)
	h.Spec.Metrics = []autoscalingv2.MetricSpec{
		{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "qps"}, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(q("100"))}}},
		{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name: corev1.ResourceMemory, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(q("512Mi"))}}},
		{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "queue", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"q": "jobs"}}},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: ptr.To(q("30"))}}},
		{Type: autoscalingv2.ObjectMetricSourceType, Object: &autoscalingv2.ObjectMetricSource{
			DescribedObject: autoscalingv2.CrossVersionObjectReference{APIVersion: "networking.k8s.io/v1", Kind: "Ingress", Name: "main"},
			Metric:          autoscalingv2.MetricIdentifier{Name: "rps"},
			Target:          autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, Value: ptr.To(q("0")), AverageValue: ptr.To(q("2k"))}}},
		{Type: autoscalingv2.ContainerResourceMetricSourceType, ContainerResource: &autoscalingv2.ContainerResourceMetricSource{
			Name: corev1.ResourceCPU, Container: "app", Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](60)}}},
		cpuUtilizationMetric(70),
	}
	h.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{
		ScaleDown: &autoscalingv2.HPAScalingRules{
			StabilizationWindowSeconds: ptr.To[int32](120),
			SelectPolicy:               ptr.To(autoscalingv2.MinChangePolicySelect),
			Policies:                   []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: 60}},
		},
	}
	lastScale := metav1.NewTime(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC))
	h.Status = autoscalingv2.HorizontalPodAutoscalerStatus{
		ObservedGeneration: ptr.To[int64](3),
		LastScaleTime:      &lastScale,
		CurrentReplicas:    3,
		DesiredReplicas:    4,
		CurrentMetrics: []autoscalingv2.MetricStatus{
			{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricStatus{
				Metric: autoscalingv2.MetricIdentifier{Name: "qps"}, Current: autoscalingv2.MetricValueStatus{AverageValue: ptr.To(q("120"))}}},
			{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricStatus{
				Name: corev1.ResourceCPU, Current: autoscalingv2.MetricValueStatus{AverageValue: ptr.To(q("250m")), AverageUtilization: ptr.To[int32](55)}}},
		},
		Conditions: []autoscalingv2.HorizontalPodAutoscalerCondition{{
			Type: autoscalingv2.ScalingActive, Status: corev1.ConditionTrue, Reason: "ValidMetricFound", Message: "ok", LastTransitionTime: lastScale,
		}},
	}
	return h
}

func TestHPAConversionRoundTrip(t *testing.T) {
	tbl, err := NewTable()
	if err != nil {
		t.Fatal(err)
	}
	in := fullHPA()
	orig := in.DeepCopy()
	var v1 autoscalingv1.HorizontalPodAutoscaler
	if err := tbl.Scheme.Convert(in, &v1, nil); err != nil {
		t.Fatalf("v2 → v1: %v", err)
	}
	if !apiequality.Semantic.DeepEqual(in, orig) {
		t.Errorf("conversion changed its input")
	}
	if ptr.Deref(v1.Spec.TargetCPUUtilizationPercentage, 0) != 70 || ptr.Deref(v1.Status.CurrentCPUUtilizationPercentage, 0) != 55 ||
		*v1.Spec.MinReplicas != 2 || v1.Spec.MaxReplicas != 5 || v1.Spec.ScaleTargetRef.Kind != "Deployment" || v1.Status.DesiredReplicas != 4 {
		t.Errorf("v1 spec %+v status %+v", v1.Spec, v1.Status)
	}
	for _, k := range []string{hpaMetricSpecsAnnotation, hpaMetricStatusesAnnotation, hpaConditionsAnnotation, hpaBehaviorAnnotation, "owner"} {
		if _, ok := v1.Annotations[k]; !ok {
			t.Errorf("v1 lacks annotation %s: %v", k, v1.Annotations)
		}
	}

	var back autoscalingv2.HorizontalPodAutoscaler
	if err := tbl.Scheme.Convert(&v1, &back, nil); err != nil {
		t.Fatalf("v1 → v2: %v", err)
	}
	// The cpu utilization metric comes back last, which it already is.
	if !apiequality.Semantic.DeepEqual(&back, orig) {
		t.Errorf("round trip differs:\n got  %+v\n want %+v", back, *orig)
	}

	// Metric order is not kept: the cpu utilization target moves to the end.
	in = fullHPA()
	in.Spec.Metrics = append([]autoscalingv2.MetricSpec{cpuUtilizationMetric(70)}, in.Spec.Metrics[:5]...)
	if err := tbl.Scheme.Convert(in, &v1, nil); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Scheme.Convert(&v1, &back, nil); err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(back.Spec.Metrics, orig.Spec.Metrics) {
		t.Errorf("metrics after reorder: %+v", back.Spec.Metrics)
	}
}

func TestHPAConversionFromV1(t *testing.T) {
	tbl, err := NewTable()
	if err != nil {
		t.Fatal(err)
	}
	ref := autoscalingv1.CrossVersionObjectReference{Kind: "Deployment", Name: "web", APIVersion: "apps/v1"}
	tests := []struct {
		name    string
		in      autoscalingv1.HorizontalPodAutoscaler
		metrics []autoscalingv2.MetricSpec
	}{
		{"target cpu", autoscalingv1.HorizontalPodAutoscaler{Spec: autoscalingv1.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: ref, MaxReplicas: 3, TargetCPUUtilizationPercentage: ptr.To[int32](50)}},
			[]autoscalingv2.MetricSpec{cpuUtilizationMetric(50)}},
		{"implicit 80%", autoscalingv1.HorizontalPodAutoscaler{Spec: autoscalingv1.HorizontalPodAutoscalerSpec{ScaleTargetRef: ref, MaxReplicas: 3}},
			[]autoscalingv2.MetricSpec{cpuUtilizationMetric(80)}},
		{"unparsable annotation ignored", autoscalingv1.HorizontalPodAutoscaler{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{hpaMetricSpecsAnnotation: "{nope"}},
			Spec:       autoscalingv1.HorizontalPodAutoscalerSpec{ScaleTargetRef: ref, MaxReplicas: 3}},
			[]autoscalingv2.MetricSpec{cpuUtilizationMetric(80)}},
	}
	for _, tt := range tests {
		var out autoscalingv2.HorizontalPodAutoscaler
		if err := tbl.Scheme.Convert(&tt.in, &out, nil); err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !apiequality.Semantic.DeepEqual(out.Spec.Metrics, tt.metrics) || len(out.Annotations) != 0 {
			t.Errorf("%s: metrics %+v annotations %v", tt.name, out.Spec.Metrics, out.Annotations)
		}
	}

	// Lists convert item by item.
	list := &autoscalingv2.HorizontalPodAutoscalerList{ListMeta: metav1.ListMeta{ResourceVersion: "9"}, Items: []autoscalingv2.HorizontalPodAutoscaler{*fullHPA(), *newTestHPA()}}
	var v1List autoscalingv1.HorizontalPodAutoscalerList
	if err := tbl.Scheme.Convert(list, &v1List, nil); err != nil {
		t.Fatal(err)
	}
	if v1List.ResourceVersion != "9" || len(v1List.Items) != 2 || *v1List.Items[0].Spec.TargetCPUUtilizationPercentage != 70 {
		t.Errorf("list %+v", v1List)
	}
	var back autoscalingv2.HorizontalPodAutoscalerList
	if err := tbl.Scheme.Convert(&v1List, &back, nil); err != nil {
		t.Fatal(err)
	}
	if len(back.Items) != 2 || !apiequality.Semantic.DeepEqual(back.Items[0], list.Items[0]) {
		t.Errorf("list round trip: %+v", back.Items)
	}
}

func TestHPAV1Entry(t *testing.T) {
	r := groupResource(t, "autoscaling", "v1", "horizontalpodautoscalers")
	h := &autoscalingv1.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: autoscalingv1.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv1.CrossVersionObjectReference{Kind: "Deployment", Name: "web"},
			MaxReplicas:    4,
		},
	}
	r.Default(h)
	if *h.Spec.MinReplicas != 1 || ptr.Deref(h.Spec.TargetCPUUtilizationPercentage, 0) != 80 || len(h.Annotations) != 0 {
		t.Errorf("defaults %+v %v", h.Spec, h.Annotations)
	}
	checkErrors(t, r.Validate(h))
	r.PrepareForCreate(h)
	if h.Generation != 1 {
		t.Errorf("generation %d", h.Generation)
	}

	bad := h.DeepCopy()
	bad.Spec.MaxReplicas = 0
	bad.Spec.TargetCPUUtilizationPercentage = ptr.To[int32](0)
	checkErrors(t, r.Validate(bad), "spec.maxReplicas: FieldValueInvalid", "spec.maxReplicas: FieldValueInvalid",
		"spec.metrics[0].resource.target.averageUtilization: FieldValueInvalid")

	// A spec update keeps the stored status, including what lives in annotations.
	old := h.DeepCopy()
	old.Status.CurrentReplicas = 2
	old.Annotations = map[string]string{hpaConditionsAnnotation: `[{"type":"AbleToScale","status":"True","lastTransitionTime":null}]`}
	upd := h.DeepCopy()
	upd.Spec.MaxReplicas = 6
	r.PrepareForUpdate(upd, old)
	if upd.Status.CurrentReplicas != 2 || upd.Annotations[hpaConditionsAnnotation] == "" || upd.Generation != 2 || upd.Spec.MaxReplicas != 6 {
		t.Errorf("update: %+v %v generation %d", upd.Status, upd.Annotations, upd.Generation)
	}

	h.Status.CurrentReplicas = 1
	h.Status.CurrentCPUUtilizationPercentage = ptr.To[int32](12)
	want := sprint([]interface{}{"web", "Deployment/web", "cpu: 12%/80%", "1", int64(4), int64(1), "<unknown>"})
	if got := sprint(r.Row(h)); got != want {
		t.Errorf("row %s, want %s", got, want)
	}
}

func TestFormatHPAMetrics(t *testing.T) {
	h := fullHPA()
	got := formatHPAMetrics(h.Spec.Metrics, h.Status.CurrentMetrics)
	// Statuses pair with specs by index, as kubectl's printer pairs them.
	if want := "120/100, memory: 250m/512Mi + 4 more..."; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	tests := []struct {
		spec autoscalingv2.MetricSpec
		want string
	}{
		{h.Spec.Metrics[2], "<unknown>/30"},
		{h.Spec.Metrics[3], "<unknown>/2k (avg)"},
		{h.Spec.Metrics[4], "cpu: <unknown>/60%"},
		{autoscalingv2.MetricSpec{Type: "Magic"}, "<unknown type>"},
	}
	for _, tt := range tests {
		if got := formatHPAMetrics([]autoscalingv2.MetricSpec{tt.spec}, nil); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	if got := formatHPAMetrics(nil, nil); got != "<none>" {
		t.Errorf("no metrics: %q", got)
	}
}
