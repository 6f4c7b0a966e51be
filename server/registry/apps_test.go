package registry

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// groupResource builds the whole table (so its checks run) and returns one
// entry.
func groupResource(t *testing.T, group, version, name string) *Resource {
	t.Helper()
	tbl, err := NewTable()
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	r := tbl.Lookup(schema.GroupVersion{Group: group, Version: version}, name)
	if r == nil {
		t.Fatalf("%s/%s %s not in the table", group, version, name)
	}
	return r
}

// hasMessage reports whether some error has the path and its detail
// contains msg.
func hasMessage(errs field.ErrorList, path, msg string) bool {
	for _, e := range errs {
		if e.Field == path && strings.Contains(e.Error(), msg) {
			return true
		}
	}
	return false
}

func testPodTemplate(labels map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}, {Name: "log", Image: "busybox"}}},
	}
}

func newTestDeployment() *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: testPodTemplate(map[string]string{"app": "web"}),
		},
	}
}

func TestAppsTableEntries(t *testing.T) {
	tests := []struct {
		name, kind  string
		short       []string
		subresource []string
	}{
		{"deployments", "Deployment", []string{"deploy"}, []string{"status", "scale"}},
		{"replicasets", "ReplicaSet", []string{"rs"}, []string{"status", "scale"}},
		{"statefulsets", "StatefulSet", []string{"sts"}, []string{"status", "scale"}},
		{"daemonsets", "DaemonSet", []string{"ds"}, []string{"status"}},
		{"controllerrevisions", "ControllerRevision", nil, nil},
	}
	for _, tt := range tests {
		r := groupResource(t, "apps", "v1", tt.name)
		if r.Kind != tt.kind || sprint(r.ShortNames) != sprint(tt.short) || sprint(r.Subresources) != sprint(tt.subresource) || !r.Namespaced {
			t.Errorf("%s: kind %s short %v sub %v namespaced %v", tt.name, r.Kind, r.ShortNames, r.Subresources, r.Namespaced)
		}
		if len(r.Columns) == 0 || r.Columns[0].Name != "Name" {
			t.Errorf("%s: columns %v", tt.name, r.Columns)
		}
	}
}

func TestDeploymentDefaults(t *testing.T) {
	r := groupResource(t, "apps", "v1", "deployments")
	d := newTestDeployment()
	r.Default(d)
	s := d.Spec
	if *s.Replicas != 1 || *s.RevisionHistoryLimit != 10 || *s.ProgressDeadlineSeconds != 600 {
		t.Errorf("replicas %d history %d deadline %d", *s.Replicas, *s.RevisionHistoryLimit, *s.ProgressDeadlineSeconds)
	}
	if s.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || s.Strategy.RollingUpdate.MaxSurge.String() != "25%" || s.Strategy.RollingUpdate.MaxUnavailable.String() != "25%" {
		t.Errorf("strategy %+v", s.Strategy)
	}
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways || s.Template.Spec.Containers[1].ImagePullPolicy != corev1.PullAlways {
		t.Errorf("template not defaulted: %+v", s.Template.Spec)
	}

	// Recreate gets no rolling update parameters; given values stay.
	d = newTestDeployment()
	d.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType
	d.Spec.Replicas = ptr.To[int32](0)
	r.Default(d)
	if d.Spec.Strategy.RollingUpdate != nil || *d.Spec.Replicas != 0 {
		t.Errorf("recreate: %+v replicas %d", d.Spec.Strategy, *d.Spec.Replicas)
	}
	if errs := r.Validate(d); len(errs) != 0 {
		t.Errorf("recreate deployment invalid: %v", errs)
	}
}

