package registry

import (
	"fmt"
	"strings"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"
)

// Helpers shared by the kinds' table printers and strategies. They follow
// Kubernetes' pkg/printers/internalversion so cells read as `kubectl get`
// shows them against a real cluster.

// translateTimestampSince is the AGE of a timestamp, e.g. "5m" or "3d4h";
// "<unknown>" when ts is zero.
func translateTimestampSince(ts metav1.Time) string {
	if ts.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(ts.Time))
}

// translateTimestampUntil is the time left until ts, "<unknown>" when zero.
func translateTimestampUntil(ts metav1.Time) string {
	if ts.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Until(ts.Time))
}

// translateMicroTimestampSince is translateTimestampSince for MicroTime.
func translateMicroTimestampSince(ts metav1.MicroTime) string {
	if ts.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(ts.Time))
}

// formatLabels renders a label map ("a=b,c=d", sorted), "<none>" if empty.
func formatLabels(m map[string]string) string {
	return labels.FormatLabels(m)
}

// formatLabelSelector renders a label selector the way kubectl does
// ("app=web,tier in (a,b)"), "<none>" for nil and "<none>" for an empty
// selector, as Kubernetes' printers show.
func formatLabelSelector(sel *metav1.LabelSelector) string {
	return metav1.FormatLabelSelector(sel)
}

// listWithMore joins up to max items with commas and appends
// " + N more..." for the rest; "<none>" for an empty list. It is the
// shape printers use for endpoints, images and addresses.
func listWithMore(items []string, max int) string {
	if len(items) == 0 {
		return "<none>"
	}
	if len(items) <= max {
		return strings.Join(items, ",")
	}
	return fmt.Sprintf("%s + %d more...", strings.Join(items[:max], ","), len(items)-max)
}

// nameColumn is the first column of every table.
func nameColumn() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name",
		Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]}
}

// ageColumn is the AGE column; its cells come from translateTimestampSince.
func ageColumn() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: "Age", Type: "string",
		Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]}
}

// column is a shorthand for a column definition.
func column(name, typ, description string, priority int32) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Description: description, Priority: priority}
}

// bumpGeneration carries old's generation into obj and increments it when
// the spec changed, as the strategies of kinds with a spec do. Status-only
// and metadata-only updates keep the generation.
func bumpGeneration(obj, old metav1.Object, spec, oldSpec interface{}) {
	gen := old.GetGeneration()
	if !apiequality.Semantic.DeepEqual(spec, oldSpec) {
		gen++
	}
	obj.SetGeneration(gen)
}
