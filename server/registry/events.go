package registry

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// events.k8s.io/v1 events are the core/v1 events seen through the new
// API's names (conversion_events.go): they share one storage, so an event
// written through either API is listed and watched through both. The new
// API is stricter: an event must say when it happened and who reported it,
// may not use the deprecated fields, and may only change its series once
// written (pkg/apis/core/validation/events.go, requests of events/v1).

func eventsResources() []*Resource {
	return []*Resource{eventsV1Resource()}
}

func eventsV1Resource() *Resource {
	return &Resource{
		GroupVersion: eventsv1.SchemeGroupVersion,
		Name:         "events",
		Kind:         "Event",
		SingularName: "event",
		Namespaced:   true,
		ShortNames:   []string{"ev"},
		// A placeholder: NewTable points it at the registered core/v1
		// events entry.
		Storage: &Resource{GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "events"},
		New:     func() runtime.Object { return &eventsv1.Event{} },
		NewList: func() runtime.Object { return &eventsv1.EventList{} },
		// Kubernetes holds new events.k8s.io events to the strict rules and
		// updates to the legacy ones, so that an event written through
		// core/v1 (with count or source) can still be updated here.
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateCoreEvent(eventToCore(obj.(*eventsv1.Event)))
		},
		ValidateCreate: func(obj runtime.Object) field.ErrorList {
			return validateEventsV1Event(obj.(*eventsv1.Event))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateEventsV1EventUpdate(obj.(*eventsv1.Event), old.(*eventsv1.Event))
		},
		Columns: eventColumns(),
		Row:     func(obj runtime.Object) []interface{} { return eventRow(eventToCore(obj.(*eventsv1.Event))) },
		Fields:  func(obj runtime.Object) fields.Set { return eventsV1Fields(obj.(*eventsv1.Event)) },
	}
}

// eventsV1Fields are the core event field selectors under the new API's
// names (regarding.name rather than involvedObject.name,
// reportingController rather than reportingComponent), as Kubernetes'
// field label conversion for events.k8s.io/v1 accepts them.
func eventsV1Fields(ev *eventsv1.Event) fields.Set {
	out := fields.Set{}
	for k, v := range eventFields(eventToCore(ev)) {
		switch {
		case strings.HasPrefix(k, "involvedObject."):
			k = "regarding." + strings.TrimPrefix(k, "involvedObject.")
		case k == "reportingComponent":
			k = "reportingController"
		}
		out[k] = v
	}
	return out
}

// validateEventsV1Event is ValidateEventCreate for an events.k8s.io/v1
// request: the legacy checks every event passes, then the strict ones.
func validateEventsV1Event(ev *eventsv1.Event) field.ErrorList {
	var allErrs field.ErrorList
	for _, err := range validateCoreEvent(eventToCore(ev)) {
		// The legacy checks name the field as the request's API does.
		if err.Field == "reportingComponent" {
			err.Field = "reportingController"
		}
		allErrs = append(allErrs, err)
	}
	allErrs = append(allErrs, validateEventsV1Series(ev)...)
	if ev.EventTime.IsZero() {
		allErrs = append(allErrs, field.Required(field.NewPath("eventTime"), ""))
	}
	if ev.Type != corev1.EventTypeNormal && ev.Type != corev1.EventTypeWarning {
		allErrs = append(allErrs, field.Invalid(field.NewPath("type"), "", fmt.Sprintf("has invalid value: %v", ev.Type)))
	}
	if !ev.DeprecatedFirstTimestamp.IsZero() {
		allErrs = append(allErrs, field.Invalid(field.NewPath("deprecatedFirstTimestamp"), "", "needs to be unset"))
	}
	if !ev.DeprecatedLastTimestamp.IsZero() {
		allErrs = append(allErrs, field.Invalid(field.NewPath("deprecatedLastTimestamp"), "", "needs to be unset"))
	}
	if ev.DeprecatedCount != 0 {
		allErrs = append(allErrs, field.Invalid(field.NewPath("deprecatedCount"), "", "needs to be unset"))
	}
	if ev.DeprecatedSource.Component != "" || ev.DeprecatedSource.Host != "" {
		allErrs = append(allErrs, field.Invalid(field.NewPath("deprecatedSource"), "", "needs to be unset"))
	}
	return allErrs
}

// validateEventsV1Series: a series is an event seen at least twice.
func validateEventsV1Series(ev *eventsv1.Event) field.ErrorList {
	if ev.Series == nil {
		return nil
	}
	var allErrs field.ErrorList
	if ev.Series.Count < 2 {
		allErrs = append(allErrs, field.Invalid(field.NewPath("series", "count"), "", "should be at least 2"))
	}
	if ev.Series.LastObservedTime.IsZero() {
		allErrs = append(allErrs, field.Required(field.NewPath("series", "lastObservedTime"), ""))
	}
	return allErrs
}

// validateEventsV1EventUpdate is ValidateEventUpdate for events.k8s.io/v1:
// only the series (and metadata) of an event may change. Paths use the
// names Kubernetes reports, the stored core ones.
func validateEventsV1EventUpdate(ev, old *eventsv1.Event) field.ErrorList {
	var allErrs field.ErrorList
	if !apiequality.Semantic.DeepEqual(ev.Series, old.Series) {
		allErrs = append(allErrs, validateEventsV1Series(ev)...)
	}
	for _, f := range []struct {
		path     string
		new, old interface{}
	}{
		{"involvedObject", ev.Regarding, old.Regarding},
		{"reason", ev.Reason, old.Reason},
		{"message", ev.Note, old.Note},
		{"source", ev.DeprecatedSource, old.DeprecatedSource},
		{"firstTimestamp", ev.DeprecatedFirstTimestamp, old.DeprecatedFirstTimestamp},
		{"lastTimestamp", ev.DeprecatedLastTimestamp, old.DeprecatedLastTimestamp},
		{"count", ev.DeprecatedCount, old.DeprecatedCount},
		{"type", ev.Type, old.Type},
		{"eventTime", ev.EventTime, old.EventTime},
		{"action", ev.Action, old.Action},
		{"related", ev.Related, old.Related},
		{"reportingController", ev.ReportingController, old.ReportingController},
		{"reportingInstance", ev.ReportingInstance, old.ReportingInstance},
	} {
		allErrs = append(allErrs, apivalidation.ValidateImmutableField(f.new, f.old, field.NewPath(f.path))...)
	}
	return allErrs
}
