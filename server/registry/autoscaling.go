package registry

import (
	"fmt"
	"strings"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	pathvalidation "k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// autoscaling: HorizontalPodAutoscalers, stored as autoscaling/v2 and also
// served as autoscaling/v1 (see conversion_autoscaling.go), after
// pkg/apis/autoscaling/v2/defaults.go, pkg/apis/autoscaling/validation and
// pkg/registry/autoscaling/horizontalpodautoscaler/strategy.go. The v1
// entry runs the v2 rules on the converted object, as Kubernetes runs them
// on its internal (v2-shaped) type: error paths are v2 paths.

var (
	autoscalingV1GV = schema.GroupVersion{Group: "autoscaling", Version: "v1"}
	autoscalingV2GV = schema.GroupVersion{Group: "autoscaling", Version: "v2"}
)

func autoscalingResources() []*Resource {
	return []*Resource{hpaV2Resource(), hpaV1Resource()}
}

// hpaColumns are the columns of both versions.
func hpaColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		nameColumn(),
		column("Reference", "string", autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["scaleTargetRef"], 0),
		column("Targets", "string", autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["metrics"], 0),
		column("MinPods", "string", autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["minReplicas"], 0),
		column("MaxPods", "integer", autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["maxReplicas"], 0),
		column("Replicas", "integer", autoscalingv2.HorizontalPodAutoscalerStatus{}.SwaggerDoc()["currentReplicas"], 0),
		ageColumn(),
	}
}

func hpaV2Resource() *Resource {
	return &Resource{
		GroupVersion: autoscalingV2GV,
		Name:         "horizontalpodautoscalers",
		Kind:         "HorizontalPodAutoscaler",
		SingularName: "horizontalpodautoscaler",
		Namespaced:   true,
		ShortNames:   []string{"hpa"},
		Categories:   []string{"all"},
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
		NewList:      func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscalerList{} },
		Default:      func(obj runtime.Object) { defaultHPA(obj.(*autoscalingv2.HorizontalPodAutoscaler)) },
		PrepareForCreate: func(obj runtime.Object) {
			prepareHPAForCreate(obj.(*autoscalingv2.HorizontalPodAutoscaler))
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			prepareHPAForUpdate(obj.(*autoscalingv2.HorizontalPodAutoscaler), old.(*autoscalingv2.HorizontalPodAutoscaler))
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			prepareHPAForStatusUpdate(obj.(*autoscalingv2.HorizontalPodAutoscaler), old.(*autoscalingv2.HorizontalPodAutoscaler))
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateHPA(obj.(*autoscalingv2.HorizontalPodAutoscaler))
		},
		Columns: hpaColumns(),
		Row:     func(obj runtime.Object) []interface{} { return hpaRow(obj.(*autoscalingv2.HorizontalPodAutoscaler)) },
	}
}

// hpaV1Resource serves the stored v2 objects as autoscaling/v1. Its hooks
// convert to v2, apply the v2 hook and convert back, so both versions
// follow one set of rules.
func hpaV1Resource() *Resource {
	return &Resource{
		GroupVersion: autoscalingV1GV,
		Name:         "horizontalpodautoscalers",
		Kind:         "HorizontalPodAutoscaler",
		SingularName: "horizontalpodautoscaler",
		Namespaced:   true,
		ShortNames:   []string{"hpa"},
		Categories:   []string{"all"},
		Storage:      &Resource{GroupVersion: autoscalingV2GV, Name: "horizontalpodautoscalers"},
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &autoscalingv1.HorizontalPodAutoscaler{} },
		NewList:      func() runtime.Object { return &autoscalingv1.HorizontalPodAutoscalerList{} },
		Default: func(obj runtime.Object) {
			hpa := obj.(*autoscalingv1.HorizontalPodAutoscaler)
			if hpa.Spec.MinReplicas == nil {
				hpa.Spec.MinReplicas = ptr.To[int32](1)
			}
			viaHPAV2(hpa, nil, func(h, _ *autoscalingv2.HorizontalPodAutoscaler) { defaultHPA(h) })
		},
		PrepareForCreate: func(obj runtime.Object) {
			viaHPAV2(obj.(*autoscalingv1.HorizontalPodAutoscaler), nil, func(h, _ *autoscalingv2.HorizontalPodAutoscaler) { prepareHPAForCreate(h) })
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			viaHPAV2(obj.(*autoscalingv1.HorizontalPodAutoscaler), old.(*autoscalingv1.HorizontalPodAutoscaler), prepareHPAForUpdate)
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			viaHPAV2(obj.(*autoscalingv1.HorizontalPodAutoscaler), old.(*autoscalingv1.HorizontalPodAutoscaler), prepareHPAForStatusUpdate)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			var h autoscalingv2.HorizontalPodAutoscaler
			if err := convertHPAV1ToV2(obj.(*autoscalingv1.HorizontalPodAutoscaler), &h); err != nil {
				return field.ErrorList{field.InternalError(nil, err)}
			}
			return validateHPA(&h)
		},
		Columns: hpaColumns(),
		Row: func(obj runtime.Object) []interface{} {
			var h autoscalingv2.HorizontalPodAutoscaler
			if err := convertHPAV1ToV2(obj.(*autoscalingv1.HorizontalPodAutoscaler), &h); err != nil {
				h.Name = obj.(*autoscalingv1.HorizontalPodAutoscaler).Name
			}
			return hpaRow(&h)
		},
	}
}

