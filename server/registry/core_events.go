package registry

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Length limits of new-style (eventTime) events, from Kubernetes' event
// validation.
const (
	eventReportingInstanceMaxLen = 128
	eventActionMaxLen            = 128
	eventReasonMaxLen            = 128
	eventNoteMaxLen              = 1024
)

// coreEventsResource is core/v1 events. events.k8s.io/v1 serves the same
// stored objects (see conversion_events.go).
func coreEventsResource() *Resource {
	return &Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"},
		Name:         "events",
		Kind:         "Event",
		SingularName: "event",
		Namespaced:   true,
		ShortNames:   []string{"ev"},
		New:          func() runtime.Object { return &corev1.Event{} },
		NewList:      func() runtime.Object { return &corev1.EventList{} },
		Validate:     func(obj runtime.Object) field.ErrorList { return validateCoreEvent(obj.(*corev1.Event)) },
		Columns:      eventColumns(),
		Row:          func(obj runtime.Object) []interface{} { return eventRow(obj.(*corev1.Event)) },
		Fields:       func(obj runtime.Object) fields.Set { return eventFields(obj.(*corev1.Event)) },
	}
}

// validateCoreEvent is Kubernetes' legacy event validation, all that a
// core/v1 request gets: old-style events must agree with their involved
// object's namespace; new-style ones (eventTime set) must say who reported
// them and what happened.
func validateCoreEvent(ev *corev1.Event) field.ErrorList {
	var allErrs field.ErrorList
	nsPath := field.NewPath("involvedObject", "namespace")
	if ev.EventTime.IsZero() {
		if ev.InvolvedObject.Namespace == "" {
			// Cluster-scoped objects' events live in "default" (or nowhere,
			// for old clients).
			if ev.Namespace != metav1.NamespaceNone && ev.Namespace != metav1.NamespaceDefault {
				allErrs = append(allErrs, field.Invalid(nsPath, ev.InvolvedObject.Namespace, "does not match event.namespace"))
			}
		} else if ev.Namespace != ev.InvolvedObject.Namespace {
			allErrs = append(allErrs, field.Invalid(nsPath, ev.InvolvedObject.Namespace, "does not match event.namespace"))
		}
	} else {
		if ev.InvolvedObject.Namespace == "" && ev.Namespace != metav1.NamespaceDefault && ev.Namespace != metav1.NamespaceSystem {
			allErrs = append(allErrs, field.Invalid(nsPath, ev.InvolvedObject.Namespace, "does not match event.namespace"))
		}
		rc := field.NewPath("reportingComponent")
		if ev.ReportingController == "" {
			allErrs = append(allErrs, field.Required(rc, ""))
		} else {
			for _, msg := range validation.IsQualifiedName(ev.ReportingController) {
				allErrs = append(allErrs, field.Invalid(rc, ev.ReportingController, msg))
			}
		}
		for _, f := range []struct {
			name     string
			value    string
			max      int
			required bool
		}{
			{"reportingInstance", ev.ReportingInstance, eventReportingInstanceMaxLen, true},
			{"action", ev.Action, eventActionMaxLen, true},
			{"reason", ev.Reason, eventReasonMaxLen, true},
			{"message", ev.Message, eventNoteMaxLen, false},
		} {
			p := field.NewPath(f.name)
			if f.required && f.value == "" {
				allErrs = append(allErrs, field.Required(p, ""))
			}
			if len(f.value) > f.max {
				allErrs = append(allErrs, field.Invalid(p, "", fmt.Sprintf("can have at most %v characters", f.max)))
			}
		}
	}
	for _, msg := range validation.IsDNS1123Subdomain(ev.Namespace) {
		allErrs = append(allErrs, field.Invalid(field.NewPath("namespace"), ev.Namespace, msg))
	}
	return allErrs
}

func eventColumns() []metav1.TableColumnDefinition {
	doc := corev1.Event{}.SwaggerDoc()
	return []metav1.TableColumnDefinition{
		column("Last Seen", "string", doc["lastTimestamp"], 0),
		column("Type", "string", doc["type"], 0),
		column("Reason", "string", doc["reason"], 0),
		column("Object", "string", doc["involvedObject"], 0),
		column("Subobject", "string", corev1.ObjectReference{}.SwaggerDoc()["fieldPath"], 1),
		column("Source", "string", doc["source"], 1),
		column("Message", "string", doc["message"], 0),
		column("First Seen", "string", doc["firstTimestamp"], 1),
		column("Count", "string", doc["count"], 1),
		{Name: "Name", Type: "string", Format: "name", Priority: 1, Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
	}
}

// eventRow is printEvent (always wide: the server sends every column).
func eventRow(ev *corev1.Event) []interface{} {
	first := translateTimestampSince(ev.FirstTimestamp)
	if ev.FirstTimestamp.IsZero() {
		first = translateMicroTimestampSince(ev.EventTime)
	}
	last := translateTimestampSince(ev.LastTimestamp)
	if ev.LastTimestamp.IsZero() {
		last = first
	}
	count := ev.Count
	if ev.Series != nil {
		last = translateMicroTimestampSince(ev.Series.LastObservedTime)
		count = ev.Series.Count
	} else if count == 0 {
		// Singleton events of the new API carry no count.
		count = 1
	}
	target := strings.ToLower(ev.InvolvedObject.Kind)
	if ev.InvolvedObject.Name != "" {
		target += "/" + ev.InvolvedObject.Name
	}
	return []interface{}{
		last, ev.Type, ev.Reason, target, ev.InvolvedObject.FieldPath,
		eventSource(ev), strings.TrimSpace(ev.Message), first, int64(count), ev.Name,
	}
}

// eventSource is "component, host", from source or the new-style
// reporting fields.
func eventSource(ev *corev1.Event) string {
	component := ev.Source.Component
	if component == "" {
		component = ev.ReportingController
	}
	instance := ev.Source.Host
	if instance == "" {
		instance = ev.ReportingInstance
	}
	if instance == "" {
		return component
	}
	return component + ", " + instance
}

// eventFields are the event field selectors (kubectl describe selects
// events by involvedObject).
func eventFields(ev *corev1.Event) fields.Set {
	source := ev.Source.Component
	if source == "" {
		source = ev.ReportingController
	}
	o := ev.InvolvedObject
	return fields.Set{
		"involvedObject.kind":            o.Kind,
		"involvedObject.namespace":       o.Namespace,
		"involvedObject.name":            o.Name,
		"involvedObject.uid":             string(o.UID),
		"involvedObject.apiVersion":      o.APIVersion,
		"involvedObject.resourceVersion": o.ResourceVersion,
		"involvedObject.fieldPath":       o.FieldPath,
		"reason":                         ev.Reason,
		"reportingComponent":             ev.ReportingController,
		"source":                         source,
		"type":                           ev.Type,
	}
}
