package registry

import (
	"encoding/json"
	"fmt"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

// HorizontalPodAutoscalers are stored as autoscaling/v2 and also served as
// autoscaling/v1, converted the way pkg/apis/autoscaling/v1/conversion.go
// does it:
//
//   - a Resource "cpu" metric with an averageUtilization target is
//     spec.targetCPUUtilizationPercentage in v1; every other metric is kept,
//     in the v1 (v2beta1-shaped) metric format, as JSON in the annotation
//     autoscaling.alpha.kubernetes.io/metrics;
//   - status.currentMetrics go to .../current-metrics (the cpu utilization
//     also to status.currentCPUUtilizationPercentage), status.conditions to
//     .../conditions and spec.behavior to .../behavior.
//
// v1 → v2 reads those annotations back and drops them, so v2 → v1 → v2 is
// lossless except that: the cpu utilization metric moves after the other
// metrics; an object or pods metric keeps only the target fields the v1
// format has (value and averageValue, not averageUtilization); and a v1
// object without any metric gets the implicit cpu 80% metric. Annotations
// that do not parse are ignored, as Kubernetes ignores them.

// Round-trip annotations of autoscaling/v1 HPAs.
const (
	hpaMetricSpecsAnnotation    = "autoscaling.alpha.kubernetes.io/metrics"
	hpaMetricStatusesAnnotation = "autoscaling.alpha.kubernetes.io/current-metrics"
	hpaConditionsAnnotation     = "autoscaling.alpha.kubernetes.io/conditions"
	hpaBehaviorAnnotation       = "autoscaling.alpha.kubernetes.io/behavior"

	// hpaDefaultCPUUtilization is the target of the implicit cpu metric.
	hpaDefaultCPUUtilization = 80
)

// addAutoscalingConversions converts HorizontalPodAutoscalers (and their
// lists) between autoscaling/v1 and autoscaling/v2 (stored as v2).
func addAutoscalingConversions(s *runtime.Scheme) error {
	for _, c := range []struct {
		a, b interface{}
		fn   conversion.ConversionFunc
	}{
		{(*autoscalingv1.HorizontalPodAutoscaler)(nil), (*autoscalingv2.HorizontalPodAutoscaler)(nil), func(a, b interface{}, _ conversion.Scope) error {
			return convertHPAV1ToV2(a.(*autoscalingv1.HorizontalPodAutoscaler), b.(*autoscalingv2.HorizontalPodAutoscaler))
		}},
		{(*autoscalingv2.HorizontalPodAutoscaler)(nil), (*autoscalingv1.HorizontalPodAutoscaler)(nil), func(a, b interface{}, _ conversion.Scope) error {
			return convertHPAV2ToV1(a.(*autoscalingv2.HorizontalPodAutoscaler), b.(*autoscalingv1.HorizontalPodAutoscaler))
		}},
		{(*autoscalingv1.HorizontalPodAutoscalerList)(nil), (*autoscalingv2.HorizontalPodAutoscalerList)(nil), func(a, b interface{}, _ conversion.Scope) error {
			in, out := a.(*autoscalingv1.HorizontalPodAutoscalerList), b.(*autoscalingv2.HorizontalPodAutoscalerList)
			in.ListMeta.DeepCopyInto(&out.ListMeta)
			out.Items = make([]autoscalingv2.HorizontalPodAutoscaler, len(in.Items))
			for i := range in.Items {
				if err := convertHPAV1ToV2(&in.Items[i], &out.Items[i]); err != nil {
					return err
				}
			}
			return nil
		}},
		{(*autoscalingv2.HorizontalPodAutoscalerList)(nil), (*autoscalingv1.HorizontalPodAutoscalerList)(nil), func(a, b interface{}, _ conversion.Scope) error {
			in, out := a.(*autoscalingv2.HorizontalPodAutoscalerList), b.(*autoscalingv1.HorizontalPodAutoscalerList)
			in.ListMeta.DeepCopyInto(&out.ListMeta)
			out.Items = make([]autoscalingv1.HorizontalPodAutoscaler, len(in.Items))
			for i := range in.Items {
				if err := convertHPAV2ToV1(&in.Items[i], &out.Items[i]); err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		if err := s.AddConversionFunc(c.a, c.b, c.fn); err != nil {
			return fmt.Errorf("add HorizontalPodAutoscaler conversion: %w", err)
		}
	}
	return nil
}

// convertHPAV2ToV1 converts a stored HPA to autoscaling/v1. out shares
// nothing with in.
func convertHPAV2ToV1(in *autoscalingv2.HorizontalPodAutoscaler, out *autoscalingv1.HorizontalPodAutoscaler) error {
	in = in.DeepCopy()
	*out = autoscalingv1.HorizontalPodAutoscaler{TypeMeta: out.TypeMeta, ObjectMeta: in.ObjectMeta}
	dropHPARoundTripAnnotations(&out.ObjectMeta)

	out.Spec = autoscalingv1.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv1.CrossVersionObjectReference(in.Spec.ScaleTargetRef),
		MinReplicas:    in.Spec.MinReplicas,
		MaxReplicas:    in.Spec.MaxReplicas,
	}
	for _, m := range in.Spec.Metrics {
		if isCPUResourceMetric(m) {
			out.Spec.TargetCPUUtilizationPercentage = m.Resource.Target.AverageUtilization
			break
		}
	}
	var others []autoscalingv1.MetricSpec
	for _, m := range in.Spec.Metrics {
		if isCPUResourceMetric(m) && m.Resource.Target.AverageUtilization != nil {
			continue
		}
		others = append(others, metricSpecToV1(m))
	}

	st := &in.Status
	out.Status = autoscalingv1.HorizontalPodAutoscalerStatus{
		ObservedGeneration: st.ObservedGeneration,
		LastScaleTime:      st.LastScaleTime,
		CurrentReplicas:    st.CurrentReplicas,
		DesiredReplicas:    st.DesiredReplicas,
	}
	current := make([]autoscalingv1.MetricStatus, len(st.CurrentMetrics))
	for i, m := range st.CurrentMetrics {
		if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU && m.Resource.Current.AverageUtilization != nil {
			out.Status.CurrentCPUUtilizationPercentage = ptr.To(*m.Resource.Current.AverageUtilization)
		}
		current[i] = metricStatusToV1(m)
	}
	conditions := make([]autoscalingv1.HorizontalPodAutoscalerCondition, len(st.Conditions))
	for i, c := range st.Conditions {
		conditions[i] = autoscalingv1.HorizontalPodAutoscalerCondition{
			Type:               autoscalingv1.HorizontalPodAutoscalerConditionType(c.Type),
			Status:             c.Status,
			LastTransitionTime: c.LastTransitionTime,
			Reason:             c.Reason,
			Message:            c.Message,
		}
	}

	for _, a := range []struct {
		key   string
		value interface{}
		set   bool
	}{
		{hpaMetricSpecsAnnotation, others, len(others) > 0},
		{hpaMetricStatusesAnnotation, current, len(current) > 0},
		{hpaBehaviorAnnotation, in.Spec.Behavior, in.Spec.Behavior != nil},
		{hpaConditionsAnnotation, conditions, len(conditions) > 0},
	} {
		if !a.set {
			continue
		}
		enc, err := json.Marshal(a.value)
		if err != nil {
			return fmt.Errorf("encode %s: %w", a.key, err)
		}
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		out.Annotations[a.key] = string(enc)
	}
	return nil
}

// convertHPAV1ToV2 converts an autoscaling/v1 HPA to the stored version.
// out shares nothing with in.
func convertHPAV1ToV2(in *autoscalingv1.HorizontalPodAutoscaler, out *autoscalingv2.HorizontalPodAutoscaler) error {
	in = in.DeepCopy()
	*out = autoscalingv2.HorizontalPodAutoscaler{TypeMeta: out.TypeMeta, ObjectMeta: in.ObjectMeta}
	annotations := in.Annotations
	dropHPARoundTripAnnotations(&out.ObjectMeta)

	out.Spec = autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference(in.Spec.ScaleTargetRef),
		MinReplicas:    in.Spec.MinReplicas,
		MaxReplicas:    in.Spec.MaxReplicas,
	}
	var others []autoscalingv1.MetricSpec
	if enc, ok := annotations[hpaMetricSpecsAnnotation]; ok && json.Unmarshal([]byte(enc), &others) == nil {
		for _, m := range others {
			out.Spec.Metrics = append(out.Spec.Metrics, metricSpecFromV1(m))
		}
	}
	if p := in.Spec.TargetCPUUtilizationPercentage; p != nil {
		out.Spec.Metrics = append(out.Spec.Metrics, cpuUtilizationMetric(*p))
	}
	if len(out.Spec.Metrics) == 0 {
		// autoscaling/v1 once left this default to the controller; make it explicit.
		out.Spec.Metrics = []autoscalingv2.MetricSpec{cpuUtilizationMetric(hpaDefaultCPUUtilization)}
	}
	if enc, ok := annotations[hpaBehaviorAnnotation]; ok {
		var b autoscalingv2.HorizontalPodAutoscalerBehavior
		if json.Unmarshal([]byte(enc), &b) == nil && (b.ScaleUp != nil || b.ScaleDown != nil) {
			out.Spec.Behavior = &b
		}
	}

	st := &in.Status
	out.Status = autoscalingv2.HorizontalPodAutoscalerStatus{
		ObservedGeneration: st.ObservedGeneration,
		LastScaleTime:      st.LastScaleTime,
		CurrentReplicas:    st.CurrentReplicas,
		DesiredReplicas:    st.DesiredReplicas,
	}
	if p := st.CurrentCPUUtilizationPercentage; p != nil {
		out.Status.CurrentMetrics = []autoscalingv2.MetricStatus{{
			Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricStatus{
				Name:    corev1.ResourceCPU,
				Current: autoscalingv2.MetricValueStatus{AverageUtilization: ptr.To(*p)},
			},
		}}
	}
	var current []autoscalingv1.MetricStatus
	if enc, ok := annotations[hpaMetricStatusesAnnotation]; ok && json.Unmarshal([]byte(enc), &current) == nil {
		// The annotation has more than the cpu percentage: it wins.
		out.Status.CurrentMetrics = make([]autoscalingv2.MetricStatus, len(current))
		for i, m := range current {
			out.Status.CurrentMetrics[i] = metricStatusFromV1(m)
		}
	}
	var conditions []autoscalingv1.HorizontalPodAutoscalerCondition
	if enc, ok := annotations[hpaConditionsAnnotation]; ok && json.Unmarshal([]byte(enc), &conditions) == nil {
		out.Status.Conditions = make([]autoscalingv2.HorizontalPodAutoscalerCondition, len(conditions))
		for i, c := range conditions {
			out.Status.Conditions[i] = autoscalingv2.HorizontalPodAutoscalerCondition{
				Type:               autoscalingv2.HorizontalPodAutoscalerConditionType(c.Type),
				Status:             c.Status,
				LastTransitionTime: c.LastTransitionTime,
				Reason:             c.Reason,
				Message:            c.Message,
			}
		}
	}
	return nil
}

// dropHPARoundTripAnnotations removes the conversion annotations, copying
// the map first so a caller's map is never changed.
func dropHPARoundTripAnnotations(m interface {
	GetAnnotations() map[string]string
	SetAnnotations(map[string]string)
}) {
	a := m.GetAnnotations()
	found := false
	for _, k := range []string{hpaMetricSpecsAnnotation, hpaMetricStatusesAnnotation, hpaConditionsAnnotation, hpaBehaviorAnnotation} {
		if _, ok := a[k]; ok {
			found = true
		}
	}
	if !found {
		return
	}
	out := make(map[string]string, len(a))
	for k, v := range a {
		switch k {
		case hpaMetricSpecsAnnotation, hpaMetricStatusesAnnotation, hpaConditionsAnnotation, hpaBehaviorAnnotation:
		default:
			out[k] = v
		}
	}
	m.SetAnnotations(out)
}

func isCPUResourceMetric(m autoscalingv2.MetricSpec) bool {
	return m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU
}

func cpuUtilizationMetric(percent int32) autoscalingv2.MetricSpec {
	return autoscalingv2.MetricSpec{
		Type: autoscalingv2.ResourceMetricSourceType,
		Resource: &autoscalingv2.ResourceMetricSource{
			Name:   corev1.ResourceCPU,
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To(percent)},
		},
	}
}

func derefQuantity(q *resource.Quantity) resource.Quantity {
	if q == nil {
		return resource.Quantity{}
	}
	return *q
}

func metricSpecToV1(m autoscalingv2.MetricSpec) autoscalingv1.MetricSpec {
	out := autoscalingv1.MetricSpec{Type: autoscalingv1.MetricSourceType(m.Type)}
	switch {
	case m.Object != nil:
		out.Object = &autoscalingv1.ObjectMetricSource{
			Target:       autoscalingv1.CrossVersionObjectReference(m.Object.DescribedObject),
			MetricName:   m.Object.Metric.Name,
			TargetValue:  derefQuantity(m.Object.Target.Value),
			Selector:     m.Object.Metric.Selector,
			AverageValue: m.Object.Target.AverageValue,
		}
	case m.Pods != nil:
		out.Pods = &autoscalingv1.PodsMetricSource{
			MetricName:         m.Pods.Metric.Name,
			TargetAverageValue: derefQuantity(m.Pods.Target.AverageValue),
			Selector:           m.Pods.Metric.Selector,
		}
	case m.Resource != nil:
		out.Resource = &autoscalingv1.ResourceMetricSource{
			Name:                     m.Resource.Name,
			TargetAverageUtilization: m.Resource.Target.AverageUtilization,
			TargetAverageValue:       m.Resource.Target.AverageValue,
		}
	case m.ContainerResource != nil:
		out.ContainerResource = &autoscalingv1.ContainerResourceMetricSource{
			Name:                     m.ContainerResource.Name,
			Container:                m.ContainerResource.Container,
			TargetAverageUtilization: m.ContainerResource.Target.AverageUtilization,
			TargetAverageValue:       m.ContainerResource.Target.AverageValue,
		}
	case m.External != nil:
		out.External = &autoscalingv1.ExternalMetricSource{
			MetricName:         m.External.Metric.Name,
			MetricSelector:     m.External.Metric.Selector,
			TargetValue:        m.External.Target.Value,
			TargetAverageValue: m.External.Target.AverageValue,
		}
	}
	return out
}

func metricSpecFromV1(m autoscalingv1.MetricSpec) autoscalingv2.MetricSpec {
	out := autoscalingv2.MetricSpec{Type: autoscalingv2.MetricSourceType(m.Type)}
	switch {
	case m.Object != nil:
		t := autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: ptr.To(m.Object.TargetValue), AverageValue: m.Object.AverageValue}
		if m.Object.AverageValue != nil {
			t.Type = autoscalingv2.AverageValueMetricType
		}
		out.Object = &autoscalingv2.ObjectMetricSource{
			DescribedObject: autoscalingv2.CrossVersionObjectReference(m.Object.Target),
			Metric:          autoscalingv2.MetricIdentifier{Name: m.Object.MetricName, Selector: m.Object.Selector},
			Target:          t,
		}
	case m.Pods != nil:
		out.Pods = &autoscalingv2.PodsMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: m.Pods.MetricName, Selector: m.Pods.Selector},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(m.Pods.TargetAverageValue)},
		}
	case m.Resource != nil:
		out.Resource = &autoscalingv2.ResourceMetricSource{
			Name:   m.Resource.Name,
			Target: resourceTargetFromV1(m.Resource.TargetAverageUtilization, m.Resource.TargetAverageValue),
		}
	case m.ContainerResource != nil:
		out.ContainerResource = &autoscalingv2.ContainerResourceMetricSource{
			Name:      m.ContainerResource.Name,
			Container: m.ContainerResource.Container,
			Target:    resourceTargetFromV1(m.ContainerResource.TargetAverageUtilization, m.ContainerResource.TargetAverageValue),
		}
	case m.External != nil:
		t := autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: m.External.TargetValue, AverageValue: m.External.TargetAverageValue}
		if m.External.TargetValue == nil {
			t.Type = autoscalingv2.AverageValueMetricType
		}
		out.External = &autoscalingv2.ExternalMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: m.External.MetricName, Selector: m.External.MetricSelector},
			Target: t,
		}
	}
	return out
}

