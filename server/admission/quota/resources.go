// Package quota measures what objects consume of a ResourceQuota, as
// Kubernetes' pkg/quota/v1 and its evaluators do: the usage of one object
// (object counts, pod compute requests and limits, service node ports,
// claimed storage), whether a quota's scopes select it, and the resource
// list arithmetic and message formats quota admission uses.
//
// It is pure computation: no state, no I/O. The quota admission plugin
// (server/admission) and the quota controller
// (server/controllers/resourcequota) share it so that both count the same.
package quota

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Add returns a + b: keys of either, summed where both have them.
func Add(a, b corev1.ResourceList) corev1.ResourceList {
	out := make(corev1.ResourceList, len(a)+len(b))
	for k, v := range a {
		out[k] = v.DeepCopy()
	}
	for k, v := range b {
		if cur, ok := out[k]; ok {
			cur.Add(v)
			out[k] = cur
		} else {
			out[k] = v.DeepCopy()
		}
	}
	return out
}

// Subtract returns a - b over the keys of either (a missing key is zero).
func Subtract(a, b corev1.ResourceList) corev1.ResourceList {
	out := make(corev1.ResourceList, len(a)+len(b))
	for k, v := range a {
		out[k] = v.DeepCopy()
	}
	for k, v := range b {
		cur, ok := out[k]
		if !ok {
			cur = resource.Quantity{Format: v.Format}
		}
		cur.Sub(v)
		out[k] = cur
	}
	return out
}

// SubtractNonNegative is Subtract with negative results clamped to zero:
// what an update newly consumes.
func SubtractNonNegative(a, b corev1.ResourceList) corev1.ResourceList {
	out := Subtract(a, b)
	for k, v := range out {
		if v.Sign() < 0 {
			out[k] = resource.Quantity{Format: v.Format}
		}
	}
	return out
}

// Mask returns the entries of list whose names are in names.
func Mask(list corev1.ResourceList, names []corev1.ResourceName) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, n := range names {
		if v, ok := list[n]; ok {
			out[n] = v.DeepCopy()
		}
	}
	return out
}

// RemoveZeros returns list without its zero entries.
func RemoveZeros(list corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	for k, v := range list {
		if !v.IsZero() {
			out[k] = v
		}
	}
	return out
}

// LessThanOrEqual reports whether every entry of a is at most the entry of
// the same name in b (a name b lacks is not constrained), and the names
// that exceed.
func LessThanOrEqual(a, b corev1.ResourceList) (bool, []corev1.ResourceName) {
	var exceeded []corev1.ResourceName
	for k, v := range a {
		if limit, ok := b[k]; ok && v.Cmp(limit) > 0 {
			exceeded = append(exceeded, k)
		}
	}
	sortNames(exceeded)
	return len(exceeded) == 0, exceeded
}

// Equals reports whether a and b have the same names and equal quantities.
func Equals(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || v.Cmp(w) != 0 {
			return false
		}
	}
	return true
}

// ResourceNames returns the names in list, sorted.
func ResourceNames(list corev1.ResourceList) []corev1.ResourceName {
	out := make([]corev1.ResourceName, 0, len(list))
	for k := range list {
		out = append(out, k)
	}
	sortNames(out)
	return out
}

// PrettyPrint formats list as Kubernetes' quota messages do:
// "limits.cpu=2,pods=1", names sorted.
func PrettyPrint(list corev1.ResourceList) string {
	parts := make([]string, 0, len(list))
	for _, k := range ResourceNames(list) {
		v := list[k]
		parts = append(parts, string(k)+"="+v.String())
	}
	return strings.Join(parts, ",")
}

// PrettyPrintNames formats names sorted and comma-separated.
func PrettyPrintNames(names []corev1.ResourceName) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = string(n)
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

func sortNames(names []corev1.ResourceName) {
	sort.Slice(names, func(i, j int) bool { return names[i] < names[j] })
}

func one() resource.Quantity { return *resource.NewQuantity(1, resource.DecimalSI) }
