package registry

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
)

// addEventsConversions converts Events between core/v1 (stored) and
// events.k8s.io/v1, field for field as Kubernetes' pkg/apis/events/v1
// conversion does: the two kinds are one object under two sets of names
// (note/message, regarding/involvedObject, deprecatedSource/source, ...).
func addEventsConversions(s *runtime.Scheme) error {
	for _, add := range []struct {
		a, b interface{}
		fn   conversion.ConversionFunc
	}{
		{(*corev1.Event)(nil), (*eventsv1.Event)(nil), func(a, b interface{}, _ conversion.Scope) error {
			*b.(*eventsv1.Event) = *eventFromCore(a.(*corev1.Event))
			return nil
		}},
		{(*eventsv1.Event)(nil), (*corev1.Event)(nil), func(a, b interface{}, _ conversion.Scope) error {
			*b.(*corev1.Event) = *eventToCore(a.(*eventsv1.Event))
			return nil
		}},
		{(*corev1.EventList)(nil), (*eventsv1.EventList)(nil), func(a, b interface{}, _ conversion.Scope) error {
			in, out := a.(*corev1.EventList), b.(*eventsv1.EventList)
			out.ListMeta = *in.ListMeta.DeepCopy()
			out.Items = make([]eventsv1.Event, len(in.Items))
			for i := range in.Items {
				out.Items[i] = *eventFromCore(&in.Items[i])
			}
			return nil
		}},
		{(*eventsv1.EventList)(nil), (*corev1.EventList)(nil), func(a, b interface{}, _ conversion.Scope) error {
			in, out := a.(*eventsv1.EventList), b.(*corev1.EventList)
			out.ListMeta = *in.ListMeta.DeepCopy()
			out.Items = make([]corev1.Event, len(in.Items))
			for i := range in.Items {
				out.Items[i] = *eventToCore(&in.Items[i])
			}
			return nil
		}},
	} {
		if err := s.AddConversionFunc(add.a, add.b, add.fn); err != nil {
			return fmt.Errorf("register event conversion %T to %T: %w", add.a, add.b, err)
		}
	}
	return nil
}

// eventFromCore is Convert_core_Event_To_v1_Event. The result shares
// nothing with in. TypeMeta is left for the caller to set.
func eventFromCore(in *corev1.Event) *eventsv1.Event {
	in = in.DeepCopy()
	out := &eventsv1.Event{
		ObjectMeta:               in.ObjectMeta,
		EventTime:                in.EventTime,
		ReportingController:      in.ReportingController,
		ReportingInstance:        in.ReportingInstance,
		Action:                   in.Action,
		Reason:                   in.Reason,
		Regarding:                in.InvolvedObject,
		Related:                  in.Related,
		Note:                     in.Message,
		Type:                     in.Type,
		DeprecatedSource:         in.Source,
		DeprecatedFirstTimestamp: in.FirstTimestamp,
		DeprecatedLastTimestamp:  in.LastTimestamp,
		DeprecatedCount:          in.Count,
	}
	if in.Series != nil {
		out.Series = &eventsv1.EventSeries{Count: in.Series.Count, LastObservedTime: in.Series.LastObservedTime}
	}
	return out
}

// eventToCore is Convert_v1_Event_To_core_Event.
func eventToCore(in *eventsv1.Event) *corev1.Event {
	in = in.DeepCopy()
	out := &corev1.Event{
		ObjectMeta:          in.ObjectMeta,
		InvolvedObject:      in.Regarding,
		Reason:              in.Reason,
		Message:             in.Note,
		Source:              in.DeprecatedSource,
		FirstTimestamp:      in.DeprecatedFirstTimestamp,
		LastTimestamp:       in.DeprecatedLastTimestamp,
		Count:               in.DeprecatedCount,
		Type:                in.Type,
		EventTime:           in.EventTime,
		Action:              in.Action,
		Related:             in.Related,
		ReportingController: in.ReportingController,
		ReportingInstance:   in.ReportingInstance,
	}
	if in.Series != nil {
		out.Series = &corev1.EventSeries{Count: in.Series.Count, LastObservedTime: in.Series.LastObservedTime}
	}
	return out
}