// viaHPAV2 applies fn to the v2 form of obj (and old, which may be nil)
// and stores the result back into obj. Both conversions only fail on
// values json cannot encode, which typed objects never hold.
func viaHPAV2(obj, old *autoscalingv1.HorizontalPodAutoscaler, fn func(obj, old *autoscalingv2.HorizontalPodAutoscaler)) {
	var h, oldH autoscalingv2.HorizontalPodAutoscaler
	if convertHPAV1ToV2(obj, &h) != nil {
		return
	}
	var oldArg *autoscalingv2.HorizontalPodAutoscaler
	if old != nil {
		if convertHPAV1ToV2(old, &oldH) != nil {
			return
		}
		oldArg = &oldH
	}
	fn(&h, oldArg)
	var back autoscalingv1.HorizontalPodAutoscaler
	if convertHPAV2ToV1(&h, &back) != nil {
		return
	}
	back.TypeMeta = obj.TypeMeta
	*obj = back
}

// defaultHPA is SetDefaults_HorizontalPodAutoscaler of autoscaling/v2.
func defaultHPA(hpa *autoscalingv2.HorizontalPodAutoscaler) {
	if hpa.Spec.MinReplicas == nil {
		hpa.Spec.MinReplicas = ptr.To[int32](1)
	}
	if len(hpa.Spec.Metrics) == 0 {
		hpa.Spec.Metrics = []autoscalingv2.MetricSpec{cpuUtilizationMetric(hpaDefaultCPUUtilization)}
	}
	// A given behavior is completed with the default rules.
	if b := hpa.Spec.Behavior; b != nil {
		b.ScaleUp = completeHPAScalingRules(b.ScaleUp, autoscalingv2.HPAScalingRules{
			StabilizationWindowSeconds: ptr.To[int32](0),
			SelectPolicy:               ptr.To(autoscalingv2.MaxChangePolicySelect),
			Policies: []autoscalingv2.HPAScalingPolicy{
				{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
				{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
			},
		})
		// The scale-down window stays unset: the controller's flag decides it.
		b.ScaleDown = completeHPAScalingRules(b.ScaleDown, autoscalingv2.HPAScalingRules{
			SelectPolicy: ptr.To(autoscalingv2.MaxChangePolicySelect),
			Policies: []autoscalingv2.HPAScalingPolicy{
				{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
			},
		})
	}
}

// completeHPAScalingRules fills the unset fields of rules from def.
func completeHPAScalingRules(rules *autoscalingv2.HPAScalingRules, def autoscalingv2.HPAScalingRules) *autoscalingv2.HPAScalingRules {
	if rules == nil {
		return &def
	}
	if rules.SelectPolicy == nil {
		rules.SelectPolicy = def.SelectPolicy
	}
	if rules.StabilizationWindowSeconds == nil {
		rules.StabilizationWindowSeconds = def.StabilizationWindowSeconds
	}
	if rules.Policies == nil {
		rules.Policies = def.Policies
	}
	return rules
}

func prepareHPAForCreate(hpa *autoscalingv2.HorizontalPodAutoscaler) {
	hpa.Status = autoscalingv2.HorizontalPodAutoscalerStatus{}
	hpa.Generation = 1
}

func prepareHPAForUpdate(hpa, old *autoscalingv2.HorizontalPodAutoscaler) {
	hpa.Status = old.Status
	bumpGeneration(hpa, old, &hpa.Spec, &old.Spec)
}

func prepareHPAForStatusUpdate(hpa, old *autoscalingv2.HorizontalPodAutoscaler) {
	hpa.Spec = old.Spec
	hpa.Generation = old.Generation
}

// validateHPA is ValidateHorizontalPodAutoscaler (without scale to zero,
// an alpha feature) plus the status counters.
func validateHPA(hpa *autoscalingv2.HorizontalPodAutoscaler) field.ErrorList {
	specPath := field.NewPath("spec")
	spec := &hpa.Spec
	allErrs := validateCrossVersionObjectReference(spec.ScaleTargetRef, specPath.Child("scaleTargetRef"))
	minReplicas := ptr.Deref(spec.MinReplicas, 1)
	if minReplicas < 1 {
		allErrs = append(allErrs, field.Invalid(specPath.Child("minReplicas"), minReplicas, "must be greater than or equal to 1"))
	}
	if spec.MaxReplicas < 1 {
		allErrs = append(allErrs, field.Invalid(specPath.Child("maxReplicas"), spec.MaxReplicas, "must be greater than 0"))
	}
	if minReplicas > spec.MaxReplicas {
		allErrs = append(allErrs, field.Invalid(specPath.Child("maxReplicas"), spec.MaxReplicas, "must be greater than or equal to `minReplicas`"))
	}
	for i, m := range spec.Metrics {
		allErrs = append(allErrs, validateHPAMetricSpec(m, specPath.Child("metrics").Index(i))...)
	}
	if b := spec.Behavior; b != nil {
		allErrs = append(allErrs, validateHPAScalingRules(b.ScaleUp, specPath.Child("behavior", "scaleUp"))...)
		allErrs = append(allErrs, validateHPAScalingRules(b.ScaleDown, specPath.Child("behavior", "scaleDown"))...)
	}
	stPath := field.NewPath("status")
	allErrs = append(allErrs, validateNonnegativeFields(stPath, map[string]int64{
		"currentReplicas": int64(hpa.Status.CurrentReplicas),
		"desiredReplicas": int64(hpa.Status.DesiredReplicas),
	})...)
	return allErrs
}

func validateCrossVersionObjectReference(ref autoscalingv2.CrossVersionObjectReference, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for _, f := range []struct{ name, value string }{{"kind", ref.Kind}, {"name", ref.Name}} {
		if f.value == "" {
			allErrs = append(allErrs, field.Required(fldPath.Child(f.name), ""))
			continue
		}
		for _, msg := range pathvalidation.IsValidPathSegmentName(f.value) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child(f.name), f.value, msg))
		}
	}
	return allErrs
}

