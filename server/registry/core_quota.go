package registry

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ResourceQuotas and LimitRanges: pkg/registry/core/resourcequota and
// limitrange, with the resource-name rules of pkg/apis/core/helper. orch's
// admission enforces them elsewhere; this file only keeps the objects valid.

var (
	// quotaStandardResources is helper.standardResources: names without a
	// domain that any resource list may use.
	quotaStandardResources = sets.New(
		corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage,
		corev1.ResourceRequestsCPU, corev1.ResourceRequestsMemory, corev1.ResourceRequestsEphemeralStorage,
		corev1.ResourceLimitsCPU, corev1.ResourceLimitsMemory, corev1.ResourceLimitsEphemeralStorage,
		corev1.ResourcePods, corev1.ResourceQuotas, corev1.ResourceServices, corev1.ResourceReplicationControllers,
		corev1.ResourceSecrets, corev1.ResourceConfigMaps, corev1.ResourcePersistentVolumeClaims,
		corev1.ResourceStorage, corev1.ResourceRequestsStorage,
		corev1.ResourceServicesNodePorts, corev1.ResourceServicesLoadBalancers,
	)
	// quotaStandardQuotaResources is helper.standardQuotaResources.
	quotaStandardQuotaResources = sets.New(
		corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage,
		corev1.ResourceRequestsCPU, corev1.ResourceRequestsMemory, corev1.ResourceRequestsStorage,
		corev1.ResourceRequestsEphemeralStorage,
		corev1.ResourceLimitsCPU, corev1.ResourceLimitsMemory, corev1.ResourceLimitsEphemeralStorage,
		corev1.ResourcePods, corev1.ResourceQuotas, corev1.ResourceServices, corev1.ResourceReplicationControllers,
		corev1.ResourceSecrets, corev1.ResourcePersistentVolumeClaims, corev1.ResourceConfigMaps,
		corev1.ResourceServicesNodePorts, corev1.ResourceServicesLoadBalancers,
	)
	// quotaIntegerResources are object counts: whole numbers only.
	quotaIntegerResources = sets.New(
		corev1.ResourcePods, corev1.ResourceQuotas, corev1.ResourceServices, corev1.ResourceReplicationControllers,
		corev1.ResourceSecrets, corev1.ResourceConfigMaps, corev1.ResourcePersistentVolumeClaims,
		corev1.ResourceServicesNodePorts, corev1.ResourceServicesLoadBalancers,
	)
	quotaStandardScopes = sets.New(
		corev1.ResourceQuotaScopeTerminating, corev1.ResourceQuotaScopeNotTerminating,
		corev1.ResourceQuotaScopeBestEffort, corev1.ResourceQuotaScopeNotBestEffort,
		corev1.ResourceQuotaScopePriorityClass, corev1.ResourceQuotaScopeCrossNamespacePodAffinity,
		corev1.ResourceQuotaScopeVolumeAttributesClass,
	)
	quotaPodComputeResources = sets.New(
		corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceLimitsCPU, corev1.ResourceLimitsMemory,
		corev1.ResourceRequestsCPU, corev1.ResourceRequestsMemory,
	)
	limitRangeStandardTypes = sets.New(corev1.LimitTypePod, corev1.LimitTypeContainer, corev1.LimitTypePersistentVolumeClaim)
)

func resourceQuotasResource() *Resource {
	return &Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"},
		Name:         "resourcequotas",
		Kind:         "ResourceQuota",
		SingularName: "resourcequota",
		Namespaced:   true,
		ShortNames:   []string{"quota"},
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &corev1.ResourceQuota{} },
		NewList:      func() runtime.Object { return &corev1.ResourceQuotaList{} },
		Default: func(obj runtime.Object) {
			q := obj.(*corev1.ResourceQuota)
			roundResourceList(q.Spec.Hard)
			roundResourceList(q.Status.Hard)
			roundResourceList(q.Status.Used)
		},
		PrepareForCreate: func(obj runtime.Object) {
			obj.(*corev1.ResourceQuota).Status = corev1.ResourceQuotaStatus{}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.ResourceQuota).Status = old.(*corev1.ResourceQuota).Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			q, oldQ := obj.(*corev1.ResourceQuota), old.(*corev1.ResourceQuota)
			q.Spec = oldQ.Spec
			q.Generation = oldQ.Generation
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateResourceQuota(obj.(*corev1.ResourceQuota))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateResourceQuotaUpdate(obj.(*corev1.ResourceQuota), old.(*corev1.ResourceQuota))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			ageColumn(),
			column("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume.", 0),
			column("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.", 0),
		},
		Row: func(obj runtime.Object) []interface{} { return resourceQuotaRow(obj.(*corev1.ResourceQuota)) },
	}
}