func TestValidateDeployment(t *testing.T) {
	r := groupResource(t, "apps", "v1", "deployments")
	tests := []struct {
		name   string
		mutate func(d *appsv1.Deployment)
		want   []string
	}{
		{"valid", func(*appsv1.Deployment) {}, nil},
		{"no selector", func(d *appsv1.Deployment) { d.Spec.Selector = nil }, []string{"spec.selector: FieldValueRequired"}},
		{"empty selector", func(d *appsv1.Deployment) { d.Spec.Selector = &metav1.LabelSelector{} }, []string{"spec.selector: FieldValueInvalid"}},
		{"selector does not match", func(d *appsv1.Deployment) { d.Spec.Selector.MatchLabels = map[string]string{"app": "db"} },
			[]string{"spec.template.metadata.labels: FieldValueInvalid"}},
		{"negative replicas", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](-1) }, []string{"spec.replicas: FieldValueInvalid"}},
		{"restart never", func(d *appsv1.Deployment) { d.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever },
			[]string{"spec.template.spec.restartPolicy: FieldValueNotSupported"}},
		{"active deadline", func(d *appsv1.Deployment) { d.Spec.Template.Spec.ActiveDeadlineSeconds = ptr.To[int64](5) },
			[]string{"spec.template.spec.activeDeadlineSeconds: FieldValueForbidden"}},
		{"surge and unavailable zero", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate.MaxSurge = ptr.To(intstr.FromInt32(0))
			d.Spec.Strategy.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromString("0%"))
		}, []string{"spec.strategy.rollingUpdate.maxUnavailable: FieldValueInvalid"}},
		{"unavailable over 100%", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromString("150%"))
		},
			[]string{"spec.strategy.rollingUpdate.maxUnavailable: FieldValueInvalid"}},
		{"bad percent", func(d *appsv1.Deployment) { d.Spec.Strategy.RollingUpdate.MaxSurge = ptr.To(intstr.FromString("x")) },
			[]string{"spec.strategy.rollingUpdate.maxSurge: FieldValueInvalid"}},
		{"recreate with rolling update", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType },
			[]string{"spec.strategy.rollingUpdate: FieldValueForbidden"}},
		{"unknown strategy", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = "Blue" }, []string{"spec.strategy.type: FieldValueNotSupported"}},
		{"deadline not above minReady", func(d *appsv1.Deployment) { d.Spec.MinReadySeconds = 600 },
			[]string{"spec.progressDeadlineSeconds: FieldValueInvalid"}},
		{"status ready above replicas", func(d *appsv1.Deployment) { d.Status.ReadyReplicas = 2 },
			[]string{"status.readyReplicas: FieldValueInvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDeployment()
			r.Default(d)
			tt.mutate(d)
			checkErrors(t, r.Validate(d), tt.want...)
		})
	}
}

func TestDeploymentStrategy(t *testing.T) {
	r := groupResource(t, "apps", "v1", "deployments")
	d := newTestDeployment()
	r.Default(d)
	d.Status.Replicas = 3
	d.Generation = 7
	r.PrepareForCreate(d)
	if d.Status.Replicas != 0 || d.Generation != 1 {
		t.Errorf("create: status %+v generation %d", d.Status, d.Generation)
	}

	old := d.DeepCopy()
	old.Status.Replicas = 2

	// A metadata-only update keeps the generation and the stored status.
	upd := old.DeepCopy()
	upd.Labels = map[string]string{"x": "y"}
	upd.Status = appsv1.DeploymentStatus{}
	r.PrepareForUpdate(upd, old)
	if upd.Generation != 1 || upd.Status.Replicas != 2 {
		t.Errorf("metadata update: generation %d status %+v", upd.Generation, upd.Status)
	}
	// A spec change bumps it, through scale too.
	upd = old.DeepCopy()
	upd.Spec.Replicas = ptr.To[int32](5)
	r.PrepareForUpdate(upd, old)
	if upd.Generation != 2 {
		t.Errorf("spec update: generation %d", upd.Generation)
	}
	upd = old.DeepCopy()
	upd.Spec.Replicas = ptr.To[int32](5)
	r.PrepareForSubresource["scale"](upd, old)
	if upd.Generation != 2 {
		t.Errorf("scale update: generation %d", upd.Generation)
	}
	// The status subresource changes the status only.
	upd = old.DeepCopy()
	upd.Spec.Replicas = ptr.To[int32](9)
	upd.Status.Replicas = 4
	r.PrepareForStatusUpdate(upd, old)
	if *upd.Spec.Replicas != 1 || upd.Status.Replicas != 4 || upd.Generation != 1 {
		t.Errorf("status update: %+v %+v", upd.Spec, upd.Status)
	}

	// The selector is immutable.
	upd = old.DeepCopy()
	upd.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "v": "2"}}
	upd.Spec.Template.Labels["v"] = "2"
	errs := r.ValidateUpdate(upd, old)
	checkErrors(t, errs, "spec.selector: FieldValueInvalid")
	if !hasMessage(errs, "spec.selector", "field is immutable") {
		t.Errorf("message: %v", errs)
	}
}

