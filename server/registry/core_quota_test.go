package registry

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func resourceList(kv ...string) corev1.ResourceList {
	l := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return l
}

func TestValidateResourceQuota(t *testing.T) {
	tests := []struct {
		name string
		q    corev1.ResourceQuota
		want []string
	}{
		{"valid", corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{Hard: resourceList(
			"pods", "10", "requests.cpu", "2", "limits.memory", "4Gi", "count/deployments.apps", "5",
			"requests.nvidia.com/gpu", "1", "hugepages-2Mi", "1Gi", "requests.storage", "100Gi")}}, nil},
		{"negative", corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{Hard: resourceList("cpu", "-1")}},
			[]string{"spec.hard[cpu]: FieldValueInvalid"}},
		{"fractional count", corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{Hard: resourceList("pods", "1.5")}},
			[]string{"spec.hard[pods]: FieldValueInvalid"}},
		{"unknown standard name", corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{Hard: resourceList("widgets", "1")}},
			[]string{"spec.hard[widgets]: FieldValueInvalid", "spec.hard[widgets]: FieldValueInvalid"}},
		{"storage is not a quota name", corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{Hard: resourceList("storage", "1Gi")}},
			[]string{"spec.hard[storage]: FieldValueInvalid"}},
		{"scopes", corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{Hard: resourceList("pods", "1"),
			Scopes: []corev1.ResourceQuotaScope{corev1.ResourceQuotaScopeBestEffort, corev1.ResourceQuotaScopeTerminating}}}, nil},
		{"unknown scope", corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{Scopes: []corev1.ResourceQuotaScope{"Sometimes"}}},
			[]string{"spec.scopes: FieldValueInvalid"}},
		{"scope does not fit resource", corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{Hard: resourceList("cpu", "1"),
			Scopes: []corev1.ResourceQuotaScope{corev1.ResourceQuotaScopeBestEffort}}}, []string{"spec.scopes: FieldValueInvalid"}},
		{"conflicting scopes", corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{
			Scopes: []corev1.ResourceQuotaScope{corev1.ResourceQuotaScopeBestEffort, corev1.ResourceQuotaScopeNotBestEffort}}},
			[]string{"spec.scopes: FieldValueInvalid"}},
		{"scope selector", corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{ScopeSelector: &corev1.ScopeSelector{
			MatchExpressions: []corev1.ScopedResourceSelectorRequirement{
				{ScopeName: corev1.ResourceQuotaScopePriorityClass, Operator: corev1.ScopeSelectorOpIn, Values: []string{"high"}},
			}}}}, nil},
		{"scope selector bad operators", corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{ScopeSelector: &corev1.ScopeSelector{
			MatchExpressions: []corev1.ScopedResourceSelectorRequirement{
				{ScopeName: corev1.ResourceQuotaScopeTerminating, Operator: corev1.ScopeSelectorOpIn, Values: []string{"x"}},
				{ScopeName: corev1.ResourceQuotaScopePriorityClass, Operator: corev1.ScopeSelectorOpIn},
			}}}}, []string{"spec.scopeSelector.matchExpressions.operator: FieldValueInvalid", "spec.scopeSelector.matchExpressions.values: FieldValueRequired"}},
		{"bad status", corev1.ResourceQuota{Status: corev1.ResourceQuotaStatus{Hard: resourceList("pods", "1"), Used: resourceList("pods", "-1")}},
			[]string{"status.used[pods]: FieldValueInvalid"}},
	}
	r := configResource(t, "resourcequotas")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErrors(t, r.Validate(&tt.q), tt.want...)
		})
	}
}

