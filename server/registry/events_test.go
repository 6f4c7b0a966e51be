package registry

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestEventsV1Entry(t *testing.T) {
	tbl, err := NewTable()
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	r := tbl.Lookup(eventsv1.SchemeGroupVersion, "events")
	core := tbl.Lookup(schema.GroupVersion{Version: "v1"}, "events")
	if r == nil || core == nil {
		t.Fatalf("events entries: events.k8s.io %v, core %v", r, core)
	}
	// The placeholder is resolved to the core entry itself.
	if r.StorageResource() != core {
		t.Errorf("events.k8s.io/v1 events stored as %+v, want the core/v1 entry", r.StorageResource())
	}
	if r.Kind != "Event" || !r.Namespaced || r.SingularName != "event" || len(r.ShortNames) != 1 || r.ShortNames[0] != "ev" {
		t.Errorf("entry %+v", r)
	}
	if len(r.Columns) != len(core.Columns) {
		t.Errorf("%d columns, core events have %d", len(r.Columns), len(core.Columns))
	}
	for i := range r.Columns {
		if r.Columns[i] != core.Columns[i] {
			t.Errorf("column %d: %+v, want %+v", i, r.Columns[i], core.Columns[i])
		}
	}
	if cells := r.Row(r.New()); len(cells) != len(r.Columns) {
		t.Errorf("empty object: %d cells for %d columns", len(cells), len(r.Columns))
	}
}

// newEventsV1Event is what client-go's events recorder (tools/events)
// creates.
func newEventsV1Event() *eventsv1.Event {
	return &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: "web-0.17f", Namespace: "default"},
		EventTime:           metav1.NewMicroTime(time.Now()),
		ReportingController: "orch.dev/scheduler",
		ReportingInstance:   "orch-server",
		Action:              "Binding",
		Reason:              "Scheduled",
		Regarding:           corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-0"},
		Note:                "Successfully assigned default/web-0 to node-1",
		Type:                corev1.EventTypeNormal,
	}
}

func TestValidateEventsV1Event(t *testing.T) {
	r := tableResource(t, eventsv1.SchemeGroupVersion, "events")
	tests := []struct {
		name   string
		mutate func(*eventsv1.Event)
		want   []string
	}{
		{"valid", func(*eventsv1.Event) {}, nil},
		{"event time required", func(ev *eventsv1.Event) { ev.EventTime = metav1.MicroTime{} },
			// Without eventTime the legacy checks treat it as an old event.
			[]string{"eventTime: FieldValueRequired"}},
		{"reporting controller required", func(ev *eventsv1.Event) { ev.ReportingController = "" },
			[]string{"reportingController: FieldValueRequired"}},
		{"reporting instance and action required", func(ev *eventsv1.Event) { ev.ReportingInstance, ev.Action = "", "" },
			[]string{"reportingInstance: FieldValueRequired", "action: FieldValueRequired"}},
		{"bad type", func(ev *eventsv1.Event) { ev.Type = "Info" }, []string{"type: FieldValueInvalid"}},
		// A cluster-scoped object's events live in default or kube-system.
		{"cluster-scoped regarding", func(ev *eventsv1.Event) { ev.Regarding = corev1.ObjectReference{Kind: "Node", Name: "n"} }, nil},
		{"cluster-scoped regarding elsewhere", func(ev *eventsv1.Event) {
			ev.Namespace = "apps"
			ev.Regarding = corev1.ObjectReference{Kind: "Node", Name: "n"}
		}, []string{"involvedObject.namespace: FieldValueInvalid"}},
		{"deprecated fields", func(ev *eventsv1.Event) {
			ev.DeprecatedCount = 2
			ev.DeprecatedSource = corev1.EventSource{Component: "kubelet"}
			ev.DeprecatedFirstTimestamp = metav1.Now()
			ev.DeprecatedLastTimestamp = metav1.Now()
		}, []string{"deprecatedCount: FieldValueInvalid", "deprecatedSource: FieldValueInvalid",
			"deprecatedFirstTimestamp: FieldValueInvalid", "deprecatedLastTimestamp: FieldValueInvalid"}},
		{"series", func(ev *eventsv1.Event) {
			ev.Series = &eventsv1.EventSeries{Count: 2, LastObservedTime: metav1.NowMicro()}
		}, nil},
		{"short series", func(ev *eventsv1.Event) { ev.Series = &eventsv1.EventSeries{Count: 1} },
			[]string{"series.count: FieldValueInvalid", "series.lastObservedTime: FieldValueRequired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := newEventsV1Event()
			tt.mutate(ev)
			checkErrors(t, r.ValidateCreate(ev), tt.want...)
		})
	}
}