func TestDeploymentRow(t *testing.T) {
	r := groupResource(t, "apps", "v1", "deployments")
	d := newTestDeployment()
	r.Default(d)
	d.Spec.Replicas = ptr.To[int32](3)
	d.Status = appsv1.DeploymentStatus{Replicas: 3, ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2}
	d.CreationTimestamp = metav1.NewTime(time.Now().Add(-90 * time.Second))
	got := sprint(r.Row(d))
	want := sprint([]interface{}{"web", "2/3", int64(3), int64(2), "90s", "app,log", "nginx:1.25,busybox", "app=web"})
	if got != want {
		t.Errorf("row %s, want %s", got, want)
	}
	if len(r.Row(d)) != len(r.Columns) {
		t.Errorf("%d cells for %d columns", len(r.Row(d)), len(r.Columns))
	}
}

func TestReplicaSet(t *testing.T) {
	r := groupResource(t, "apps", "v1", "replicasets")
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"web"}}}},
			Template: testPodTemplate(map[string]string{"app": "web"}),
		},
	}
	r.Default(rs)
	if *rs.Spec.Replicas != 1 {
		t.Errorf("replicas %d", *rs.Spec.Replicas)
	}
	checkErrors(t, r.Validate(rs))
	rs.Status = appsv1.ReplicaSetStatus{Replicas: 1, FullyLabeledReplicas: 2}
	checkErrors(t, r.Validate(rs), "status.fullyLabeledReplicas: FieldValueInvalid")
	rs.Status = appsv1.ReplicaSetStatus{Replicas: 4, ReadyReplicas: 1}
	if f := r.Fields(rs); f["status.replicas"] != "4" {
		t.Errorf("fields %v", f)
	}
	rs.CreationTimestamp = metav1.NewTime(time.Now().Add(-time.Hour))
	want := sprint([]interface{}{"web-1", int64(1), int64(4), int64(1), "60m", "app,log", "nginx:1.25,busybox", "app in (web)"})
	if got := sprint(r.Row(rs)); got != want {
		t.Errorf("row %s, want %s", got, want)
	}
}

func newTestStatefulSet() *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: "db",
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template:    testPodTemplate(map[string]string{"app": "db"}),
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
				},
			}},
		},
	}
}