func TestResourceQuotaStrategiesAndUpdate(t *testing.T) {
	r := configResource(t, "resourcequotas")
	q := &corev1.ResourceQuota{
		Spec:   corev1.ResourceQuotaSpec{Hard: resourceList("pods", "1"), Scopes: []corev1.ResourceQuotaScope{corev1.ResourceQuotaScopeBestEffort}},
		Status: corev1.ResourceQuotaStatus{Used: resourceList("pods", "9")},
	}
	r.PrepareForCreate(q)
	if q.Status.Used != nil {
		t.Errorf("create kept status %v", q.Status)
	}
	old := q.DeepCopy()
	old.Status.Used = resourceList("pods", "1")

	upd := old.DeepCopy()
	upd.Status = corev1.ResourceQuotaStatus{}
	upd.Spec.Hard = resourceList("pods", "2")
	r.PrepareForUpdate(upd, old)
	if upd.Status.Used == nil {
		t.Errorf("update dropped status")
	}
	wantErrors(t, r.ValidateUpdate(upd, old))

	upd.Spec.Scopes = []corev1.ResourceQuotaScope{corev1.ResourceQuotaScopeNotTerminating}
	wantErrors(t, r.ValidateUpdate(upd, old), "spec.scopes: FieldValueInvalid")

	st := old.DeepCopy()
	st.Spec.Hard = nil
	r.PrepareForStatusUpdate(st, old)
	if st.Spec.Hard == nil {
		t.Errorf("status update changed the spec")
	}
}

func TestResourceQuotaRow(t *testing.T) {
	r := configResource(t, "resourcequotas")
	q := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "compute"},
		Status: corev1.ResourceQuotaStatus{
			Hard: resourceList("requests.cpu", "1", "pods", "10", "limits.memory", "2Gi", "limits.cpu", "2"),
			Used: resourceList("requests.cpu", "500m", "pods", "3", "limits.cpu", "1"),
		},
	}
	got := r.Row(q)
	if got[2] != "pods: 3/10, requests.cpu: 500m/1" || got[3] != "limits.cpu: 1/2, limits.memory: 0/2Gi" {
		t.Errorf("row %q", got)
	}
}

func TestLimitRangeDefaults(t *testing.T) {
	r := configResource(t, "limitranges")
	lr := &corev1.LimitRange{Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{
		{Type: corev1.LimitTypeContainer, Max: resourceList("cpu", "2", "memory", "1Gi"), Min: resourceList("ephemeral-storage", "1Mi"),
			Default: resourceList("memory", "512Mi")},
		{Type: corev1.LimitTypePod, Max: resourceList("cpu", "4")},
	}}}
	r.Default(lr)
	c := lr.Spec.Limits[0]
	if got := rowString([]interface{}{c.Default.Cpu().String(), c.Default.Memory().String()}); got != "[2 512Mi]" {
		t.Errorf("default limits %s", got)
	}
	es := c.DefaultRequest[corev1.ResourceEphemeralStorage]
	if got := rowString([]interface{}{c.DefaultRequest.Cpu().String(), c.DefaultRequest.Memory().String(), es.String()}); got != "[2 512Mi 1Mi]" {
		t.Errorf("default requests %s", got)
	}
	if p := lr.Spec.Limits[1]; p.Default != nil || p.DefaultRequest != nil {
		t.Errorf("pod item got defaults: %v %v", p.Default, p.DefaultRequest)
	}
	wantErrors(t, r.Validate(lr))
}

