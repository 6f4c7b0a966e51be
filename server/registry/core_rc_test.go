package registry

import (
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func newTestRC() *corev1.ReplicationController {
	return &corev1.ReplicationController{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ReplicationControllerSpec{
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{
					{Name: "app", Image: "nginx:1.25"},
					{Name: "sidecar", Image: "busybox"},
				}},
			},
		},
	}
}

func TestReplicationControllerDefaults(t *testing.T) {
	r := configResource(t, "replicationcontrollers")
	rc := newTestRC()
	r.Default(rc)
	want := map[string]string{"app": "web"}
	if !maps.Equal(rc.Spec.Selector, want) || !maps.Equal(rc.Labels, want) {
		t.Errorf("selector %v labels %v, want both %v", rc.Spec.Selector, rc.Labels, want)
	}
	if rc.Spec.Replicas == nil || *rc.Spec.Replicas != 1 {
		t.Errorf("replicas %v", rc.Spec.Replicas)
	}
	// The pod template got the pod spec defaults.
	if rc.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways || rc.Spec.Template.Spec.Containers[1].ImagePullPolicy != corev1.PullAlways {
		t.Errorf("template not defaulted: %+v", rc.Spec.Template.Spec)
	}
	// Defaults are copies, not aliases of the template's labels.
	rc.Spec.Selector["x"] = "y"
	if _, ok := rc.Spec.Template.Labels["x"]; ok {
		t.Errorf("selector aliases the template labels")
	}

	// Given values are kept.
	rc = newTestRC()
	rc.Labels = map[string]string{"owner": "me"}
	rc.Spec.Selector = map[string]string{"app": "web"}
	rc.Spec.Replicas = ptr.To[int32](0)
	rc.Spec.Template.Labels["extra"] = "1"
	r.Default(rc)
	if len(rc.Spec.Selector) != 1 || rc.Labels["owner"] != "me" || *rc.Spec.Replicas != 0 {
		t.Errorf("given values changed: %v %v %v", rc.Spec.Selector, rc.Labels, *rc.Spec.Replicas)
	}

	// No template: nothing to take labels from.
	rc = &corev1.ReplicationController{}
	r.Default(rc)
	if rc.Spec.Selector != nil || rc.Labels != nil || *rc.Spec.Replicas != 1 {
		t.Errorf("template-less defaults: %v %v", rc.Spec.Selector, rc.Labels)
	}
}

func TestValidateReplicationController(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(rc *corev1.ReplicationController)
		want   []string
	}{
		{"valid", func(*corev1.ReplicationController) {}, nil},
		{"negative replicas", func(rc *corev1.ReplicationController) { rc.Spec.Replicas = ptr.To[int32](-1) },
			[]string{"spec.replicas: FieldValueInvalid"}},
		{"negative minReadySeconds", func(rc *corev1.ReplicationController) { rc.Spec.MinReadySeconds = -1 },
			[]string{"spec.minReadySeconds: FieldValueInvalid"}},
		{"selector does not match", func(rc *corev1.ReplicationController) { rc.Spec.Selector = map[string]string{"app": "db"} },
			[]string{"spec.template.metadata.labels: FieldValueInvalid"}},
		{"no selector nor template labels", func(rc *corev1.ReplicationController) { rc.Spec.Template.Labels = nil },
			[]string{"spec.selector: FieldValueRequired"}},
		{"no template", func(rc *corev1.ReplicationController) {
			rc.Spec.Template = nil
			rc.Spec.Selector = map[string]string{"a": "b"}
		},
			[]string{"spec.template: FieldValueRequired"}},
		{"restart policy", func(rc *corev1.ReplicationController) {
			rc.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		},
			[]string{"spec.template.spec.restartPolicy: FieldValueNotSupported"}},
		{"active deadline", func(rc *corev1.ReplicationController) {
			rc.Spec.Template.Spec.ActiveDeadlineSeconds = ptr.To[int64](10)
		},
			[]string{"spec.template.spec.activeDeadlineSeconds: FieldValueForbidden"}},
		{"template validated", func(rc *corev1.ReplicationController) { rc.Spec.Template.Spec.Containers[0].Image = "" },
			[]string{"spec.template.spec.containers[0].image: FieldValueRequired"}},
		{"status counts", func(rc *corev1.ReplicationController) {
			rc.Status = corev1.ReplicationControllerStatus{Replicas: 1, ReadyReplicas: 2, AvailableReplicas: 1, ObservedGeneration: -1}
		}, []string{"status.readyReplicas: FieldValueInvalid", "status.observedGeneration: FieldValueInvalid"}},
	}
	r := configResource(t, "replicationcontrollers")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newTestRC()
			tt.mutate(rc)
			r.Default(rc)
			errs := r.Validate(rc)
			wantErrors(t, errs, tt.want...)
			if tt.name == "selector does not match" {
				wantDetail(t, errs, "`selector` does not match template `labels`")
			}
		})
	}
}