var hpaMetricSourceTypes = []autoscalingv2.MetricSourceType{
	autoscalingv2.ContainerResourceMetricSourceType, autoscalingv2.ExternalMetricSourceType,
	autoscalingv2.ObjectMetricSourceType, autoscalingv2.PodsMetricSourceType, autoscalingv2.ResourceMetricSourceType,
}

// validateHPAMetricSpec checks that exactly the source named by type is
// given, and the source itself.
func validateHPAMetricSpec(m autoscalingv2.MetricSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if m.Type == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("type"), "must specify a metric source type"))
	}
	present := map[string]bool{
		"object": m.Object != nil, "pods": m.Pods != nil, "resource": m.Resource != nil,
		"containerResource": m.ContainerResource != nil, "external": m.External != nil,
	}
	var expected string
	switch m.Type {
	case autoscalingv2.ObjectMetricSourceType:
		expected = "object"
		if m.Object != nil {
			allErrs = append(allErrs, validateCrossVersionObjectReference(m.Object.DescribedObject, fldPath.Child("object", "describedObject"))...)
			allErrs = append(allErrs, validateHPAMetricIdentifier(m.Object.Metric, fldPath.Child("object", "metric"))...)
			allErrs = append(allErrs, validateHPAMetricTarget(m.Object.Target, fldPath.Child("object", "target"))...)
			if m.Object.Target.Value == nil && m.Object.Target.AverageValue == nil {
				allErrs = append(allErrs, field.Required(fldPath.Child("object", "target", "value"), "must set either a target value or averageValue"))
			}
		}
	case autoscalingv2.PodsMetricSourceType:
		expected = "pods"
		if m.Pods != nil {
			allErrs = append(allErrs, validateHPAMetricIdentifier(m.Pods.Metric, fldPath.Child("pods", "metric"))...)
			allErrs = append(allErrs, validateHPAMetricTarget(m.Pods.Target, fldPath.Child("pods", "target"))...)
			if m.Pods.Target.AverageValue == nil {
				allErrs = append(allErrs, field.Required(fldPath.Child("pods", "target", "averageValue"), "must specify a positive target averageValue"))
			}
		}
	case autoscalingv2.ResourceMetricSourceType:
		expected = "resource"
		if m.Resource != nil {
			allErrs = append(allErrs, validateHPAResourceTarget(string(m.Resource.Name), m.Resource.Target, fldPath.Child("resource"))...)
		}
	case autoscalingv2.ContainerResourceMetricSourceType:
		expected = "containerResource"
		if c := m.ContainerResource; c != nil {
			allErrs = append(allErrs, validateHPAResourceTarget(string(c.Name), c.Target, fldPath.Child("containerResource"))...)
			if c.Container == "" {
				allErrs = append(allErrs, field.Required(fldPath.Child("containerResource", "container"), "must specify a container"))
			}
		}
	case autoscalingv2.ExternalMetricSourceType:
		expected = "external"
		if m.External != nil {
			tPath := fldPath.Child("external", "target")
			allErrs = append(allErrs, validateHPAMetricIdentifier(m.External.Metric, fldPath.Child("external", "metric"))...)
			allErrs = append(allErrs, validateHPAMetricTarget(m.External.Target, tPath)...)
			switch {
			case m.External.Target.Value == nil && m.External.Target.AverageValue == nil:
				allErrs = append(allErrs, field.Required(tPath.Child("value"), "must set either a target value for metric or a per-pod target"))
			case m.External.Target.Value != nil && m.External.Target.AverageValue != nil:
				allErrs = append(allErrs, field.Forbidden(tPath.Child("value"), "may not set both a target value for metric and a per-pod target"))
			}
		}
	default:
		if m.Type != "" {
			allErrs = append(allErrs, field.NotSupported(fldPath.Child("type"), m.Type, hpaMetricSourceTypes))
		}
	}
	if expected != "" && !present[expected] {
		allErrs = append(allErrs, field.Required(fldPath.Child(expected), "must populate information for the given metric source"))
	}
	for _, name := range []string{"containerResource", "external", "object", "pods", "resource"} {
		if present[name] && name != expected {
			allErrs = append(allErrs, field.Forbidden(fldPath.Child(name), "must populate the given metric source only"))
		}
	}
	return allErrs
}

