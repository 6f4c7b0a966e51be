package registry

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNamespaceCreate(t *testing.T) {
	r := coreResource(t, "namespaces")
	if r.Namespaced || r.HasSubresource("finalize") == false || r.NameValidation("Bad.Name", false) == nil {
		t.Fatalf("entry: namespaced %v finalize %v", r.Namespaced, r.HasSubresource("finalize"))
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}}
	r.Default(ns)
	r.PrepareForCreate(ns)
	if ns.Status.Phase != corev1.NamespaceActive || len(ns.Spec.Finalizers) != 1 || ns.Spec.Finalizers[0] != "kubernetes" {
		t.Errorf("phase %s finalizers %v", ns.Status.Phase, ns.Spec.Finalizers)
	}
	if ns.Labels["kubernetes.io/metadata.name"] != "team-a" {
		t.Errorf("labels = %v", ns.Labels)
	}
	checkErrors(t, r.Validate(ns))
}

func TestValidateNamespace(t *testing.T) {
	r := coreResource(t, "namespaces")
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
		Spec: corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{"kubernetes", "example.com/cleanup", "custom", "bad/x/y"}}}
	checkErrors(t, r.Validate(ns), "spec.finalizers[2]: FieldValueInvalid", "spec.finalizers[3]: FieldValueInvalid")

	now := metav1.Now()
	for _, tc := range []struct {
		deleted bool
		phase   corev1.NamespacePhase
		want    []string
	}{
		{false, corev1.NamespaceActive, nil},
		{false, corev1.NamespaceTerminating, []string{"status.phase: FieldValueInvalid"}},
		{true, corev1.NamespaceTerminating, nil},
		{true, corev1.NamespaceActive, []string{"status.phase: FieldValueInvalid"}},
	} {
		n := ns.DeepCopy()
		n.Spec.Finalizers = nil
		n.Status.Phase = tc.phase
		if tc.deleted {
			n.DeletionTimestamp = &now
		}
		checkErrors(t, r.ValidateUpdate(n, ns), tc.want...)
	}
}

func TestNamespaceUpdateStrategies(t *testing.T) {
	r := coreResource(t, "namespaces")
	old := &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{"x": "1"}, ResourceVersion: "5"},
		Spec:       corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{"kubernetes"}},
		Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating},
	}

	upd := old.DeepCopy()
	upd.Spec.Finalizers = nil
	upd.Status.Phase = corev1.NamespaceActive
	upd.Labels["x"] = "2"
	r.PrepareForUpdate(upd, old)
	if len(upd.Spec.Finalizers) != 1 || upd.Status.Phase != corev1.NamespaceTerminating || upd.Labels["x"] != "2" {
		t.Errorf("main update: %+v", upd)
	}

	st := old.DeepCopy()
	st.Spec.Finalizers = nil
	st.Status.Conditions = []corev1.NamespaceCondition{{Type: corev1.NamespaceDeletionContentFailure}}
	r.PrepareForStatusUpdate(st, old)
	if len(st.Spec.Finalizers) != 1 || len(st.Status.Conditions) != 1 {
		t.Errorf("status update: %+v", st)
	}

	fin := old.DeepCopy()
	fin.Spec.Finalizers = nil
	fin.Labels["x"] = "3"
	fin.Status.Phase = corev1.NamespaceActive
	r.PrepareForSubresource["finalize"](fin, old)
	if len(fin.Spec.Finalizers) != 0 || fin.Labels["x"] != "1" || fin.Status.Phase != corev1.NamespaceTerminating {
		t.Errorf("finalize: %+v", fin)
	}
}

func TestNamespaceGracefulDeleteAndRow(t *testing.T) {
	r := coreResource(t, "namespaces")
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", CreationTimestamp: metav1.NewTime(time.Now().Add(-90 * time.Second))},
		Spec: corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{"kubernetes"}}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}
	if sprint(r.Row(ns)) != sprint([]interface{}{"a", "Active", "90s"}) {
		t.Errorf("row = %v", r.Row(ns))
	}
	if !r.GracefulDelete(ns, nil, time.Now()) || ns.Status.Phase != corev1.NamespaceTerminating {
		t.Fatalf("graceful delete: phase %s", ns.Status.Phase)
	}
	if got := r.Row(ns)[1]; got != "Terminating" {
		t.Errorf("STATUS = %v", got)
	}
	if f := r.Fields(ns); f["status.phase"] != "Terminating" || f["name"] != "a" {
		t.Errorf("fields = %v", f)
	}
}