// validateResourceQuota checks the spec (names, quantities, scopes) and the
// status the quota controller writes.
func validateResourceQuota(q *corev1.ResourceQuota) field.ErrorList {
	specPath, statusPath := field.NewPath("spec"), field.NewPath("status")
	allErrs := validateQuotaResourceList(q.Spec.Hard, specPath.Child("hard"))
	allErrs = append(allErrs, validateQuotaScopes(&q.Spec, specPath)...)
	allErrs = append(allErrs, validateQuotaScopeSelector(&q.Spec, specPath)...)
	allErrs = append(allErrs, validateQuotaResourceList(q.Status.Hard, statusPath.Child("hard"))...)
	allErrs = append(allErrs, validateQuotaResourceList(q.Status.Used, statusPath.Child("used"))...)
	return allErrs
}

// validateResourceQuotaUpdate: scopes are fixed at creation.
func validateResourceQuotaUpdate(q, old *corev1.ResourceQuota) field.ErrorList {
	if !sets.New(q.Spec.Scopes...).Equal(sets.New(old.Spec.Scopes...)) {
		return field.ErrorList{field.Invalid(field.NewPath("spec", "scopes"), q.Spec.Scopes, "field is immutable")}
	}
	return nil
}

func validateQuotaResourceList(l corev1.ResourceList, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for _, name := range sortedResourceNames(l) {
		p := fldPath.Key(string(name))
		allErrs = append(allErrs, validateQuotaResourceName(name, p)...)
		allErrs = append(allErrs, validateQuotaQuantity(name, l[name], p)...)
	}
	return allErrs
}

// validateQuotaGenericResourceName is validateResourceName: a qualified name,
// and a standard one unless it has a domain.
func validateQuotaGenericResourceName(name corev1.ResourceName, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for _, msg := range validation.IsQualifiedName(string(name)) {
		allErrs = append(allErrs, field.Invalid(fldPath, name, msg))
	}
	if len(allErrs) > 0 {
		return allErrs
	}
	if !strings.Contains(string(name), "/") && !quotaStandardResources.Has(name) && !quotaIsHugePages(name) {
		allErrs = append(allErrs, field.Invalid(fldPath, name, "must be a standard resource type or fully qualified"))
	}
	return allErrs
}

// validateQuotaResourceName is ValidateResourceQuotaResourceName.
func validateQuotaResourceName(name corev1.ResourceName, fldPath *field.Path) field.ErrorList {
	allErrs := validateQuotaGenericResourceName(name, fldPath)
	if !strings.Contains(string(name), "/") && !isStandardQuotaResource(name) {
		allErrs = append(allErrs, field.Invalid(fldPath, name, "must be a standard resource for quota"))
	}
	return allErrs
}

// validateQuotaQuantity is ValidateResourceQuantityValue: not negative, and
// whole for object counts and extended resources.
func validateQuotaQuantity(name corev1.ResourceName, q resource.Quantity, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if q.Sign() < 0 {
		allErrs = append(allErrs, field.Invalid(fldPath, q.String(), apivalidation.IsNegativeErrorMsg))
	}
	if (quotaIntegerResources.Has(name) || quotaIsExtendedResource(name)) && q.MilliValue()%1000 != 0 {
		allErrs = append(allErrs, field.Invalid(fldPath, q.String(), "must be an integer"))
	}
	return allErrs
}

func quotaIsHugePages(name corev1.ResourceName) bool {
	return strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix) ||
		strings.HasPrefix(string(name), corev1.DefaultResourceRequestsPrefix+corev1.ResourceHugePagesPrefix)
}

func isStandardQuotaResource(name corev1.ResourceName) bool {
	return quotaStandardQuotaResources.Has(name) || quotaIsHugePages(name)
}