func validateHPAResourceTarget(name string, t autoscalingv2.MetricTarget, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if name == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("name"), "must specify a resource name"))
	}
	tPath := fldPath.Child("target")
	allErrs = append(allErrs, validateHPAMetricTarget(t, tPath)...)
	switch {
	case t.AverageUtilization == nil && t.AverageValue == nil:
		allErrs = append(allErrs, field.Required(tPath.Child("averageUtilization"), "must set either a target raw value or a target utilization"))
	case t.AverageUtilization != nil && t.AverageValue != nil:
		allErrs = append(allErrs, field.Forbidden(tPath.Child("averageValue"), "may not set both a target raw value and a target utilization"))
	}
	return allErrs
}

func validateHPAMetricIdentifier(id autoscalingv2.MetricIdentifier, fldPath *field.Path) field.ErrorList {
	if id.Name == "" {
		return field.ErrorList{field.Required(fldPath.Child("name"), "must specify a metric name")}
	}
	var allErrs field.ErrorList
	for _, msg := range pathvalidation.IsValidPathSegmentName(id.Name) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("name"), id.Name, msg))
	}
	return allErrs
}

func validateHPAMetricTarget(t autoscalingv2.MetricTarget, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	switch t.Type {
	case "":
		allErrs = append(allErrs, field.Required(fldPath.Child("type"), "must specify a metric target type"))
	case autoscalingv2.UtilizationMetricType, autoscalingv2.ValueMetricType, autoscalingv2.AverageValueMetricType:
	default:
		allErrs = append(allErrs, field.Invalid(fldPath.Child("type"), t.Type, "must be either Utilization, Value, or AverageValue"))
	}
	if t.Value != nil && t.Value.Sign() != 1 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("value"), t.Value, "must be positive"))
	}
	if t.AverageValue != nil && t.AverageValue.Sign() != 1 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("averageValue"), t.AverageValue, "must be positive"))
	}
	if t.AverageUtilization != nil && *t.AverageUtilization < 1 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("averageUtilization"), *t.AverageUtilization, "must be greater than 0"))
	}
	return allErrs
}