func TestStatefulSetDefaults(t *testing.T) {
	r := groupResource(t, "apps", "v1", "statefulsets")
	ss := newTestStatefulSet()
	r.Default(ss)
	s := ss.Spec
	if s.PodManagementPolicy != appsv1.OrderedReadyPodManagement || *s.Replicas != 1 || *s.RevisionHistoryLimit != 10 {
		t.Errorf("policy %s replicas %d history %d", s.PodManagementPolicy, *s.Replicas, *s.RevisionHistoryLimit)
	}
	if s.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType || *s.UpdateStrategy.RollingUpdate.Partition != 0 {
		t.Errorf("update strategy %+v", s.UpdateStrategy)
	}
	if p := s.PersistentVolumeClaimRetentionPolicy; p.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType || p.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Errorf("retention %+v", p)
	}
	pvc := s.VolumeClaimTemplates[0]
	if pvc.Status.Phase != corev1.ClaimPending || *pvc.Spec.VolumeMode != corev1.PersistentVolumeFilesystem {
		t.Errorf("claim template %+v", pvc)
	}
	checkErrors(t, r.Validate(ss))

	// OnDelete keeps no rolling update block.
	ss = newTestStatefulSet()
	ss.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType
	r.Default(ss)
	if ss.Spec.UpdateStrategy.RollingUpdate != nil {
		t.Errorf("on delete: %+v", ss.Spec.UpdateStrategy)
	}
}

func TestValidateStatefulSet(t *testing.T) {
	r := groupResource(t, "apps", "v1", "statefulsets")
	tests := []struct {
		name   string
		mutate func(ss *appsv1.StatefulSet)
		want   []string
	}{
		{"valid", func(*appsv1.StatefulSet) {}, nil},
		{"bad pod management", func(ss *appsv1.StatefulSet) { ss.Spec.PodManagementPolicy = "Random" }, []string{"spec.podManagementPolicy: FieldValueInvalid"}},
		{"negative partition", func(ss *appsv1.StatefulSet) { ss.Spec.UpdateStrategy.RollingUpdate.Partition = ptr.To[int32](-1) },
			[]string{"spec.updateStrategy.rollingUpdate.partition: FieldValueInvalid"}},
		{"on delete with rolling update", func(ss *appsv1.StatefulSet) { ss.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType },
			[]string{"spec.updateStrategy.rollingUpdate: FieldValueInvalid"}},
		{"bad retention", func(ss *appsv1.StatefulSet) { ss.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled = "Keep" },
			[]string{"spec.persistentVolumeClaimRetentionPolicy.whenScaled: FieldValueNotSupported"}},
		{"empty selector", func(ss *appsv1.StatefulSet) { ss.Spec.Selector = &metav1.LabelSelector{} }, []string{"spec.selector: FieldValueInvalid"}},
		{"selector does not match", func(ss *appsv1.StatefulSet) { ss.Spec.Template.Labels = map[string]string{"app": "web"} },
			[]string{"spec.template.metadata.labels: FieldValueInvalid"}},
		{"negative ordinal start", func(ss *appsv1.StatefulSet) { ss.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: -1} },
			[]string{"spec.ordinals.start: FieldValueInvalid"}},
		{"claim without access modes", func(ss *appsv1.StatefulSet) { ss.Spec.VolumeClaimTemplates[0].Spec.AccessModes = nil },
			[]string{"spec.volumeClaimTemplates[0].spec.accessModes: FieldValueRequired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := newTestStatefulSet()
			r.Default(ss)
			tt.mutate(ss)
			checkErrors(t, r.Validate(ss), tt.want...)
		})
	}
}