func TestValidateLimitRange(t *testing.T) {
	item := func(typ corev1.LimitType, f func(*corev1.LimitRangeItem)) corev1.LimitRangeItem {
		it := corev1.LimitRangeItem{Type: typ}
		f(&it)
		return it
	}
	tests := []struct {
		name  string
		items []corev1.LimitRangeItem
		want  []string
	}{
		{"ordered bounds", []corev1.LimitRangeItem{item(corev1.LimitTypeContainer, func(it *corev1.LimitRangeItem) {
			it.Min, it.DefaultRequest, it.Default, it.Max = resourceList("cpu", "100m"), resourceList("cpu", "200m"), resourceList("cpu", "500m"), resourceList("cpu", "1")
			it.MaxLimitRequestRatio = resourceList("cpu", "4")
		})}, nil},
		{"pvc storage", []corev1.LimitRangeItem{item(corev1.LimitTypePersistentVolumeClaim, func(it *corev1.LimitRangeItem) {
			it.Max = resourceList("storage", "10Gi")
		})}, nil},
		{"pvc without storage bounds", []corev1.LimitRangeItem{{Type: corev1.LimitTypePersistentVolumeClaim}},
			[]string{"spec.limits[0].limits: FieldValueRequired"}},
		{"duplicate type", []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer}, {Type: corev1.LimitTypeContainer}},
			[]string{"spec.limits[1].type: FieldValueDuplicate"}},
		{"unknown type", []corev1.LimitRangeItem{{Type: "Node"}}, []string{"spec.limits[0].type: FieldValueInvalid"}},
		{"min above max", []corev1.LimitRangeItem{item(corev1.LimitTypeContainer, func(it *corev1.LimitRangeItem) {
			it.Min, it.Max = resourceList("memory", "2Gi"), resourceList("memory", "1Gi")
		})}, []string{"spec.limits[0].min[memory]: FieldValueInvalid"}},
		{"default request above default", []corev1.LimitRangeItem{item(corev1.LimitTypeContainer, func(it *corev1.LimitRangeItem) {
			it.Default, it.DefaultRequest = resourceList("cpu", "1"), resourceList("cpu", "2")
		})}, []string{"spec.limits[0].defaultRequest[cpu]: FieldValueInvalid"}},
		{"default above max", []corev1.LimitRangeItem{item(corev1.LimitTypeContainer, func(it *corev1.LimitRangeItem) {
			it.Default, it.DefaultRequest, it.Max = resourceList("cpu", "2"), resourceList("cpu", "1"), resourceList("cpu", "1")
		})}, []string{"spec.limits[0].default[cpu]: FieldValueInvalid"}},
		{"min above default and default request", []corev1.LimitRangeItem{item(corev1.LimitTypeContainer, func(it *corev1.LimitRangeItem) {
			it.Default, it.DefaultRequest, it.Min = resourceList("cpu", "1"), resourceList("cpu", "1"), resourceList("cpu", "2")
		})}, []string{"spec.limits[0].default[cpu]: FieldValueInvalid", "spec.limits[0].defaultRequest[cpu]: FieldValueInvalid"}},
		{"ratio below one", []corev1.LimitRangeItem{item(corev1.LimitTypeContainer, func(it *corev1.LimitRangeItem) {
			it.MaxLimitRequestRatio = resourceList("cpu", "500m")
		})}, []string{"spec.limits[0].maxLimitRequestRatio[cpu]: FieldValueInvalid"}},
		{"ratio above max/min", []corev1.LimitRangeItem{item(corev1.LimitTypeContainer, func(it *corev1.LimitRangeItem) {
			it.Min, it.Max, it.MaxLimitRequestRatio = resourceList("cpu", "1"), resourceList("cpu", "2"), resourceList("cpu", "3")
		})}, []string{"spec.limits[0].maxLimitRequestRatio[cpu]: FieldValueInvalid"}},
		{"pod defaults forbidden", []corev1.LimitRangeItem{item(corev1.LimitTypePod, func(it *corev1.LimitRangeItem) {
			it.Default, it.DefaultRequest = resourceList("cpu", "1"), resourceList("cpu", "1")
		})}, []string{"spec.limits[0].default: FieldValueForbidden", "spec.limits[0].defaultRequest: FieldValueForbidden"}},
		{"container resource name", []corev1.LimitRangeItem{item(corev1.LimitTypeContainer, func(it *corev1.LimitRangeItem) {
			it.Max = resourceList("pods", "1")
		})}, []string{"spec.limits[0].max[pods]: FieldValueInvalid"}},
		{"extended resource must not overcommit", []corev1.LimitRangeItem{item(corev1.LimitTypeContainer, func(it *corev1.LimitRangeItem) {
			it.Default, it.DefaultRequest = resourceList("example.com/gpu", "2"), resourceList("example.com/gpu", "1")
		})}, []string{"spec.limits[0].defaultRequest[example.com/gpu]: FieldValueInvalid"}},
	}
	r := configResource(t, "limitranges")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := &corev1.LimitRange{Spec: corev1.LimitRangeSpec{Limits: tt.items}}
			wantErrors(t, r.Validate(lr), tt.want...)
		})
	}
}

func TestLimitRangeRow(t *testing.T) {
	r := configResource(t, "limitranges")
	created := metav1.Unix(1700000000, 0)
	lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "limits", CreationTimestamp: created}}
	got := r.Row(lr)
	if got[0] != "limits" || got[1] != created {
		t.Errorf("row %v", got)
	}
}