// quotaIsNativeResource: no domain, or a kubernetes.io one.
func quotaIsNativeResource(name corev1.ResourceName) bool {
	return !strings.Contains(string(name), "/") || strings.Contains(string(name), corev1.ResourceDefaultNamespacePrefix)
}

// quotaIsExtendedResource is helper.IsExtendedResourceName: a device plugin's
// resource, with a domain outside kubernetes.io.
func quotaIsExtendedResource(name corev1.ResourceName) bool {
	if quotaIsNativeResource(name) || strings.HasPrefix(string(name), corev1.DefaultResourceRequestsPrefix) {
		return false
	}
	return len(validation.IsQualifiedName(corev1.DefaultResourceRequestsPrefix+string(name))) == 0
}

// quotaScopeFitsResource is IsResourceQuotaScopeValidForResource.
func quotaScopeFitsResource(scope corev1.ResourceQuotaScope, name corev1.ResourceName) bool {
	switch scope {
	case corev1.ResourceQuotaScopeTerminating, corev1.ResourceQuotaScopeNotTerminating, corev1.ResourceQuotaScopeNotBestEffort,
		corev1.ResourceQuotaScopePriorityClass, corev1.ResourceQuotaScopeCrossNamespacePodAffinity:
		return name == corev1.ResourcePods || quotaPodComputeResources.Has(name)
	case corev1.ResourceQuotaScopeBestEffort:
		return name == corev1.ResourcePods
	case corev1.ResourceQuotaScopeVolumeAttributesClass:
		return name == corev1.ResourcePersistentVolumeClaims || name == corev1.ResourceRequestsStorage
	}
	return true
}

// quotaConflictingScopes are scope pairs no quota may have together.
var quotaConflictingScopes = [][2]corev1.ResourceQuotaScope{
	{corev1.ResourceQuotaScopeBestEffort, corev1.ResourceQuotaScopeNotBestEffort},
	{corev1.ResourceQuotaScopeTerminating, corev1.ResourceQuotaScopeNotTerminating},
}

func validateQuotaScopes(spec *corev1.ResourceQuotaSpec, fldPath *field.Path) field.ErrorList {
	if len(spec.Scopes) == 0 {
		return nil
	}
	var allErrs field.ErrorList
	scopesPath := fldPath.Child("scopes")
	hard := sortedResourceNames(spec.Hard)
	for _, scope := range spec.Scopes {
		if !quotaStandardScopes.Has(scope) {
			allErrs = append(allErrs, field.Invalid(scopesPath, spec.Scopes, "unsupported scope"))
		}
		for _, name := range hard {
			if isStandardQuotaResource(name) && !quotaScopeFitsResource(scope, name) {
				allErrs = append(allErrs, field.Invalid(scopesPath, spec.Scopes, "unsupported scope applied to resource"))
			}
		}
	}
	have := sets.New(spec.Scopes...)
	for _, pair := range quotaConflictingScopes {
		if have.HasAll(pair[0], pair[1]) {
			allErrs = append(allErrs, field.Invalid(scopesPath, spec.Scopes, "conflicting scopes"))
		}
	}
	return allErrs
}

