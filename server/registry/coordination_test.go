package registry

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestCoordinationEntries(t *testing.T) {
	checkEntries(t, []entryCase{
		{coordinationv1.SchemeGroupVersion, "leases", "Lease", true, nil, nil, []string{"Name", "Holder", "Age"}},
	})
}

func newTestLease(ns, name string) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, ResourceVersion: "10",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: "u1"}}},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(name),
			LeaseDurationSeconds: ptr.To[int32](40),
			RenewTime:            &metav1.MicroTime{Time: time.Unix(1000, 0)},
		},
	}
}

func TestLeaseVolatile(t *testing.T) {
	r := tableResource(t, coordinationv1.SchemeGroupVersion, "leases")
	renew := func(l *coordinationv1.Lease) {
		l.Spec.RenewTime = &metav1.MicroTime{Time: time.Unix(1010, 0)}
		l.ResourceVersion = "11"
		l.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet", Time: &metav1.Time{Time: time.Unix(1010, 0)}}}
	}
	tests := []struct {
		name   string
		ns     string
		create bool
		mutate func(*coordinationv1.Lease)
		want   bool
	}{
		{"node lease create", nodeLeaseNamespace, true, nil, false},
		{"node lease renew", nodeLeaseNamespace, false, renew, true},
		{"node lease holder and duration", nodeLeaseNamespace, false, func(l *coordinationv1.Lease) {
			renew(l)
			l.Spec.HolderIdentity = ptr.To("other")
			l.Spec.LeaseDurationSeconds = ptr.To[int32](20)
		}, true},
		{"node lease unchanged", nodeLeaseNamespace, false, func(*coordinationv1.Lease) {}, true},
		{"node lease labels", nodeLeaseNamespace, false, func(l *coordinationv1.Lease) {
			renew(l)
			l.Labels = map[string]string{"a": "b"}
		}, false},
		{"node lease owner", nodeLeaseNamespace, false, func(l *coordinationv1.Lease) { l.OwnerReferences = nil }, false},
		{"node lease transitions", nodeLeaseNamespace, false, func(l *coordinationv1.Lease) {
			l.Spec.LeaseTransitions = ptr.To[int32](1)
		}, false},
		{"leader lease create", leaderLeaseNamespace, true, nil, false},
		{"leader lease renew", leaderLeaseNamespace, false, renew, true},
		{"leader lease changes hands", leaderLeaseNamespace, false, func(l *coordinationv1.Lease) {
			renew(l)
			l.Spec.HolderIdentity = ptr.To("controller-2")
			l.Spec.AcquireTime = &metav1.MicroTime{Time: time.Unix(1010, 0)}
			l.Spec.LeaseTransitions = ptr.To[int32](1)
		}, false},
		{"leader lease holder only", leaderLeaseNamespace, false, func(l *coordinationv1.Lease) {
			l.Spec.HolderIdentity = ptr.To("")
		}, false},
		{"other namespace create", "default", true, nil, false},
		{"other namespace renew", "default", false, renew, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := newTestLease(tt.ns, "node-1")
			if tt.create {
				if got := r.Volatile(old, nil); got != tt.want {
					t.Errorf("Volatile(create) = %v, want %v", got, tt.want)
				}
				return
			}
			obj := old.DeepCopy()
			tt.mutate(obj)
			if got := r.Volatile(obj, old); got != tt.want {
				t.Errorf("Volatile(update) = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestValidateLease(t *testing.T) {
	r := tableResource(t, coordinationv1.SchemeGroupVersion, "leases")
	tests := []struct {
		name string
		spec coordinationv1.LeaseSpec
		want []string
	}{
		{"valid", newTestLease("kube-node-lease", "n").Spec, nil},
		{"empty", coordinationv1.LeaseSpec{}, nil},
		{"zero duration", coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr.To[int32](0)},
			[]string{"spec.leaseDurationSeconds: FieldValueInvalid"}},
		{"negative transitions", coordinationv1.LeaseSpec{LeaseTransitions: ptr.To[int32](-1)},
			[]string{"spec.leaseTransitions: FieldValueInvalid"}},
		{"preferred holder without strategy", coordinationv1.LeaseSpec{PreferredHolder: ptr.To("a")},
			[]string{"spec.preferredHolder: FieldValueForbidden"}},
		{"built-in strategy", coordinationv1.LeaseSpec{Strategy: ptr.To(coordinationv1.OldestEmulationVersion),
			PreferredHolder: ptr.To("a")}, nil},
		{"custom strategy", coordinationv1.LeaseSpec{Strategy: ptr.To(coordinationv1.CoordinatedLeaseStrategy("example.com/mine"))}, nil},
		{"unknown strategy", coordinationv1.LeaseSpec{Strategy: ptr.To(coordinationv1.CoordinatedLeaseStrategy("Newest"))},
			[]string{"spec.strategy: FieldValueNotSupported"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErrors(t, r.Validate(&coordinationv1.Lease{Spec: tt.spec}), tt.want...)
		})
	}
}

func TestLeaseRow(t *testing.T) {
	r := tableResource(t, coordinationv1.SchemeGroupVersion, "leases")
	l := newTestLease("kube-node-lease", "node-1")
	l.CreationTimestamp = metav1.NewTime(time.Now().Add(-4 * 24 * time.Hour))
	if got, want := sprint(r.Row(l)), "[node-1 node-1 4d]"; got != want {
		t.Errorf("row %s, want %s", got, want)
	}
	if got, want := sprint(r.Row(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "x"}})), "[x  <unknown>]"; got != want {
		t.Errorf("row %s, want %s", got, want)
	}
}