func TestStatefulSetUpdate(t *testing.T) {
	r := groupResource(t, "apps", "v1", "statefulsets")
	old := newTestStatefulSet()
	r.Default(old)
	tests := []struct {
		name    string
		mutate  func(ss *appsv1.StatefulSet)
		allowed bool
	}{
		{"replicas", func(ss *appsv1.StatefulSet) { ss.Spec.Replicas = ptr.To[int32](5) }, true},
		{"template", func(ss *appsv1.StatefulSet) { ss.Spec.Template.Spec.Containers[0].Image = "nginx:1.26" }, true},
		{"update strategy", func(ss *appsv1.StatefulSet) { ss.Spec.UpdateStrategy.RollingUpdate.Partition = ptr.To[int32](2) }, true},
		{"retention", func(ss *appsv1.StatefulSet) {
			ss.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
		}, true},
		{"min ready", func(ss *appsv1.StatefulSet) { ss.Spec.MinReadySeconds = 3 }, true},
		{"ordinals", func(ss *appsv1.StatefulSet) { ss.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: 2} }, true},
		{"history", func(ss *appsv1.StatefulSet) { ss.Spec.RevisionHistoryLimit = ptr.To[int32](3) }, true},
		{"service name", func(ss *appsv1.StatefulSet) { ss.Spec.ServiceName = "other" }, false},
		{"claims", func(ss *appsv1.StatefulSet) { ss.Spec.VolumeClaimTemplates = nil }, false},
		{"pod management", func(ss *appsv1.StatefulSet) { ss.Spec.PodManagementPolicy = appsv1.ParallelPodManagement }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := old.DeepCopy()
			tt.mutate(ss)
			errs := r.ValidateUpdate(ss, old)
			if tt.allowed {
				checkErrors(t, errs)
				return
			}
			checkErrors(t, errs, "spec: FieldValueForbidden")
			if !hasMessage(errs, "spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden") {
				t.Errorf("message: %v", errs)
			}
		})
	}
	ss := old.DeepCopy()
	ss.Status = appsv1.StatefulSetStatus{Replicas: 1, ReadyReplicas: 1}
	ss.Spec.Replicas = ptr.To[int32](4)
	want := sprint([]interface{}{"db", "1/4", "<unknown>", "app,log", "nginx:1.25,busybox"})
	if got := sprint(r.Row(ss)); got != want {
		t.Errorf("row %s, want %s", got, want)
	}
}

func newTestDaemonSet() *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "kube-system"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: testPodTemplate(map[string]string{"app": "agent"}),
		},
	}
}

func TestDaemonSet(t *testing.T) {
	r := groupResource(t, "apps", "v1", "daemonsets")
	ds := newTestDaemonSet()
	r.Default(ds)
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru.MaxUnavailable.String() != "1" || ru.MaxSurge.String() != "0" || *ds.Spec.RevisionHistoryLimit != 10 {
		t.Errorf("defaults %+v %+v", ds.Spec.UpdateStrategy, ru)
	}

	tests := []struct {
		name   string
		mutate func(ds *appsv1.DaemonSet)
		want   []string
	}{
		{"valid", func(*appsv1.DaemonSet) {}, nil},
		{"surge only", func(ds *appsv1.DaemonSet) {
			ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromString("10%"))}
		}, nil},
		{"surge and unavailable", func(ds *appsv1.DaemonSet) {
			ds.Spec.UpdateStrategy.RollingUpdate.MaxSurge = ptr.To(intstr.FromInt32(1))
		},
			[]string{"spec.updateStrategy.rollingUpdate.maxSurge: FieldValueInvalid"}},
		{"both zero", func(ds *appsv1.DaemonSet) {
			ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromInt32(0))
		},
			[]string{"spec.updateStrategy.rollingUpdate.maxUnavailable: FieldValueRequired"}},
		{"unknown strategy", func(ds *appsv1.DaemonSet) { ds.Spec.UpdateStrategy.Type = "Sometimes" },
			[]string{"spec.updateStrategy.type: FieldValueNotSupported"}},
		{"restart on failure", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure },
			[]string{"spec.template.spec.restartPolicy: FieldValueNotSupported"}},
		{"no selector", func(ds *appsv1.DaemonSet) { ds.Spec.Selector = nil }, []string{"spec.selector: FieldValueRequired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := newTestDaemonSet()
			r.Default(ds)
			tt.mutate(ds)
			checkErrors(t, r.Validate(ds), tt.want...)
		})
	}

	old := ds.DeepCopy()
	upd := ds.DeepCopy()
	upd.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent", "x": "y"}}
	checkErrors(t, r.ValidateUpdate(upd, old), "spec.selector: FieldValueInvalid")

	ds.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
	ds.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 2, UpdatedNumberScheduled: 3, NumberAvailable: 2}
	want := sprint([]interface{}{"agent", int64(3), int64(3), int64(2), int64(3), int64(2), "kubernetes.io/os=linux", "<unknown>", "app,log", "nginx:1.25,busybox", "app=agent"})
	if got := sprint(r.Row(ds)); got != want {
		t.Errorf("row %s, want %s", got, want)
	}
}

