package admission

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/registry"
)

type fakeClasses []*storagev1.StorageClass

func (f fakeClasses) List(string, labels.Selector) []*storagev1.StorageClass { return f }

func TestDefaultStorageClass(t *testing.T) {
	class := func(name string, isDefault bool, created int64) *storagev1.StorageClass {
		sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(created, 0))}}
		if isDefault {
			sc.Annotations = map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}
		}
		return sc
	}
	claim := func(class *string) *corev1.PersistentVolumeClaim {
		return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data"},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: class}}
	}
	str := func(s string) *string { return &s }
	tests := []struct {
		name    string
		classes fakeClasses
		claim   *corev1.PersistentVolumeClaim
		want    *string
	}{
		{"unset gets the default", fakeClasses{class("fast", false, 1), class("local-path", true, 2)}, claim(nil), str("local-path")},
		{"newest default wins", fakeClasses{class("old", true, 1), class("new", true, 5)}, claim(nil), str("new")},
		{"no default leaves it unset", fakeClasses{class("fast", false, 1)}, claim(nil), nil},
		{"empty string means no class", fakeClasses{class("local-path", true, 1)}, claim(str("")), str("")},
		{"a named class is kept", fakeClasses{class("local-path", true, 1)}, claim(str("fast")), str("fast")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &registry.Resource{GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "persistentvolumeclaims", Namespaced: true}
			NewDefaultStorageClass(tt.classes).Attach(r)
			if _, err := r.BeginCreate(t.Context(), tt.claim); err != nil {
				t.Fatal(err)
			}
			got := tt.claim.Spec.StorageClassName
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Errorf("storageClassName = %v, want %v", deref(got), deref(tt.want))
			}
		})
	}
	pods := podsEntry()
	NewDefaultStorageClass(nil).Attach(pods)
	if pods.BeginCreate != nil {
		t.Error("DefaultStorageClass attached to pods")
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return `"` + *s + `"`
}
