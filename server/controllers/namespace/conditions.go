package namespace

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The conditions the controller maintains, in Kubernetes' order, with the
// reason and message of their "all is well" (False) state. Users and tools
// read these strings (kubectl describe namespace), so they are Kubernetes'.
var (
	conditionTypes = []corev1.NamespaceConditionType{
		corev1.NamespaceDeletionDiscoveryFailure,
		corev1.NamespaceDeletionGVParsingFailure,
		corev1.NamespaceDeletionContentFailure,
		corev1.NamespaceContentRemaining,
		corev1.NamespaceFinalizersRemaining,
	}
	okMessages = map[corev1.NamespaceConditionType]string{
		corev1.NamespaceDeletionDiscoveryFailure: "All resources successfully discovered",
		corev1.NamespaceDeletionGVParsingFailure: "All legacy kube types successfully parsed",
		corev1.NamespaceDeletionContentFailure:   "All content successfully deleted, may be waiting on finalization",
		corev1.NamespaceContentRemaining:         "All content successfully removed",
		corev1.NamespaceFinalizersRemaining:      "All content successfully removed",
	}
	okReasons = map[corev1.NamespaceConditionType]string{
		corev1.NamespaceDeletionDiscoveryFailure: "ResourcesDiscovered",
		corev1.NamespaceDeletionGVParsingFailure: "ParsedGroupVersions",
		corev1.NamespaceDeletionContentFailure:   "ContentDeleted",
		corev1.NamespaceContentRemaining:         "ContentRemoved",
		corev1.NamespaceFinalizersRemaining:      "ContentRemoved",
	}
)

// conditionUpdater collects the failures of one deletion pass and turns
// them into status conditions. Discovery cannot fail in process (the
// resource table is local), so those two conditions always read "ok".
type conditionUpdater struct {
	now                 func() time.Time
	newConditions       []corev1.NamespaceCondition
	deleteContentErrors []error
}

// contentTotals records what remains: instances per resource and per
// finalizer.
func (u *conditionUpdater) contentTotals(remaining map[schema.GroupVersionResource]int, byFinalizer map[string]int) {
	if len(remaining) > 0 {
		var parts []string
		for gvr, n := range remaining {
			if n > 0 {
				parts = append(parts, fmt.Sprintf("%s.%s has %d resource instances", gvr.Resource, gvr.Group, n))
			}
		}
		sort.Strings(parts)
		u.newConditions = append(u.newConditions, u.condition(corev1.NamespaceContentRemaining,
			"SomeResourcesRemain", "Some resources are remaining: "+strings.Join(parts, ", ")))
	}
	if len(byFinalizer) > 0 {
		var parts []string
		for f, n := range byFinalizer {
			if n > 0 {
				parts = append(parts, fmt.Sprintf("%s in %d resource instances", f, n))
			}
		}
		sort.Strings(parts)
		u.newConditions = append(u.newConditions, u.condition(corev1.NamespaceFinalizersRemaining,
			"SomeFinalizerRemain", "Some finalizers are remaining: "+strings.Join(parts, ", ")))
	}
}

func (u *conditionUpdater) condition(t corev1.NamespaceConditionType, reason, message string) corev1.NamespaceCondition {
	return corev1.NamespaceCondition{
		Type:               t,
		Status:             corev1.ConditionTrue,
		LastTransitionTime: metav1.NewTime(u.now()),
		Reason:             reason,
		Message:            message,
	}
}

// apply writes the conditions into status: failures as True, everything
// else as its "ok" False state. It reports whether status changed.
func (u *conditionUpdater) apply(status *corev1.NamespaceStatus) bool {
	if len(u.deleteContentErrors) > 0 {
		msgs := make([]string, 0, len(u.deleteContentErrors))
		for _, err := range u.deleteContentErrors {
			msgs = append(msgs, err.Error())
		}
		sort.Strings(msgs)
		u.newConditions = append(u.newConditions, u.condition(corev1.NamespaceDeletionContentFailure,
			"ContentDeletionFailed", fmt.Sprintf("Failed to delete all resource types, %d remaining: %v", len(msgs), strings.Join(msgs, ", "))))
	}
	changed := false
	for _, t := range conditionTypes {
		want := findCondition(u.newConditions, t)
		if want == nil {
			ok := corev1.NamespaceCondition{
				Type:               t,
				Status:             corev1.ConditionFalse,
				LastTransitionTime: metav1.NewTime(u.now()),
				Reason:             okReasons[t],
				Message:            okMessages[t],
			}
			want = &ok
		}
		old := findCondition(status.Conditions, t)
		switch {
		case old == nil:
			status.Conditions = append(status.Conditions, *want)
			changed = true
		case old.Status != want.Status || old.Reason != want.Reason || old.Message != want.Message:
			if old.Status != want.Status {
				old.LastTransitionTime = metav1.NewTime(u.now())
			}
			old.Status, old.Reason, old.Message = want.Status, want.Reason, want.Message
			changed = true
		}
	}
	return changed
}

func findCondition(conditions []corev1.NamespaceCondition, t corev1.NamespaceConditionType) *corev1.NamespaceCondition {
	for i := range conditions {
		if conditions[i].Type == t {
			return &conditions[i]
		}
	}
	return nil
}