func resourceTargetFromV1(utilization *int32, averageValue *resource.Quantity) autoscalingv2.MetricTarget {
	t := autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageUtilization: utilization, AverageValue: averageValue}
	if utilization != nil {
		t.Type = autoscalingv2.UtilizationMetricType
	}
	return t
}

func metricStatusToV1(m autoscalingv2.MetricStatus) autoscalingv1.MetricStatus {
	out := autoscalingv1.MetricStatus{Type: autoscalingv1.MetricSourceType(m.Type)}
	switch {
	case m.Object != nil:
		out.Object = &autoscalingv1.ObjectMetricStatus{
			Target:       autoscalingv1.CrossVersionObjectReference(m.Object.DescribedObject),
			MetricName:   m.Object.Metric.Name,
			CurrentValue: derefQuantity(m.Object.Current.Value),
			Selector:     m.Object.Metric.Selector,
			AverageValue: m.Object.Current.AverageValue,
		}
	case m.Pods != nil:
		out.Pods = &autoscalingv1.PodsMetricStatus{
			MetricName:          m.Pods.Metric.Name,
			CurrentAverageValue: derefQuantity(m.Pods.Current.AverageValue),
			Selector:            m.Pods.Metric.Selector,
		}
	case m.Resource != nil:
		out.Resource = &autoscalingv1.ResourceMetricStatus{
			Name:                      m.Resource.Name,
			CurrentAverageUtilization: m.Resource.Current.AverageUtilization,
			CurrentAverageValue:       derefQuantity(m.Resource.Current.AverageValue),
		}
	case m.ContainerResource != nil:
		out.ContainerResource = &autoscalingv1.ContainerResourceMetricStatus{
			Name:                      m.ContainerResource.Name,
			Container:                 m.ContainerResource.Container,
			CurrentAverageUtilization: m.ContainerResource.Current.AverageUtilization,
			CurrentAverageValue:       derefQuantity(m.ContainerResource.Current.AverageValue),
		}
	case m.External != nil:
		out.External = &autoscalingv1.ExternalMetricStatus{
			MetricName:          m.External.Metric.Name,
			MetricSelector:      m.External.Metric.Selector,
			CurrentValue:        derefQuantity(m.External.Current.Value),
			CurrentAverageValue: m.External.Current.AverageValue,
		}
	}
	return out
}

