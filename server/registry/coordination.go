package registry

import (
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// coordination.k8s.io/v1 leases (pkg/registry/coordination/lease). Leases
// are heartbeats: every node renews its lease in kube-node-lease every 10 s
// and every leader-elected component renews its lock in kube-system every
// few seconds. Those renewals are kept in memory only (Volatile), so an idle
// cluster does not wear out its SD card.

// Namespaces whose leases are heartbeats.
const (
	nodeLeaseNamespace   = "kube-node-lease"
	leaderLeaseNamespace = metav1.NamespaceSystem
)

func coordinationResources() []*Resource {
	return []*Resource{leasesResource()}
}

func leasesResource() *Resource {
	return &Resource{
		GroupVersion: coordinationv1.SchemeGroupVersion,
		Name:         "leases",
		Kind:         "Lease",
		SingularName: "lease",
		Namespaced:   true,
		New:          func() runtime.Object { return &coordinationv1.Lease{} },
		NewList:      func() runtime.Object { return &coordinationv1.LeaseList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateLeaseSpec(&obj.(*coordinationv1.Lease).Spec, field.NewPath("spec"))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Holder", "string", coordinationv1.LeaseSpec{}.SwaggerDoc()["holderIdentity"], 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} {
			l := obj.(*coordinationv1.Lease)
			holder := ""
			if l.Spec.HolderIdentity != nil {
				holder = *l.Spec.HolderIdentity
			}
			return []interface{}{l.Name, holder, translateTimestampSince(l.CreationTimestamp)}
		},
		Volatile: func(obj, old runtime.Object) bool {
			var oldLease *coordinationv1.Lease
			if old != nil {
				oldLease = old.(*coordinationv1.Lease)
			}
			return leaseVolatile(obj.(*coordinationv1.Lease), oldLease)
		},
	}
}

// leaseVolatile decides whether a lease write may stay in memory. Every
// lease is created on disk, so a server restart (even a crash) loses no
// object; after that, a node lease write that only says "this node is
// alive" (renewTime, and the holder and duration a kubelet rewrites with
// it) stays in memory: after a restart the lease reads as last stored, and
// the node lifecycle controller gives every node a full grace period from
// its own restart anyway. Leader-election locks in kube-system must
// survive a restart when they change hands, but a renewal by the current
// holder need not. old is nil on create.
func leaseVolatile(lease, old *coordinationv1.Lease) bool {
	switch lease.Namespace {
	case nodeLeaseNamespace:
		return old != nil && leaseChangedOnly(lease, old, true)
	case leaderLeaseNamespace:
		return old != nil && leaseChangedOnly(lease, old, false)
	}
	return false
}

// leaseChangedOnly reports whether lease differs from old only in
// spec.renewTime (and, with holderAndDuration, spec.holderIdentity and
// spec.leaseDurationSeconds), ignoring the bookkeeping every write changes
// (resourceVersion, managedFields timestamps).
func leaseChangedOnly(lease, old *coordinationv1.Lease, holderAndDuration bool) bool {
	strip := func(l *coordinationv1.Lease) *coordinationv1.Lease {
		c := l.DeepCopy()
		c.ResourceVersion = ""
		c.ManagedFields = nil
		c.Spec.RenewTime = nil
		if holderAndDuration {
			c.Spec.HolderIdentity = nil
			c.Spec.LeaseDurationSeconds = nil
		}
		return c
	}
	return apiequality.Semantic.DeepEqual(strip(lease), strip(old))
}

// validateLeaseSpec is ValidateLeaseSpec.
func validateLeaseSpec(spec *coordinationv1.LeaseSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if spec.LeaseDurationSeconds != nil && *spec.LeaseDurationSeconds <= 0 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("leaseDurationSeconds"), *spec.LeaseDurationSeconds, "must be greater than 0"))
	}
	if spec.LeaseTransitions != nil && *spec.LeaseTransitions < 0 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("leaseTransitions"), *spec.LeaseTransitions, "must be greater than or equal to 0"))
	}
	if spec.Strategy != nil {
		allErrs = append(allErrs, validateCoordinatedLeaseStrategy(*spec.Strategy, fldPath.Child("strategy"))...)
	}
	if spec.PreferredHolder != nil && *spec.PreferredHolder != "" && (spec.Strategy == nil || *spec.Strategy == "") {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("preferredHolder"), "may only be specified if `strategy` is defined"))
	}
	return allErrs
}

// validateCoordinatedLeaseStrategy: the built-in strategy, or a
// "vendor.example.com/name" one.
func validateCoordinatedLeaseStrategy(s coordinationv1.CoordinatedLeaseStrategy, fldPath *field.Path) field.ErrorList {
	parts := strings.Split(string(s), "/")
	switch len(parts) {
	case 1:
		if s != coordinationv1.OldestEmulationVersion {
			return field.ErrorList{field.NotSupported(fldPath, s, []string{string(coordinationv1.OldestEmulationVersion)})}
		}
		return nil
	default:
		var allErrs field.ErrorList
		for _, msg := range validation.IsQualifiedName(string(s)) {
			allErrs = append(allErrs, field.Invalid(fldPath, s, msg))
		}
		return allErrs
	}
}
