package registry

import (
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func TestPodDisruptionBudget(t *testing.T) {
	r := groupResource(t, "policy", "v1", "poddisruptionbudgets")
	if sprint(r.ShortNames) != "[pdb]" || !r.HasSubresource("status") {
		t.Errorf("entry %v %v", r.ShortNames, r.Subresources)
	}
	newPDB := func() *policyv1.PodDisruptionBudget {
		return &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: policyv1.PodDisruptionBudgetSpec{
				MinAvailable: ptr.To(intstr.FromInt32(2)),
				Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			},
		}
	}
	tests := []struct {
		name   string
		mutate func(p *policyv1.PodDisruptionBudget)
		want   []string
	}{
		{"valid", func(*policyv1.PodDisruptionBudget) {}, nil},
		{"percent", func(p *policyv1.PodDisruptionBudget) { p.Spec.MinAvailable = ptr.To(intstr.FromString("50%")) }, nil},
		{"max unavailable only", func(p *policyv1.PodDisruptionBudget) {
			p.Spec.MinAvailable, p.Spec.MaxUnavailable = nil, ptr.To(intstr.FromInt32(1))
		}, nil},
		{"empty selector", func(p *policyv1.PodDisruptionBudget) { p.Spec.Selector = &metav1.LabelSelector{} }, nil},
		{"both", func(p *policyv1.PodDisruptionBudget) { p.Spec.MaxUnavailable = ptr.To(intstr.FromInt32(1)) }, []string{"spec: FieldValueInvalid"}},
		{"negative", func(p *policyv1.PodDisruptionBudget) { p.Spec.MinAvailable = ptr.To(intstr.FromInt32(-1)) }, []string{"spec.minAvailable: FieldValueInvalid"}},
		{"over 100%", func(p *policyv1.PodDisruptionBudget) {
			p.Spec.MinAvailable, p.Spec.MaxUnavailable = nil, ptr.To(intstr.FromString("101%"))
		}, []string{"spec.maxUnavailable: FieldValueInvalid"}},
		{"not a percent", func(p *policyv1.PodDisruptionBudget) { p.Spec.MinAvailable = ptr.To(intstr.FromString("half")) },
			[]string{"spec.minAvailable: FieldValueInvalid"}},
		{"bad eviction policy", func(p *policyv1.PodDisruptionBudget) {
			p.Spec.UnhealthyPodEvictionPolicy = ptr.To(policyv1.UnhealthyPodEvictionPolicyType("Never"))
		}, []string{"spec.unhealthyPodEvictionPolicy: FieldValueNotSupported"}},
		{"bad selector", func(p *policyv1.PodDisruptionBudget) { p.Spec.Selector.MatchLabels = map[string]string{"a b": "c"} },
			[]string{"spec.selector.matchLabels: FieldValueInvalid"}},
		{"negative status", func(p *policyv1.PodDisruptionBudget) { p.Status.DisruptionsAllowed = -1 },
			[]string{"status.disruptionsAllowed: FieldValueInvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPDB()
			tt.mutate(p)
			checkErrors(t, r.Validate(p), tt.want...)
		})
	}

	p := newPDB()
	p.Status.DisruptionsAllowed = 3
	r.PrepareForCreate(p)
	if p.Status.DisruptionsAllowed != 0 || p.Generation != 1 {
		t.Errorf("create: %+v", p.Status)
	}
	old := p.DeepCopy()
	old.Status.DisruptionsAllowed = 1
	upd := old.DeepCopy()
	upd.Spec.MinAvailable = ptr.To(intstr.FromString("25%"))
	upd.Status.DisruptionsAllowed = 9
	r.PrepareForUpdate(upd, old)
	if upd.Status.DisruptionsAllowed != 1 || upd.Generation != 2 {
		t.Errorf("update: %+v generation %d", upd.Status, upd.Generation)
	}

	upd.CreationTimestamp = metav1.NewTime(time.Now().Add(-5 * time.Minute))
	want := sprint([]interface{}{"web", "25%", "N/A", int64(1), "5m"})
	if got := sprint(r.Row(upd)); got != want {
		t.Errorf("row %s, want %s", got, want)
	}
}
