package apiserver

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/registry"
)

func TestJSONValueEnd(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		at   int
		want int
	}{
		{`"abc",`, 0, 5},
		{`"a\"b"`, 0, 6},
		{`"a\\"x`, 0, 5},
		{`"a\\\"b"`, 0, 8},
		{`{"a":{"b":[1,"]}"]}},"c":1}`, 0, 20},
		{`{"a":{"b":[1,"]}"]}},"c":1}`, 5, 19},
		{`{"a":123,"b":true}`, 5, 8},
		{`{"a":123,"b":true}`, 13, 17},
		{`[1,2]`, 1, 2},
		{`42`, 0, 2},
		{`{}`, 0, 2},
		{`{"a":"b"`, 0, -1},
		{`"abc`, 0, -1},
		{`"abc\"`, 0, -1},
	} {
		if got := jsonValueEnd([]byte(tc.raw), tc.at); got != tc.want {
			t.Errorf("jsonValueEnd(%s, %d) = %d, want %d", tc.raw, tc.at, got, tc.want)
		}
	}
}

func TestEachJSONField(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want []string // key=value
		ok   bool
	}{
		{`{}`, nil, true},
		{`{"a":1}`, []string{`"a"=1`}, true},
		{`{"a":{"x":[1,{}]},"b\"c":"v,}","d":null}`, []string{`"a"={"x":[1,{}]}`, `"b\"c"="v,}"`, `"d"=null`}, true},
		{`{"a":1`, []string{}, false},
		{`{"a":1}x`, []string{`"a"=1`}, false},
		{`{"a"}`, nil, false},
		{`[1]`, nil, false},
		{``, nil, false},
	} {
		var got []string
		ok := eachJSONField([]byte(tc.raw), func(k, v []byte) { got = append(got, string(k)+"="+string(v)) })
		if ok != tc.ok || (tc.ok && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("eachJSONField(%s) = %q, %v; want %q, %v", tc.raw, got, ok, tc.want, tc.ok)
		}
	}
}

func TestElideMapValues(t *testing.T) {
	for _, tc := range []struct {
		name, raw, want string
		ok              bool
	}{
		{"configmap",
			`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a","managedFields":[{"manager":"m","fieldsV1":{"f:data":{}}}],"labels":{"data":"x"}},"data":{"k":"long \"value\"","k2":"{}"},"binaryData":{"b":"AAE="},"immutable":true}`,
			`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a","labels":{"data":"x"}},"data":{"k":"","k2":""},"binaryData":{"b":""},"immutable":true}`, true},
		{"managedFields only", `{"metadata":{"managedFields":[]},"data":{}}`, `{"metadata":{},"data":{}}`, true},
		{"managedFields first", `{"metadata":{"managedFields":[],"name":"a"}}`, `{"metadata":{"name":"a"}}`, true},
		{"null map", `{"metadata":{},"data":null}`, `{"metadata":{},"data":null}`, true},
		{"truncated", `{"metadata":{},"data":{"k":"v"`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := elideMapValues(nil, []byte(tc.raw), []string{"data", "binaryData"})
			if ok != tc.ok || (ok && string(got) != tc.want) {
				t.Errorf("elideMapValues = %s, %v; want %s, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// FuzzElideMapValues: for any ConfigMap or Secret as stored, the elided
// copy decodes to an object whose row is the row of the whole object.
func FuzzElideMapValues(f *testing.F) {
	f.Add("a", "k", `}"{\ "data":{`, "binaryData", []byte{0, 1})
	f.Add(`"metadata":{`, `\u007d`, "", "x", []byte(nil))
	table, err := registry.NewTable()
	if err != nil {
		f.Fatal(err)
	}
	created := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	f.Fuzz(func(t *testing.T, name, key, value, label string, bin []byte) {
		meta := metav1.ObjectMeta{Name: name, Namespace: "ns", CreationTimestamp: created,
			Labels: map[string]string{label: value}, Annotations: map[string]string{"data": value},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: value, Operation: metav1.ManagedFieldsOperationApply, Time: &created}}}
		cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: meta,
			Data: map[string]string{key: value, key + "2": name}, BinaryData: map[string][]byte{key + "b": bin}}
		secret := &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: meta,
			Type: corev1.SecretType(label), Data: map[string][]byte{key: bin, strings.ToUpper(key) + "x": []byte(value)}}
		for _, tc := range []struct {
			whole, thin runtime.Object
			resource    string
		}{
			{cm, &corev1.ConfigMap{}, "configmaps"},
			{secret, &corev1.Secret{}, "secrets"},
		} {
			res := table.Lookup(corev1.SchemeGroupVersion, tc.resource)
			raw, err := json.Marshal(tc.whole)
			if err != nil {
				t.Skip()
			}
			elided, ok := elideMapValues(nil, raw, rowElidedMaps(corev1.Resource(tc.resource)))
			if !ok {
				t.Fatalf("elideMapValues(%s) failed", raw)
			}
			if err := json.Unmarshal(elided, tc.thin); err != nil {
				t.Fatalf("elided copy %s of %s: %v", elided, raw, err)
			}
			// The whole object's row, from the object as json would decode it
			// (invalid UTF-8 is replaced the same way in both).
			back := res.New()
			if err := json.Unmarshal(raw, back); err != nil {
				t.Fatal(err)
			}
			if got, want := res.Row(tc.thin), res.Row(back); !reflect.DeepEqual(got, want) {
				t.Fatalf("row of elided copy %s = %v, want %v (from %s)", elided, got, want, raw)
			}
		}
	})
}

// BenchmarkRowDecode: what a Table row of a Pod as a controller and the
// kubelet leave it costs, decoded whole (decodeStored) or as the copy
// tableList.cells decodes.
func BenchmarkRowDecode(b *testing.B) {
	now := metav1.Now()
	fields := func(s string) *metav1.FieldsV1 { return &metav1.FieldsV1{Raw: []byte(s)} }
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web-7d4b9c8f6d-x2x9k", Namespace: "default", UID: "0b9f2d3e-6f0c-4d1e-9a4b-2c8d7e6f5a4b",
			CreationTimestamp: now, Labels: map[string]string{"app": "web", "pod-template-hash": "7d4b9c8f6d"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d4b9c8f6d", UID: "1c2d"}},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "orch-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &now, FieldsType: "FieldsV1",
					FieldsV1: fields(`{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"1c2d\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:protocol":{}}},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}`)},
				{Manager: "orch-agent", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &now, FieldsType: "FieldsV1", Subresource: "status",
					FieldsV1: fields(`{"f:status":{"f:conditions":{"k:{\"type\":\"ContainersReady\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Initialized\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Ready\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}}},"f:containerStatuses":{},"f:hostIP":{},"f:phase":{},"f:podIP":{},"f:podIPs":{".":{},"k:{\"ip\":\"10.42.0.7\"}":{".":{},"f:ip":{}}},"f:startTime":{}}}`)},
			}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "web", Image: "busybox:1.36", Ports: []corev1.ContainerPort{{ContainerPort: 8080, Protocol: "TCP"}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.42.0.7", StartTime: &now,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}, {Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "web", Ready: true, Image: "busybox:1.36", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}},
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("whole", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := json.Unmarshal(raw, &corev1.Pod{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("copy", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for i := 0; i < b.N; i++ {
			var ok bool
			if buf, ok = elideMapValues(buf[:0], raw, nil); !ok {
				b.Fatal("not elided")
			}
			if err := json.Unmarshal(buf, &corev1.Pod{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