func metricStatusFromV1(m autoscalingv1.MetricStatus) autoscalingv2.MetricStatus {
	out := autoscalingv2.MetricStatus{Type: autoscalingv2.MetricSourceType(m.Type)}
	switch {
	case m.Object != nil:
		out.Object = &autoscalingv2.ObjectMetricStatus{
			DescribedObject: autoscalingv2.CrossVersionObjectReference(m.Object.Target),
			Metric:          autoscalingv2.MetricIdentifier{Name: m.Object.MetricName, Selector: m.Object.Selector},
			Current:         autoscalingv2.MetricValueStatus{Value: ptr.To(m.Object.CurrentValue), AverageValue: m.Object.AverageValue},
		}
	case m.Pods != nil:
		out.Pods = &autoscalingv2.PodsMetricStatus{
			Metric:  autoscalingv2.MetricIdentifier{Name: m.Pods.MetricName, Selector: m.Pods.Selector},
			Current: autoscalingv2.MetricValueStatus{AverageValue: ptr.To(m.Pods.CurrentAverageValue)},
		}
	case m.Resource != nil:
		out.Resource = &autoscalingv2.ResourceMetricStatus{
			Name:    m.Resource.Name,
			Current: autoscalingv2.MetricValueStatus{AverageValue: ptr.To(m.Resource.CurrentAverageValue), AverageUtilization: m.Resource.CurrentAverageUtilization},
		}
	case m.ContainerResource != nil:
		out.ContainerResource = &autoscalingv2.ContainerResourceMetricStatus{
			Name:      m.ContainerResource.Name,
			Container: m.ContainerResource.Container,
			Current:   autoscalingv2.MetricValueStatus{AverageValue: ptr.To(m.ContainerResource.CurrentAverageValue), AverageUtilization: m.ContainerResource.CurrentAverageUtilization},
		}
	case m.External != nil:
		out.External = &autoscalingv2.ExternalMetricStatus{
			Metric:  autoscalingv2.MetricIdentifier{Name: m.External.MetricName, Selector: m.External.MetricSelector},
			Current: autoscalingv2.MetricValueStatus{Value: ptr.To(m.External.CurrentValue), AverageValue: m.External.CurrentAverageValue},
		}
	}
	return out
}