func TestReplicationControllerStrategies(t *testing.T) {
	r := configResource(t, "replicationcontrollers")
	rc := newTestRC()
	rc.Status.Replicas = 5
	r.Default(rc)
	r.PrepareForCreate(rc)
	if rc.Status.Replicas != 0 || rc.Generation != 1 {
		t.Errorf("create: status %+v generation %d", rc.Status, rc.Generation)
	}
	old := rc.DeepCopy()
	old.Status.Replicas = 1

	// Scaling is a spec change: generation bumps, status is kept.
	upd := old.DeepCopy()
	upd.Spec.Replicas = ptr.To[int32](3)
	upd.Status.Replicas = 9
	r.PrepareForUpdate(upd, old)
	if upd.Generation != 2 || upd.Status.Replicas != 1 {
		t.Errorf("update: generation %d status %+v", upd.Generation, upd.Status)
	}
	// A metadata-only update keeps the generation.
	meta := old.DeepCopy()
	meta.Labels["note"] = "x"
	r.PrepareForUpdate(meta, old)
	if meta.Generation != 1 {
		t.Errorf("metadata update bumped generation to %d", meta.Generation)
	}
	// A status write keeps the spec.
	st := old.DeepCopy()
	st.Spec.Replicas = ptr.To[int32](7)
	st.Status.ReadyReplicas = 1
	r.PrepareForStatusUpdate(st, old)
	if *st.Spec.Replicas != 1 || st.Status.ReadyReplicas != 1 || st.Generation != 1 {
		t.Errorf("status update: replicas %d status %+v generation %d", *st.Spec.Replicas, st.Status, st.Generation)
	}
	if got := r.Fields(st)["status.replicas"]; got != "1" {
		t.Errorf("status.replicas field %q", got)
	}
}

func TestReplicationControllerRow(t *testing.T) {
	r := configResource(t, "replicationcontrollers")
	rc := newTestRC()
	r.Default(rc)
	rc.Spec.Replicas = ptr.To[int32](3)
	rc.Status = corev1.ReplicationControllerStatus{Replicas: 2, ReadyReplicas: 1}
	if got, want := rowString(r.Row(rc)), "[web 3 2 1 <unknown> app,sidecar nginx:1.25,busybox app=web]"; got != want {
		t.Errorf("row\n got  %s\n want %s", got, want)
	}
}

func TestPodTemplates(t *testing.T) {
	r := configResource(t, "podtemplates")
	pt := &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "tmpl", Namespace: "default"},
		Template:   *newTestRC().Spec.Template,
	}
	r.Default(pt)
	if pt.Template.Spec.DNSPolicy != corev1.DNSClusterFirst {
		t.Errorf("template not defaulted: %+v", pt.Template.Spec)
	}
	wantErrors(t, r.Validate(pt))

	bad := pt.DeepCopy()
	bad.Template.Spec.Containers = nil
	wantErrors(t, r.Validate(bad), "template.spec.containers: FieldValueRequired")

	r.PrepareForCreate(pt)
	old := pt.DeepCopy()
	upd := pt.DeepCopy()
	upd.Template.Spec.Containers[0].Image = "nginx:1.26"
	r.PrepareForUpdate(upd, old)
	if pt.Generation != 1 || upd.Generation != 2 {
		t.Errorf("generations %d → %d", pt.Generation, upd.Generation)
	}

	if got, want := rowString(r.Row(pt)), "[tmpl app,sidecar nginx:1.25,busybox app=web]"; got != want {
		t.Errorf("row\n got  %s\n want %s", got, want)
	}
}