func validateQuotaScopeSelector(spec *corev1.ResourceQuotaSpec, fldPath *field.Path) field.ErrorList {
	if spec.ScopeSelector == nil {
		return nil
	}
	var allErrs field.ErrorList
	exprPath := fldPath.Child("scopeSelector", "matchExpressions")
	hard := sortedResourceNames(spec.Hard)
	have := sets.New[corev1.ResourceQuotaScope]()
	for _, req := range spec.ScopeSelector.MatchExpressions {
		if !quotaStandardScopes.Has(req.ScopeName) {
			allErrs = append(allErrs, field.Invalid(exprPath.Child("scopeName"), req.ScopeName, "unsupported scope"))
		}
		for _, name := range hard {
			if isStandardQuotaResource(name) && !quotaScopeFitsResource(req.ScopeName, name) {
				allErrs = append(allErrs, field.Invalid(exprPath, spec.ScopeSelector, "unsupported scope applied to resource"))
			}
		}
		switch req.ScopeName {
		case corev1.ResourceQuotaScopeBestEffort, corev1.ResourceQuotaScopeNotBestEffort, corev1.ResourceQuotaScopeTerminating,
			corev1.ResourceQuotaScopeNotTerminating, corev1.ResourceQuotaScopeCrossNamespacePodAffinity:
			if req.Operator != corev1.ScopeSelectorOpExists {
				allErrs = append(allErrs, field.Invalid(exprPath.Child("operator"), req.Operator,
					"must be 'Exists' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity"))
			}
		}
		switch req.Operator {
		case corev1.ScopeSelectorOpIn, corev1.ScopeSelectorOpNotIn:
			if len(req.Values) == 0 {
				allErrs = append(allErrs, field.Required(exprPath.Child("values"), "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector"))
			}
		case corev1.ScopeSelectorOpExists, corev1.ScopeSelectorOpDoesNotExist:
			if len(req.Values) != 0 {
				allErrs = append(allErrs, field.Invalid(exprPath.Child("values"), req.Values, "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector"))
			}
		default:
			allErrs = append(allErrs, field.Invalid(exprPath.Child("operator"), req.Operator, "not a valid selector operator"))
		}
		have.Insert(req.ScopeName)
	}
	for _, pair := range quotaConflictingScopes {
		if have.HasAll(pair[0], pair[1]) {
			allErrs = append(allErrs, field.Invalid(exprPath, spec.Scopes, "conflicting scopes"))
		}
	}
	return allErrs
}

// resourceQuotaRow is printResourceQuota: "name: used/hard" per resource,
// limits.* in LIMIT and everything else in REQUEST.
func resourceQuotaRow(q *corev1.ResourceQuota) []interface{} {
	var requests, limits []string
	for _, name := range sortedResourceNames(q.Status.Hard) {
		used, hard := q.Status.Used[name], q.Status.Hard[name]
		cell := fmt.Sprintf("%s: %s/%s", name, used.String(), hard.String())
		if prefix, _, ok := strings.Cut(string(name), "."); ok && prefix == "limits" {
			limits = append(limits, cell)
		} else {
			requests = append(requests, cell)
		}
	}
	return []interface{}{
		q.Name, translateTimestampSince(q.CreationTimestamp),
		strings.Join(requests, ", "), strings.Join(limits, ", "),
	}
}

func limitRangesResource() *Resource {
	return &Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"},
		Name:         "limitranges",
		Kind:         "LimitRange",
		SingularName: "limitrange",
		Namespaced:   true,
		ShortNames:   []string{"limits"},
		New:          func() runtime.Object { return &corev1.LimitRange{} },
		NewList:      func() runtime.Object { return &corev1.LimitRangeList{} },
		Default:      func(obj runtime.Object) { defaultLimitRange(obj.(*corev1.LimitRange)) },
		Validate:     func(obj runtime.Object) field.ErrorList { return validateLimitRange(obj.(*corev1.LimitRange)) },
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			{Name: "Created At", Type: "date", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]},
		},
		Row: func(obj runtime.Object) []interface{} {
			lr := obj.(*corev1.LimitRange)
			return []interface{}{lr.Name, lr.CreationTimestamp}
		},
	}
}

// defaultLimitRange is SetDefaults_LimitRangeItem plus rounding: for
// containers the default limit falls back to max, the default request to
// the default limit and then to min.
func defaultLimitRange(lr *corev1.LimitRange) {
	for i := range lr.Spec.Limits {
		item := &lr.Spec.Limits[i]
		for _, l := range []corev1.ResourceList{item.Max, item.Min, item.Default, item.DefaultRequest, item.MaxLimitRequestRatio} {
			roundResourceList(l)
		}
		if item.Type != corev1.LimitTypeContainer {
			continue
		}
		if item.Default == nil {
			item.Default = corev1.ResourceList{}
		}
		if item.DefaultRequest == nil {
			item.DefaultRequest = corev1.ResourceList{}
		}
		for name, q := range item.Max {
			if _, ok := item.Default[name]; !ok {
				item.Default[name] = q.DeepCopy()
			}
		}
		for name, q := range item.Default {
			if _, ok := item.DefaultRequest[name]; !ok {
				item.DefaultRequest[name] = q.DeepCopy()
			}
		}
		for name, q := range item.Min {
			if _, ok := item.DefaultRequest[name]; !ok {
				item.DefaultRequest[name] = q.DeepCopy()
			}
		}
	}
}

