package apiserver_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestBindingKeepsManagedFields binds pods through pods/binding, over HTTP
// and in process: the pod gets its node and PodScheduled condition, and
// its managed fields stay as they were, as in Kubernetes, whose binding
// writes the pod below the field manager.
func TestBindingKeepsManagedFields(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	cs, _ := clients(t, ts, "application/json")
	pods := cs.CoreV1().Pods("default")
	binds := []struct {
		name string
		bind func(pod *corev1.Pod) error
	}{
		{"http", func(pod *corev1.Pod) error {
			return pods.Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, UID: pod.UID},
				Target: corev1.ObjectReference{Kind: "Node", Name: "node-a"}}, metav1.CreateOptions{FieldManager: "my-scheduler"})
		}},
		{"in-process", func(pod *corev1.Pod) error {
			_, err := ts.api.Local().CreateSubresource(ctx, corev1.SchemeGroupVersion.WithResource("pods"), "default", pod.Name, "binding",
				&corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name}, Target: corev1.ObjectReference{Kind: "Node", Name: "node-a"}}, "my-scheduler")
			return err
		}},
	}
	for _, tt := range binds {
		t.Run(tt.name, func(t *testing.T) {
			created, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bind-" + tt.name},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}}, metav1.CreateOptions{FieldManager: "creator"})
			if err != nil {
				t.Fatal(err)
			}
			if len(created.ManagedFields) != 1 || created.ManagedFields[0].Manager != "creator" {
				t.Fatalf("managed fields after create: %+v", created.ManagedFields)
			}
			if err := tt.bind(created); err != nil {
				t.Fatalf("bind: %v", err)
			}
			bound, err := pods.Get(ctx, created.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if bound.Spec.NodeName != "node-a" {
				t.Errorf("nodeName %q, want node-a", bound.Spec.NodeName)
			}
			scheduled := false
			for _, c := range bound.Status.Conditions {
				scheduled = scheduled || c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue
			}
			if !scheduled {
				t.Errorf("no PodScheduled=True condition: %+v", bound.Status.Conditions)
			}
			if bound.ResourceVersion == created.ResourceVersion {
				t.Error("binding did not write the pod")
			}
			if !equality.Semantic.DeepEqual(bound.ManagedFields, created.ManagedFields) {
				t.Errorf("binding changed the managed fields:\n got %+v\nwant %+v", bound.ManagedFields, created.ManagedFields)
			}
		})
	}
}