// Bounds of the behavior fields (pkg/apis/autoscaling/validation).
const (
	maxHPAPeriodSeconds              = 1800
	maxHPAStabilizationWindowSeconds = 3600
)

func validateHPAScalingRules(rules *autoscalingv2.HPAScalingRules, fldPath *field.Path) field.ErrorList {
	if rules == nil {
		return nil
	}
	var allErrs field.ErrorList
	if w := rules.StabilizationWindowSeconds; w != nil {
		if *w < 0 {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("stabilizationWindowSeconds"), *w, "must be greater than or equal to zero"))
		}
		if *w > maxHPAStabilizationWindowSeconds {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("stabilizationWindowSeconds"), *w,
				fmt.Sprintf("must be less than or equal to %v", maxHPAStabilizationWindowSeconds)))
		}
	}
	if p := rules.SelectPolicy; p != nil {
		switch *p {
		case autoscalingv2.DisabledPolicySelect, autoscalingv2.MaxChangePolicySelect, autoscalingv2.MinChangePolicySelect:
		default:
			allErrs = append(allErrs, field.NotSupported(fldPath.Child("selectPolicy"), *p, []autoscalingv2.ScalingPolicySelect{
				autoscalingv2.DisabledPolicySelect, autoscalingv2.MaxChangePolicySelect, autoscalingv2.MinChangePolicySelect}))
		}
	}
	if t := rules.Tolerance; t != nil && t.Sign() < 0 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("tolerance"), t, "must be greater than or equal to zero"))
	}
	policiesPath := fldPath.Child("policies")
	if len(rules.Policies) == 0 {
		allErrs = append(allErrs, field.Required(policiesPath, "must specify at least one Policy"))
	}
	for i, p := range rules.Policies {
		pPath := policiesPath.Index(i)
		if p.Type != autoscalingv2.PodsScalingPolicy && p.Type != autoscalingv2.PercentScalingPolicy {
			allErrs = append(allErrs, field.NotSupported(pPath.Child("type"), p.Type,
				[]autoscalingv2.HPAScalingPolicyType{autoscalingv2.PercentScalingPolicy, autoscalingv2.PodsScalingPolicy}))
		}
		if p.Value <= 0 {
			allErrs = append(allErrs, field.Invalid(pPath.Child("value"), p.Value, "must be greater than zero"))
		}
		if p.PeriodSeconds <= 0 {
			allErrs = append(allErrs, field.Invalid(pPath.Child("periodSeconds"), p.PeriodSeconds, "must be greater than zero"))
		}
		if p.PeriodSeconds > maxHPAPeriodSeconds {
			allErrs = append(allErrs, field.Invalid(pPath.Child("periodSeconds"), p.PeriodSeconds,
				fmt.Sprintf("must be less than or equal to %v", maxHPAPeriodSeconds)))
		}
	}
	return allErrs
}

func hpaRow(hpa *autoscalingv2.HorizontalPodAutoscaler) []interface{} {
	minPods := "<unset>"
	if hpa.Spec.MinReplicas != nil {
		minPods = fmt.Sprintf("%d", *hpa.Spec.MinReplicas)
	}
	return []interface{}{
		hpa.Name,
		hpa.Spec.ScaleTargetRef.Kind + "/" + hpa.Spec.ScaleTargetRef.Name,
		formatHPAMetrics(hpa.Spec.Metrics, hpa.Status.CurrentMetrics),
		minPods, int64(hpa.Spec.MaxReplicas), int64(hpa.Status.CurrentReplicas),
		translateTimestampSince(hpa.CreationTimestamp),
	}
}

