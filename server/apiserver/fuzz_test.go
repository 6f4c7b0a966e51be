package apiserver

import (
	"net/http"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/registry"
)

// FuzzDecodeBody feeds arbitrary bodies in every accepted encoding to the
// request decoder: it must return an object or an API error, never panic.
func FuzzDecodeBody(f *testing.F) {
	table, err := registry.NewTable()
	if err != nil {
		f.Fatal(err)
	}
	c := newCodecs(table.Scheme)
	f.Add([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}}`), uint8(0))
	f.Add([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: 2}\n"), uint8(1))
	f.Add([]byte("k8s\x00\n\x0c\n\x02v1\x12\x06Binding"), uint8(2))
	f.Add([]byte(`{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i","ports":[{"containerPort":"x"}]}]}}`), uint8(0))
	f.Add([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","name":"b"},"x":1}`), uint8(0))
	contentTypes := []string{mediaJSON, mediaYAML, mediaProtobuf}
	targets := []func() runtime.Object{
		func() runtime.Object { return &corev1.ConfigMap{} },
		func() runtime.Object { return &appsv1.Deployment{} },
		func() runtime.Object { return &corev1.Pod{} },
	}
	f.Fuzz(func(t *testing.T, body []byte, sel uint8) {
		r, _ := http.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("Content-Type", contentTypes[int(sel)%len(contentTypes)])
		into := targets[int(sel/3)%len(targets)]()
		gvks, _, err := table.Scheme.ObjectKinds(into)
		if err != nil {
			t.Fatal(err)
		}
		for _, fv := range []fieldValidation{validationStrict, validationWarn, validationIgnore} {
			_, _ = c.decodeBody(r, body, gvks[0], into, fv)
		}
	})
}