// validateLimitRange is ValidateLimitRange: one item per type, known
// resource names, and min <= defaultRequest <= default <= max with a
// limit/request ratio of at least 1 that max/min allows.
func validateLimitRange(lr *corev1.LimitRange) field.ErrorList {
	var allErrs field.ErrorList
	limitsPath := field.NewPath("spec", "limits")
	seenTypes := sets.New[corev1.LimitType]()
	for i := range lr.Spec.Limits {
		item := &lr.Spec.Limits[i]
		idxPath := limitsPath.Index(i)
		allErrs = append(allErrs, validateLimitTypeName(item.Type, idxPath.Child("type"))...)
		if seenTypes.Has(item.Type) {
			allErrs = append(allErrs, field.Duplicate(idxPath.Child("type"), item.Type))
		}
		seenTypes.Insert(item.Type)

		names := sets.New[corev1.ResourceName]()
		checkNames := func(l corev1.ResourceList, child string) {
			for _, name := range sortedResourceNames(l) {
				allErrs = append(allErrs, validateLimitRangeResourceName(item.Type, name, idxPath.Child(child).Key(string(name)))...)
				names.Insert(name)
			}
		}
		checkNames(item.Max, "max")
		checkNames(item.Min, "min")
		if item.Type == corev1.LimitTypePod {
			if len(item.Default) > 0 {
				allErrs = append(allErrs, field.Forbidden(idxPath.Child("default"), "may not be specified when `type` is 'Pod'"))
			}
			if len(item.DefaultRequest) > 0 {
				allErrs = append(allErrs, field.Forbidden(idxPath.Child("defaultRequest"), "may not be specified when `type` is 'Pod'"))
			}
		} else {
			checkNames(item.Default, "default")
			checkNames(item.DefaultRequest, "defaultRequest")
		}
		if item.Type == corev1.LimitTypePersistentVolumeClaim {
			_, hasMin := item.Min[corev1.ResourceStorage]
			_, hasMax := item.Max[corev1.ResourceStorage]
			if !hasMin && !hasMax {
				allErrs = append(allErrs, field.Required(idxPath.Child("limits"), "either minimum or maximum storage value is required, but neither was provided"))
			}
		}
		checkNames(item.MaxLimitRequestRatio, "maxLimitRequestRatio")

		// Pod items carry no defaults (and were refused above).
		defaults, defaultRequests := item.Default, item.DefaultRequest
		if item.Type == corev1.LimitTypePod {
			defaults, defaultRequests = nil, nil
		}
		for _, name := range sets.List(names) {
			allErrs = append(allErrs, validateLimitRangeBounds(name, item.Min, item.Max, defaults, defaultRequests, item.MaxLimitRequestRatio, idxPath)...)
		}
	}
	return allErrs
}