// formatHPAMetrics is the TARGETS cell: "current/target" per metric
// (resource metrics prefixed with their name), at most two, then
// " + N more...".
func formatHPAMetrics(specs []autoscalingv2.MetricSpec, statuses []autoscalingv2.MetricStatus) string {
	if len(specs) == 0 {
		return "<none>"
	}
	const maximum = 2
	list := make([]string, 0, len(specs))
	for i, spec := range specs {
		var st *autoscalingv2.MetricStatus
		if i < len(statuses) {
			st = &statuses[i]
		}
		list = append(list, formatHPAMetric(spec, st))
	}
	if len(list) > maximum {
		return fmt.Sprintf("%s + %d more...", strings.Join(list[:maximum], ", "), len(list)-maximum)
	}
	return strings.Join(list, ", ")
}

func formatHPAMetric(spec autoscalingv2.MetricSpec, st *autoscalingv2.MetricStatus) string {
	const unknown = "<unknown>"
	current := unknown
	switch {
	case spec.Type == autoscalingv2.ExternalMetricSourceType && spec.External != nil:
		if t := spec.External.Target; t.AverageValue != nil {
			if st != nil && st.External != nil && st.External.Current.AverageValue != nil {
				current = st.External.Current.AverageValue.String()
			}
			return fmt.Sprintf("%s/%s (avg)", current, t.AverageValue.String())
		}
		if st != nil && st.External != nil && st.External.Current.Value != nil {
			current = st.External.Current.Value.String()
		}
		return fmt.Sprintf("%s/%s", current, spec.External.Target.Value.String())
	case spec.Type == autoscalingv2.PodsMetricSourceType && spec.Pods != nil:
		if st != nil && st.Pods != nil && st.Pods.Current.AverageValue != nil {
			current = st.Pods.Current.AverageValue.String()
		}
		return fmt.Sprintf("%s/%s", current, spec.Pods.Target.AverageValue.String())
	case spec.Type == autoscalingv2.ObjectMetricSourceType && spec.Object != nil:
		if t := spec.Object.Target; t.AverageValue != nil {
			if st != nil && st.Object != nil && st.Object.Current.AverageValue != nil {
				current = st.Object.Current.AverageValue.String()
			}
			return fmt.Sprintf("%s/%s (avg)", current, t.AverageValue.String())
		}
		if st != nil && st.Object != nil && st.Object.Current.Value != nil {
			current = st.Object.Current.Value.String()
		}
		return fmt.Sprintf("%s/%s", current, spec.Object.Target.Value.String())
	case spec.Type == autoscalingv2.ResourceMetricSourceType && spec.Resource != nil:
		var cur *autoscalingv2.MetricValueStatus
		if st != nil && st.Resource != nil {
			cur = &st.Resource.Current
		}
		return formatHPAResourceMetric(string(spec.Resource.Name), spec.Resource.Target, cur)
	case spec.Type == autoscalingv2.ContainerResourceMetricSourceType && spec.ContainerResource != nil:
		var cur *autoscalingv2.MetricValueStatus
		if st != nil && st.ContainerResource != nil {
			cur = &st.ContainerResource.Current
		}
		return formatHPAResourceMetric(string(spec.ContainerResource.Name), spec.ContainerResource.Target, cur)
	}
	return "<unknown type>"
}

func formatHPAResourceMetric(name string, target autoscalingv2.MetricTarget, cur *autoscalingv2.MetricValueStatus) string {
	current := "<unknown>"
	if target.AverageValue != nil {
		if cur != nil && cur.AverageValue != nil {
			current = cur.AverageValue.String()
		}
		return fmt.Sprintf("%s: %s/%s", name, current, target.AverageValue.String())
	}
	if cur != nil && cur.AverageUtilization != nil {
		current = fmt.Sprintf("%d%%", *cur.AverageUtilization)
	}
	want := "<auto>"
	if target.AverageUtilization != nil {
		want = fmt.Sprintf("%d%%", *target.AverageUtilization)
	}
	return fmt.Sprintf("%s: %s/%s", name, current, want)
}