func TestValidateEventsV1EventUpdate(t *testing.T) {
	r := tableResource(t, eventsv1.SchemeGroupVersion, "events")
	tests := []struct {
		name   string
		mutate func(*eventsv1.Event)
		want   []string
	}{
		{"series grows", func(ev *eventsv1.Event) {
			ev.Series = &eventsv1.EventSeries{Count: 5, LastObservedTime: metav1.NowMicro()}
		}, nil},
		{"bad series", func(ev *eventsv1.Event) {
			ev.Series = &eventsv1.EventSeries{Count: 1, LastObservedTime: metav1.NowMicro()}
		},
			[]string{"series.count: FieldValueInvalid"}},
		{"labels", func(ev *eventsv1.Event) { ev.Labels = map[string]string{"a": "b"} }, nil},
		{"note", func(ev *eventsv1.Event) { ev.Note = "changed" }, []string{"message: FieldValueInvalid"}},
		{"regarding and reason", func(ev *eventsv1.Event) {
			ev.Regarding.Name = "web-1"
			ev.Reason = "Other"
		}, []string{"involvedObject: FieldValueInvalid", "reason: FieldValueInvalid"}},
		{"reporting", func(ev *eventsv1.Event) {
			ev.ReportingController = "x"
			ev.ReportingInstance = "y"
			ev.Action = "z"
			ev.Type = corev1.EventTypeWarning
		}, []string{"reportingController: FieldValueInvalid", "reportingInstance: FieldValueInvalid",
			"action: FieldValueInvalid", "type: FieldValueInvalid"}},
		{"event time", func(ev *eventsv1.Event) { ev.EventTime = metav1.NewMicroTime(ev.EventTime.Add(time.Second)) },
			[]string{"eventTime: FieldValueInvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := newEventsV1Event()
			ev := old.DeepCopy()
			tt.mutate(ev)
			checkErrors(t, r.ValidateUpdate(ev, old), tt.want...)
		})
	}
}

func TestEventsV1Row(t *testing.T) {
	r := tableResource(t, eventsv1.SchemeGroupVersion, "events")
	core := tableResource(t, schema.GroupVersion{Version: "v1"}, "events")
	ev := newEventsV1Event()
	ev.EventTime = metav1.NewMicroTime(time.Now().Add(-5 * time.Minute))
	ev.Series = &eventsv1.EventSeries{Count: 4, LastObservedTime: metav1.NewMicroTime(time.Now().Add(-3 * time.Minute))}
	got := sprint(r.Row(ev))
	if want := "[3m Normal Scheduled pod/web-0  orch.dev/scheduler, orch-server Successfully assigned default/web-0 to node-1 5m 4 web-0.17f]"; got != want {
		t.Errorf("row %s\nwant %s", got, want)
	}
	// Both APIs print a stored event the same way.
	if coreRow := sprint(core.Row(eventToCore(ev))); coreRow != got {
		t.Errorf("core row %s differs from events.k8s.io row %s", coreRow, got)
	}
}

func TestEventsV1Fields(t *testing.T) {
	r := tableResource(t, eventsv1.SchemeGroupVersion, "events")
	ev := newEventsV1Event()
	ev.Regarding.UID = "u1"
	got := r.Fields(ev)
	want := map[string]string{
		"regarding.kind": "Pod", "regarding.namespace": "default", "regarding.name": "web-0", "regarding.uid": "u1",
		"regarding.apiVersion": "", "regarding.resourceVersion": "", "regarding.fieldPath": "",
		"reason": "Scheduled", "reportingController": "orch.dev/scheduler", "source": "orch.dev/scheduler", "type": "Normal",
	}
	if len(got) != len(want) {
		t.Errorf("fields %v, want %v", got, want)
	}
	for k, v := range want {
		if gv, ok := got[k]; !ok || gv != v {
			t.Errorf("field %s = %q (present %v), want %q", k, gv, ok, v)
		}
	}
}