// validateLimitRangeBounds orders one resource's bounds in one item.
func validateLimitRangeBounds(name corev1.ResourceName, minL, maxL, defL, defReqL, ratioL corev1.ResourceList, idxPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	key := string(name)
	minQ, hasMin := minL[name]
	maxQ, hasMax := maxL[name]
	defQ, hasDef := defL[name]
	reqQ, hasReq := defReqL[name]
	ratio, hasRatio := ratioL[name]

	if hasMin && hasMax && minQ.Cmp(maxQ) > 0 {
		allErrs = append(allErrs, field.Invalid(idxPath.Child("min").Key(key), minQ.String(),
			fmt.Sprintf("min value %s is greater than max value %s", minQ.String(), maxQ.String())))
	}
	if hasReq && hasMin && minQ.Cmp(reqQ) > 0 {
		allErrs = append(allErrs, field.Invalid(idxPath.Child("defaultRequest").Key(key), reqQ.String(),
			fmt.Sprintf("min value %s is greater than default request value %s", minQ.String(), reqQ.String())))
	}
	if hasReq && hasMax && reqQ.Cmp(maxQ) > 0 {
		allErrs = append(allErrs, field.Invalid(idxPath.Child("defaultRequest").Key(key), reqQ.String(),
			fmt.Sprintf("default request value %s is greater than max value %s", reqQ.String(), maxQ.String())))
	}
	if hasReq && hasDef && reqQ.Cmp(defQ) > 0 {
		allErrs = append(allErrs, field.Invalid(idxPath.Child("defaultRequest").Key(key), reqQ.String(),
			fmt.Sprintf("default request value %s is greater than default limit value %s", reqQ.String(), defQ.String())))
	}
	// Kubernetes reports min (resp. max) as the value of these two errors.
	if hasDef && hasMin && minQ.Cmp(defQ) > 0 {
		allErrs = append(allErrs, field.Invalid(idxPath.Child("default").Key(key), minQ.String(),
			fmt.Sprintf("min value %s is greater than default value %s", minQ.String(), defQ.String())))
	}
	if hasDef && hasMax && defQ.Cmp(maxQ) > 0 {
		allErrs = append(allErrs, field.Invalid(idxPath.Child("default").Key(key), maxQ.String(),
			fmt.Sprintf("default value %s is greater than max value %s", defQ.String(), maxQ.String())))
	}
	if hasRatio && ratio.Cmp(*resource.NewQuantity(1, resource.DecimalSI)) < 0 {
		allErrs = append(allErrs, field.Invalid(idxPath.Child("maxLimitRequestRatio").Key(key), ratio.String(),
			fmt.Sprintf("ratio %s is less than 1", ratio.String())))
	}
	if hasRatio && hasMin && hasMax {
		// Compare in milli-units unless that would overflow.
		ratioValue, minValue, maxValue := float64(ratio.Value()), minQ.Value(), maxQ.Value()
		if ratio.Value() < resource.MaxMilliValue && minValue < resource.MaxMilliValue && maxValue < resource.MaxMilliValue {
			ratioValue = float64(ratio.MilliValue()) / 1000
			minValue, maxValue = minQ.MilliValue(), maxQ.MilliValue()
		}
		limit := float64(maxValue) / float64(minValue)
		if ratioValue > limit {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("maxLimitRequestRatio").Key(key), ratio.String(),
				fmt.Sprintf("ratio %s is greater than max/min = %f", ratio.String(), limit)))
		}
	}
	// Resources that cannot be overcommitted (GPUs, hugepages) need
	// request == limit.
	if !limitRangeOvercommitAllowed(name) && hasDef && hasReq && defQ.Cmp(reqQ) != 0 {
		allErrs = append(allErrs, field.Invalid(idxPath.Child("defaultRequest").Key(key), reqQ.String(),
			fmt.Sprintf("default value %s must equal to defaultRequest value %s in %s", defQ.String(), reqQ.String(), key)))
	}
	return allErrs
}

// limitRangeOvercommitAllowed is helper.IsOvercommitAllowed.
func limitRangeOvercommitAllowed(name corev1.ResourceName) bool {
	return quotaIsNativeResource(name) && !strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix)
}

func validateLimitTypeName(t corev1.LimitType, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for _, msg := range validation.IsQualifiedName(string(t)) {
		allErrs = append(allErrs, field.Invalid(fldPath, t, msg))
	}
	if len(allErrs) > 0 {
		return allErrs
	}
	if !strings.Contains(string(t), "/") && !limitRangeStandardTypes.Has(t) {
		allErrs = append(allErrs, field.Invalid(fldPath, t, "must be a standard limit type or fully qualified"))
	}
	return allErrs
}

// validateLimitRangeResourceName: pods and containers take container
// resources; other types (PVCs) any resource name.
func validateLimitRangeResourceName(t corev1.LimitType, name corev1.ResourceName, fldPath *field.Path) field.ErrorList {
	allErrs := validateQuotaGenericResourceName(name, fldPath)
	if t != corev1.LimitTypePod && t != corev1.LimitTypeContainer {
		return allErrs
	}
	if !strings.Contains(string(name), "/") {
		standard := slices.Contains([]corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage}, name) ||
			strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix)
		if !standard {
			allErrs = append(allErrs, field.Invalid(fldPath, name, "must be a standard resource for containers"))
		}
	} else if !quotaIsNativeResource(name) && !quotaIsExtendedResource(name) {
		allErrs = append(allErrs, field.Invalid(fldPath, name, "doesn't follow extended resource name standard"))
	}
	return allErrs
}