func TestControllerRevision(t *testing.T) {
	r := groupResource(t, "apps", "v1", "controllerrevisions")
	cr := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: "db-5d8f", Namespace: "default", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", UID: "u1", Controller: ptr.To(true),
		}}},
		Data:     runtime.RawExtension{Raw: []byte(`{"spec":{}}`)},
		Revision: 3,
	}
	checkErrors(t, r.Validate(cr))
	want := sprint([]interface{}{"db-5d8f", "statefulset.apps/db", int64(3), "<unknown>"})
	if got := sprint(r.Row(cr)); got != want {
		t.Errorf("row %s, want %s", got, want)
	}

	bad := cr.DeepCopy()
	bad.Data = runtime.RawExtension{}
	bad.Revision = -1
	checkErrors(t, r.Validate(bad), "data: FieldValueRequired", "revision: FieldValueInvalid")

	upd := cr.DeepCopy()
	upd.Data = runtime.RawExtension{Raw: []byte(`{"spec":{"x":1}}`)}
	checkErrors(t, r.ValidateUpdate(upd, cr), "data: FieldValueInvalid")

	cr.OwnerReferences = nil
	if got := r.Row(cr)[1]; got != "<none>" {
		t.Errorf("controller cell %v", got)
	}
}

func TestDeploymentAnnotationsBumpGeneration(t *testing.T) {
	r := groupResource(t, "apps", "v1", "deployments")
	old := newTestDeployment()
	r.Default(old)
	r.PrepareForCreate(old)
	upd := old.DeepCopy()
	upd.Annotations = map[string]string{"kubernetes.io/change-cause": "v2"}
	r.PrepareForUpdate(upd, old)
	if upd.Generation != 2 {
		t.Errorf("annotation update: generation %d, want 2", upd.Generation)
	}
	upd = old.DeepCopy()
	upd.Labels = map[string]string{"tier": "front"}
	r.PrepareForUpdate(upd, old)
	if upd.Generation != 1 {
		t.Errorf("label update: generation %d, want 1", upd.Generation)
	}
}

func TestDaemonSetTemplateGeneration(t *testing.T) {
	r := groupResource(t, "apps", "v1", "daemonsets")
	ds := newTestDaemonSet()
	ds.Annotations = map[string]string{appsv1.DeprecatedTemplateGeneration: "7", "keep": "me"}
	r.Default(ds)
	r.PrepareForCreate(ds)
	if ds.Annotations[appsv1.DeprecatedTemplateGeneration] != "1" || ds.Annotations["keep"] != "me" {
		t.Errorf("create annotations %v", ds.Annotations)
	}
	steps := []struct {
		name       string
		mutate     func(ds *appsv1.DaemonSet)
		tg         string
		generation int64
	}{
		{"client value ignored", func(ds *appsv1.DaemonSet) { ds.Annotations[appsv1.DeprecatedTemplateGeneration] = "9" }, "1", 1},
		{"template change", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Image = "nginx:1.26" }, "2", 2},
		{"other spec change", func(ds *appsv1.DaemonSet) { ds.Spec.MinReadySeconds = 5 }, "2", 3},
	}
	for _, s := range steps {
		upd := ds.DeepCopy()
		s.mutate(upd)
		r.PrepareForUpdate(upd, ds)
		if upd.Annotations[appsv1.DeprecatedTemplateGeneration] != s.tg || upd.Generation != s.generation {
			t.Errorf("%s: template generation %s generation %d, want %s %d", s.name, upd.Annotations[appsv1.DeprecatedTemplateGeneration], upd.Generation, s.tg, s.generation)
		}
		ds = upd
	}
}
