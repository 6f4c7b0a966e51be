package apiserver

import (
	"encoding/json"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStoredMetadata(t *testing.T) {
	for _, tc := range []struct {
		name, raw, want string
		ok              bool
	}{
		{"plain", `{"kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}}`, `{"name":"a"}`, true},
		{"nested objects and arrays", `{"metadata":{"labels":{"a":"b"},"managedFields":[{"fieldsV1":{"f:data":{".":{}}}}]},"x":{}}`,
			`{"labels":{"a":"b"},"managedFields":[{"fieldsV1":{"f:data":{".":{}}}}]}`, true},
		{"braces and quotes in strings", `{"metadata":{"annotations":{"x":"}\"{\\","y":"]"}},"data":{}}`,
			`{"annotations":{"x":"}\"{\\","y":"]"}}`, true},
		{"empty", `{"metadata":{},"spec":{}}`, `{}`, true},
		{"no metadata", `{"kind":"Status"}`, "", false},
		{"truncated", `{"metadata":{"name":"a"`, "", false},
		{"truncated in a string", `{"metadata":{"name":"a}`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := storedMetadata([]byte(tc.raw))
			if ok != tc.ok || string(got) != tc.want {
				t.Errorf("storedMetadata(%s) = %s, %v; want %s, %v", tc.raw, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// FuzzStoredMetadata: for any object json.Marshal stores, the extracted
// metadata decodes to exactly the object's metadata.
func FuzzStoredMetadata(f *testing.F) {
	f.Add("a", "b", `}"{\`, "metadata")
	f.Add(`"metadata":{`, "{[", "]}", `\u007d`)
	f.Fuzz(func(t *testing.T, name, label, annotation, data string) {
		cm := &corev1.ConfigMap{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns",
				Labels: map[string]string{label: annotation}, Annotations: map[string]string{annotation: label}},
			Data: map[string]string{data: name},
		}
		raw, err := json.Marshal(cm)
		if err != nil {
			t.Skip()
		}
		got, ok := storedMetadata(raw)
		if !ok {
			t.Fatalf("no metadata found in %s", raw)
		}
		var om, want metav1.ObjectMeta
		if err := json.Unmarshal(got, &om); err != nil {
			t.Fatalf("metadata %s of %s: %v", got, raw, err)
		}
		// Compare with what a full decode gives (invalid UTF-8 is replaced
		// the same way in both).
		var whole corev1.ConfigMap
		if err := json.Unmarshal(raw, &whole); err != nil {
			t.Fatal(err)
		}
		want = whole.ObjectMeta
		if !reflect.DeepEqual(om, want) {
			t.Fatalf("metadata %s of %s decodes to %+v, want %+v", got, raw, om, want)
		}
	})
}
