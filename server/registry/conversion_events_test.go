package registry

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/diff"
)

// fullCoreEvent sets every field both APIs carry.
func fullCoreEvent() *corev1.Event {
	t0 := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0.1829", Namespace: "default", UID: "e1",
			Labels: map[string]string{"a": "b"}, ResourceVersion: "42"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-0", UID: "p1",
			APIVersion: "v1", ResourceVersion: "7", FieldPath: "spec.containers{web}"},
		Reason:              "Pulled",
		Message:             "Successfully pulled image",
		Source:              corev1.EventSource{Component: "kubelet", Host: "node-1"},
		FirstTimestamp:      metav1.NewTime(t0),
		LastTimestamp:       metav1.NewTime(t0.Add(time.Minute)),
		Count:               3,
		Type:                corev1.EventTypeNormal,
		EventTime:           metav1.NewMicroTime(t0),
		Series:              &corev1.EventSeries{Count: 3, LastObservedTime: metav1.NewMicroTime(t0.Add(time.Minute))},
		Action:              "Pulling",
		Related:             &corev1.ObjectReference{Kind: "Node", Name: "node-1"},
		ReportingController: "kubelet",
		ReportingInstance:   "node-1",
	}
}

func TestEventConversion(t *testing.T) {
	tbl, err := NewTable()
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	core := fullCoreEvent()
	var ev eventsv1.Event
	if err := tbl.Scheme.Convert(core, &ev, nil); err != nil {
		t.Fatalf("convert core to events/v1: %v", err)
	}
	want := eventsv1.Event{
		ObjectMeta:               core.ObjectMeta,
		EventTime:                core.EventTime,
		Series:                   &eventsv1.EventSeries{Count: 3, LastObservedTime: core.Series.LastObservedTime},
		ReportingController:      "kubelet",
		ReportingInstance:        "node-1",
		Action:                   "Pulling",
		Reason:                   "Pulled",
		Regarding:                core.InvolvedObject,
		Related:                  core.Related,
		Note:                     "Successfully pulled image",
		Type:                     "Normal",
		DeprecatedSource:         core.Source,
		DeprecatedFirstTimestamp: core.FirstTimestamp,
		DeprecatedLastTimestamp:  core.LastTimestamp,
		DeprecatedCount:          3,
	}
	if !apiequality.Semantic.DeepEqual(ev, want) {
		t.Fatalf("events/v1 event differs:\n%s", diff.Diff(want, ev))
	}
	// The result shares no memory with its source.
	ev.Labels["a"] = "changed"
	ev.Related.Name = "changed"
	if core.Labels["a"] != "b" || core.Related.Name != "node-1" {
		t.Error("conversion aliased the source")
	}

	back := &corev1.Event{}
	if err := tbl.Scheme.Convert(&want, back, nil); err != nil {
		t.Fatalf("convert events/v1 to core: %v", err)
	}
	if !apiequality.Semantic.DeepEqual(back, fullCoreEvent()) {
		t.Errorf("round trip differs:\n%s", diff.Diff(fullCoreEvent(), back))
	}

	// Sparse events survive the round trip too (no series, no related).
	sparse := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "ns"}, Message: "m"}
	var mid eventsv1.Event
	out := &corev1.Event{}
	if err := tbl.Scheme.Convert(sparse, &mid, nil); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Scheme.Convert(&mid, out, nil); err != nil {
		t.Fatal(err)
	}
	if mid.Series != nil || mid.Related != nil || mid.Note != "m" || !apiequality.Semantic.DeepEqual(out, sparse) {
		t.Errorf("sparse round trip: mid %+v out %+v", mid, out)
	}
}

func TestEventListConversion(t *testing.T) {
	tbl, err := NewTable()
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	list := &corev1.EventList{ListMeta: metav1.ListMeta{ResourceVersion: "9", Continue: "c"},
		Items: []corev1.Event{*fullCoreEvent(), {ObjectMeta: metav1.ObjectMeta{Name: "b"}, Message: "two"}}}
	var v1list eventsv1.EventList
	if err := tbl.Scheme.Convert(list, &v1list, nil); err != nil {
		t.Fatalf("convert list: %v", err)
	}
	if v1list.ResourceVersion != "9" || v1list.Continue != "c" || len(v1list.Items) != 2 ||
		v1list.Items[0].Note != "Successfully pulled image" || v1list.Items[1].Note != "two" {
		t.Fatalf("events/v1 list %+v", v1list)
	}
	back := &corev1.EventList{}
	if err := tbl.Scheme.Convert(&v1list, back, nil); err != nil {
		t.Fatalf("convert list back: %v", err)
	}
	if !apiequality.Semantic.DeepEqual(back, list) {
		t.Errorf("list round trip differs:\n%s", diff.Diff(list, back))
	}
}
