package registry

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newTestEvent() *corev1.Event {
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: "web.17a3b", Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web", UID: "u1",
			APIVersion: "v1", ResourceVersion: "12", FieldPath: "spec.containers{app}"},
		Reason:         "Pulled",
		Message:        "Successfully pulled image \"nginx\"\n",
		Type:           corev1.EventTypeNormal,
		Source:         corev1.EventSource{Component: "kubelet", Host: "node-1"},
		FirstTimestamp: metav1.NewTime(time.Now().Add(-10 * time.Minute)),
		LastTimestamp:  metav1.NewTime(time.Now().Add(-2 * time.Minute)),
		Count:          3,
	}
}

func TestValidateCoreEvent(t *testing.T) {
	r := coreResource(t, "events")
	cases := []struct {
		name   string
		mutate func(*corev1.Event)
		want   []string
	}{
		{name: "valid", mutate: func(*corev1.Event) {}},
		{name: "namespace mismatch", mutate: func(e *corev1.Event) { e.InvolvedObject.Namespace = "other" },
			want: []string{"involvedObject.namespace: FieldValueInvalid"}},
		{name: "cluster object in default", mutate: func(e *corev1.Event) {
			e.InvolvedObject = corev1.ObjectReference{Kind: "Node", Name: "node-1"}
		}},
		{name: "cluster object elsewhere", mutate: func(e *corev1.Event) {
			e.InvolvedObject = corev1.ObjectReference{Kind: "Node", Name: "node-1"}
			e.Namespace = "team-a"
		}, want: []string{"involvedObject.namespace: FieldValueInvalid"}},
		{name: "new style complete", mutate: func(e *corev1.Event) {
			e.EventTime = metav1.NowMicro()
			e.ReportingController, e.ReportingInstance, e.Action = "orch.dev/agent", "node-1", "Pulling"
		}},
		{name: "new style incomplete", mutate: func(e *corev1.Event) {
			e.EventTime = metav1.NowMicro()
			e.Reason = ""
			e.Message = strings.Repeat("x", 1025)
		}, want: []string{
			"reportingComponent: FieldValueRequired",
			"reportingInstance: FieldValueRequired", "action: FieldValueRequired",
			"reason: FieldValueRequired", "message: FieldValueInvalid",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEvent()
			tc.mutate(e)
			checkErrors(t, r.Validate(e), tc.want...)
		})
	}
}

func TestEventRowAndFields(t *testing.T) {
	r := coreResource(t, "events")
	if len(r.Columns) != 10 || r.Columns[0].Name != "Last Seen" || r.Columns[9].Name != "Name" {
		t.Fatalf("columns = %v", r.Columns)
	}
	var wide []string
	for _, c := range r.Columns {
		if c.Priority == 0 {
			wide = append(wide, c.Name)
		}
	}
	if strings.Join(wide, ",") != "Last Seen,Type,Reason,Object,Message" {
		t.Errorf("default columns = %v", wide)
	}

	e := newTestEvent()
	want := []interface{}{"2m", "Normal", "Pulled", "pod/web", "spec.containers{app}", "kubelet, node-1",
		"Successfully pulled image \"nginx\"", "10m", int64(3), "web.17a3b"}
	if got := r.Row(e); sprint(got) != sprint(want) {
		t.Errorf("row\n got  %v\n want %v", got, want)
	}

	// A new-style singleton event: times from eventTime, count 1, source
	// from the reporting fields.
	n := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Type: "Warning", Reason: "Failed",
		InvolvedObject:      corev1.ObjectReference{Kind: "Node"},
		EventTime:           metav1.NewMicroTime(time.Now().Add(-30 * time.Second)),
		ReportingController: "orch.dev/scheduler"}
	want = []interface{}{"30s", "Warning", "Failed", "node", "", "orch.dev/scheduler", "", "30s", int64(1), "n1"}
	if got := r.Row(n); sprint(got) != sprint(want) {
		t.Errorf("row\n got  %v\n want %v", got, want)
	}

	f := r.Fields(e)
	for k, v := range map[string]string{
		"involvedObject.kind": "Pod", "involvedObject.namespace": "default", "involvedObject.name": "web",
		"involvedObject.uid": "u1", "involvedObject.apiVersion": "v1", "involvedObject.resourceVersion": "12",
		"involvedObject.fieldPath": "spec.containers{app}", "reason": "Pulled", "source": "kubelet",
		"type": "Normal", "reportingComponent": "",
	} {
		if got, ok := f[k]; !ok || got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}
