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
