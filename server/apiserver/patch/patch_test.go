package patch

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/openapi"
)

// newTestManager serves Deployments, ConfigMaps, Pods and Services.
func newTestManager(t testing.TB) *Manager {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, autoscalingv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	res := func(gv schema.GroupVersion, name string, obj, list interface{}, status bool) openapi.Resource {
		r := openapi.Resource{GroupVersion: gv, Name: name, Kind: reflect.TypeOf(obj).Name(), Namespaced: true,
			Object: reflect.TypeOf(obj), List: reflect.TypeOf(list)}
		if status {
			r.Subresources = []openapi.Subresource{{Name: "status", Type: r.Object, GVK: gv.WithKind(r.Kind)}}
		}
		return r
	}
	b := openapi.NewBuilder([]openapi.Resource{
		res(appsv1.SchemeGroupVersion, "deployments", appsv1.Deployment{}, appsv1.DeploymentList{}, true),
		res(corev1.SchemeGroupVersion, "configmaps", corev1.ConfigMap{}, corev1.ConfigMapList{}, false),
		res(corev1.SchemeGroupVersion, "pods", corev1.Pod{}, corev1.PodList{}, true),
		res(corev1.SchemeGroupVersion, "services", corev1.Service{}, corev1.ServiceList{}, true),
	})
	withStatus := map[string]bool{"Deployment": true, "Pod": true, "Service": true}
	return NewManager(Options{Scheme: scheme, Models: b.Definitions,
		HasStatus: func(gvk schema.GroupVersionKind) bool { return withStatus[gvk.Kind] }})
}

func livePod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", ResourceVersion: "7",
			Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "a", Image: "busybox", Ports: []corev1.ContainerPort{{ContainerPort: 80, Protocol: "TCP"}}},
			{Name: "b", Image: "nginx"},
		}},
	}
}

func statusCode(err error) int32 {
	var st apierrors.APIStatus
	if s, ok := err.(apierrors.APIStatus); ok {
		st = s
	} else {
		return 0
	}
	return st.Status().Code
}

func TestPatchTypes(t *testing.T) {
	m := newTestManager(t)
	tests := []struct {
		name  string
		pt    types.PatchType
		patch string
		check func(t *testing.T, p *corev1.Pod)
	}{
		{"json patch replace", types.JSONPatchType, `[{"op":"replace","path":"/spec/containers/1/image","value":"nginx:2"}]`,
			func(t *testing.T, p *corev1.Pod) { want(t, p.Spec.Containers[1].Image, "nginx:2") }},
		{"json patch add label", types.JSONPatchType, `[{"op":"add","path":"/metadata/labels/tier","value":"front"}]`,
			func(t *testing.T, p *corev1.Pod) { want(t, p.Labels["tier"], "front") }},
		{"json patch test and copy", types.JSONPatchType,
			`[{"op":"test","path":"/metadata/name","value":"p"},{"op":"copy","from":"/metadata/labels/app","path":"/metadata/labels/copy"}]`,
			func(t *testing.T, p *corev1.Pod) { want(t, p.Labels["copy"], "web") }},
		{"merge patch replaces lists", types.MergePatchType, `{"spec":{"containers":[{"name":"c","image":"x"}]}}`,
			func(t *testing.T, p *corev1.Pod) { want(t, len(p.Spec.Containers), 1) }},
		{"merge patch null deletes", types.MergePatchType, `{"metadata":{"labels":{"app":null}}}`,
			func(t *testing.T, p *corev1.Pod) { want(t, len(p.Labels), 0) }},
		{"strategic merges by name", types.StrategicMergePatchType, `{"spec":{"containers":[{"name":"b","image":"nginx:3"}]}}`,
			func(t *testing.T, p *corev1.Pod) {
				want(t, len(p.Spec.Containers), 2)
				want(t, p.Spec.Containers[1].Image, "nginx:3")
				want(t, p.Spec.Containers[0].Image, "busybox")
			}},
		{"strategic $patch delete", types.StrategicMergePatchType, `{"spec":{"containers":[{"name":"a","$patch":"delete"}]}}`,
			func(t *testing.T, p *corev1.Pod) {
				want(t, len(p.Spec.Containers), 1)
				want(t, p.Spec.Containers[0].Name, "b")
			}},
		{"strategic $patch replace", types.StrategicMergePatchType,
			`{"spec":{"$patch":"replace","containers":[{"name":"z","image":"zz"}]}}`,
			func(t *testing.T, p *corev1.Pod) {
				want(t, len(p.Spec.Containers), 1)
				want(t, p.Spec.Containers[0].Name, "z")
			}},
		{"strategic $retainKeys-free list of ports merges", types.StrategicMergePatchType,
			`{"spec":{"containers":[{"name":"a","ports":[{"containerPort":443}]}]}}`,
			func(t *testing.T, p *corev1.Pod) { want(t, len(p.Spec.Containers[0].Ports), 2) }},
		{"strategic null patch", types.StrategicMergePatchType, `null`,
			func(t *testing.T, p *corev1.Pod) { want(t, len(p.Spec.Containers), 2) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			live := livePod()
			out, warnings, err := m.Patch(live, tc.pt, []byte(tc.patch), Strict)
			if err != nil {
				t.Fatalf("patch: %v", err)
			}
			if len(warnings) > 0 {
				t.Errorf("warnings: %v", warnings)
			}
			if !reflect.DeepEqual(live, livePod()) {
				t.Error("live object was modified")
			}
			p := out.(*corev1.Pod)
			want(t, p.ResourceVersion, "7")
			tc.check(t, p)
		})
	}
}

func want[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestPatchErrors(t *testing.T) {
	m := newTestManager(t)
	tests := []struct {
		name    string
		pt      types.PatchType
		patch   string
		fv      FieldValidation
		code    int32
		message string
	}{
		{"malformed json patch", types.JSONPatchType, `[{"op":`, Strict, http.StatusBadRequest, ""},
		{"json patch not a list", types.JSONPatchType, `{"op":"add"}`, Ignore, http.StatusBadRequest, ""},
		{"unknown op", types.JSONPatchType, `[{"op":"explode","path":"/a"}]`, Strict, http.StatusUnprocessableEntity, ""},
		{"missing path", types.JSONPatchType, `[{"op":"remove","path":"/spec/nothere"}]`, Strict, http.StatusUnprocessableEntity, ""},
		{"failed test", types.JSONPatchType, `[{"op":"test","path":"/metadata/name","value":"q"}]`, Strict, http.StatusUnprocessableEntity, ""},
		{"negative index", types.JSONPatchType, `[{"op":"remove","path":"/spec/containers/-1"}]`, Strict, http.StatusUnprocessableEntity, ""},
		{"unknown field in json patch op", types.JSONPatchType, `[{"op":"add","path":"/metadata/labels/x","value":"y","extra":1}]`, Strict, http.StatusBadRequest, "json patch unknown field"},
		{"wrong type after patch", types.JSONPatchType, `[{"op":"replace","path":"/spec/containers","value":"nope"}]`, Strict, http.StatusUnprocessableEntity, "patch: Invalid value"},
		{"malformed merge patch", types.MergePatchType, `{"spec":`, Strict, http.StatusBadRequest, "error decoding patch"},
		{"malformed merge patch ignored validation", types.MergePatchType, `{"spec":`, Ignore, http.StatusBadRequest, ""},
		{"unknown field strict", types.MergePatchType, `{"spec":{"bogus":1}}`, Strict, http.StatusBadRequest, `strict decoding error: unknown field "spec.bogus"`},
		{"duplicate field strict", types.MergePatchType, `{"metadata":{"labels":{"a":"1","a":"2"}}}`, Strict, http.StatusBadRequest, `duplicate field`},
		{"kind change", types.MergePatchType, `{"kind":"Service"}`, Strict, http.StatusBadRequest, "does not match the expected kind"},
		{"apiVersion change", types.MergePatchType, `{"apiVersion":"apps/v1"}`, Strict, http.StatusBadRequest, "does not match the expected API version"},
		{"malformed strategic", types.StrategicMergePatchType, `{"spec":[`, Strict, http.StatusBadRequest, ""},
		{"strategic wrong type", types.StrategicMergePatchType, `{"spec":{"containers":"x"}}`, Strict, 0, ""},
		{"strategic bad directive", types.StrategicMergePatchType, `{"spec":{"$patch":"explode"}}`, Strict, http.StatusBadRequest, ""},
		{"strategic unknown field", types.StrategicMergePatchType, `{"spec":{"bogus":1}}`, Strict, http.StatusBadRequest, `unknown field "spec.bogus"`},
		{"unsupported type", types.PatchType("application/xml"), `<a/>`, Strict, http.StatusUnsupportedMediaType, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := m.Patch(livePod(), tc.pt, []byte(tc.patch), tc.fv)
			if err == nil {
				t.Fatal("patch succeeded")
			}
			code := statusCode(err)
			if tc.code != 0 && code != tc.code {
				t.Errorf("code %d, want %d (%v)", code, tc.code, err)
			}
			if code == 0 || code >= 500 {
				t.Errorf("error is not a client error: %v", err)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not contain %q", err, tc.message)
			}
		})
	}
}

func TestPatchFieldValidation(t *testing.T) {
	m := newTestManager(t)
	patch := []byte(`{"spec":{"bogus":1},"metadata":{"labels":{"x":"y"}}}`)
	for _, pt := range []types.PatchType{types.MergePatchType, types.StrategicMergePatchType} {
		out, warnings, err := m.Patch(livePod(), pt, patch, Warn)
		if err != nil {
			t.Fatalf("%s Warn: %v", pt, err)
		}
		if len(warnings) != 1 || !strings.Contains(warnings[0], `unknown field "spec.bogus"`) {
			t.Errorf("%s Warn warnings = %q", pt, warnings)
		}
		want(t, out.(*corev1.Pod).Labels["x"], "y")
		if _, warnings, err = m.Patch(livePod(), pt, patch, Ignore); err != nil || len(warnings) != 0 {
			t.Errorf("%s Ignore: %v %v", pt, warnings, err)
		}
	}
}

func TestPatchScale(t *testing.T) {
	m := newTestManager(t)
	sc := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "d", ResourceVersion: "3"}, Spec: autoscalingv1.ScaleSpec{Replicas: 1}}
	out, _, err := m.Patch(sc, types.MergePatchType, []byte(`{"spec":{"replicas":5}}`), Strict)
	if err != nil {
		t.Fatal(err)
	}
	want(t, out.(*autoscalingv1.Scale).Spec.Replicas, int32(5))
}

func TestJSONPatchLimits(t *testing.T) {
	m := newTestManager(t)
	// Each pair of copies doubles the labels: the result must be refused
	// before it exhausts memory.
	ops := []string{`{"op":"add","path":"/metadata/labels/a","value":"` + strings.Repeat("x", 1024) + `"}`}
	for i := 0; i < 40; i++ {
		ops = append(ops, `{"op":"copy","from":"/metadata/labels","path":"/metadata/annotations"}`,
			fmt.Sprintf(`{"op":"copy","from":"/metadata/annotations","path":"/metadata/labels/n%d"}`, i))
	}
	_, _, err := m.Patch(livePod(), types.JSONPatchType, []byte("["+strings.Join(ops, ",")+"]"), Strict)
	if code := statusCode(err); code != http.StatusRequestEntityTooLarge {
		t.Errorf("copy bomb: code %d (%v)", code, err)
	}
	many := make([]string, maxJSONPatchOperations+1)
	for i := range many {
		many[i] = `{"op":"test","path":"/metadata/name","value":"p"}`
	}
	_, _, err = m.Patch(livePod(), types.JSONPatchType, []byte("["+strings.Join(many, ",")+"]"), Strict)
	if code := statusCode(err); code != http.StatusRequestEntityTooLarge {
		t.Errorf("too many operations: code %d (%v)", code, err)
	}
}

var deploymentGVK = appsv1.SchemeGroupVersion.WithKind("Deployment")

const deploymentApply = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox
        ports:
        - containerPort: 80
        - containerPort: 80
          protocol: UDP
`

func managers(obj runtime.Object) map[string]metav1.ManagedFieldsEntry {
	out := map[string]metav1.ManagedFieldsEntry{}
	for _, e := range obj.(metav1.Object).GetManagedFields() {
		out[e.Manager+"/"+string(e.Operation)+"/"+e.Subresource] = e
	}
	return out
}

func TestApply(t *testing.T) {
	m := newTestManager(t)

	// Create.
	obj, err := m.Apply(deploymentGVK, nil, []byte(deploymentApply), "alice", false, "")
	if err != nil {
		t.Fatalf("apply create: %v", err)
	}
	d := obj.(*appsv1.Deployment)
	want(t, *d.Spec.Replicas, int32(2))
	want(t, d.Name, "web")
	want(t, len(d.Spec.Template.Spec.Containers[0].Ports), 2)
	mf := managers(d)
	entry, ok := mf["alice/Apply/"]
	if !ok || len(mf) != 1 {
		t.Fatalf("managed fields after create: %v", mf)
	}
	want(t, entry.APIVersion, "apps/v1")
	want(t, entry.FieldsType, "FieldsV1")
	fields := string(entry.FieldsV1.Raw)
	for _, f := range []string{`"f:replicas"`, `"f:containers"`, `"k:{\"name\":\"web\"}"`,
		`"k:{\"containerPort\":80,\"protocol\":\"UDP\"}"`, `"k:{\"containerPort\":80,\"protocol\":\"TCP\"}"`} {
		if !strings.Contains(fields, f) {
			t.Errorf("managed fields lack %s: %s", f, fields)
		}
	}

	// The same manager changes its own field: no conflict.
	d.ResourceVersion = "5"
	obj, err = m.Apply(deploymentGVK, d, []byte(strings.Replace(deploymentApply, "replicas: 2", "replicas: 3", 1)), "alice", false, "")
	if err != nil {
		t.Fatalf("apply update: %v", err)
	}
	d = obj.(*appsv1.Deployment)
	want(t, *d.Spec.Replicas, int32(3))
	want(t, d.ResourceVersion, "5")

	// Another manager: conflict, with the upstream message.
	_, err = m.Apply(deploymentGVK, d, []byte(strings.Replace(deploymentApply, "replicas: 2", "replicas: 4", 1)), "bob", false, "")
	if !apierrors.IsConflict(err) {
		t.Fatalf("apply by another manager: %v, want conflict", err)
	}
	msg := err.Error()
	for _, s := range []string{`Apply failed with 1 conflict`, `conflict with "alice"`, `.spec.replicas`} {
		if !strings.Contains(msg, s) {
			t.Errorf("conflict message %q lacks %q", msg, s)
		}
	}
	// Same values are shared ownership, not a conflict.
	obj, err = m.Apply(deploymentGVK, d, []byte(strings.Replace(deploymentApply, "replicas: 2", "replicas: 3", 1)), "carol", false, "")
	if err != nil {
		t.Fatalf("apply same values by carol: %v", err)
	}
	d = obj.(*appsv1.Deployment)

	// Force takes ownership.
	obj, err = m.Apply(deploymentGVK, d, []byte(strings.Replace(deploymentApply, "replicas: 2", "replicas: 4", 1)), "bob", true, "")
	if err != nil {
		t.Fatalf("forced apply: %v", err)
	}
	d = obj.(*appsv1.Deployment)
	want(t, *d.Spec.Replicas, int32(4))
	mf = managers(d)
	if !strings.Contains(string(mf["bob/Apply/"].FieldsV1.Raw), "f:replicas") ||
		strings.Contains(string(mf["alice/Apply/"].FieldsV1.Raw), "f:replicas") {
		t.Errorf("replicas not moved to bob: %v", mf)
	}

	// An applier dropping a field it alone owns removes it.
	noLabels := strings.Replace(deploymentApply, "  labels: {app: web}\nspec:", "spec:", 1)
	for _, mgr := range []string{"alice", "bob", "carol"} {
		if obj, err = m.Apply(deploymentGVK, d, []byte(noLabels), mgr, true, ""); err != nil {
			t.Fatal(err)
		}
		d = obj.(*appsv1.Deployment)
	}
	if _, ok := d.Labels["app"]; ok {
		t.Errorf("label still there after its managers dropped it: %v", d.Labels)
	}
}

func TestApplyErrors(t *testing.T) {
	m := newTestManager(t)
	tests := []struct {
		name  string
		patch string
		code  int32
	}{
		{"not yaml", "{", http.StatusBadRequest},
		{"empty", "", http.StatusBadRequest},
		{"unknown field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {bogus: 1}\n", http.StatusBadRequest},
		{"wrong kind", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n", http.StatusBadRequest},
		{"managed fields set", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, managedFields: [{manager: x}]}\n", http.StatusBadRequest},
		{"duplicate list keys", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {template: {spec: {containers: [{name: a}, {name: a}]}}}\n", http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Apply(deploymentGVK, nil, []byte(tc.patch), "alice", false, "")
			if code := statusCode(err); code != tc.code {
				t.Errorf("code %d, want %d (%v)", code, tc.code, err)
			}
		})
	}
}

func TestUpdateRecordsManagedFields(t *testing.T) {
	m := newTestManager(t)
	cmGVK := corev1.SchemeGroupVersion.WithKind("ConfigMap")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "default"}, Data: map[string]string{"a": "1"}}
	obj, err := m.Update(cmGVK, nil, cm, "kubectl-create", "")
	if err != nil {
		t.Fatal(err)
	}
	created := obj.(*corev1.ConfigMap)
	mf := managers(created)
	e, ok := mf["kubectl-create/Update/"]
	if !ok || !strings.Contains(string(e.FieldsV1.Raw), `"f:a"`) || e.Time == nil {
		t.Fatalf("managed fields after create: %+v", mf)
	}

	next := created.DeepCopy()
	next.Data["b"] = "2"
	obj, err = m.Update(cmGVK, created, next, "editor", "")
	if err != nil {
		t.Fatal(err)
	}
	mf = managers(obj)
	if !strings.Contains(string(mf["editor/Update/"].FieldsV1.Raw), `"f:b"`) || strings.Contains(string(mf["editor/Update/"].FieldsV1.Raw), `"f:a"`) {
		t.Errorf("editor's fields: %s", mf["editor/Update/"].FieldsV1.Raw)
	}

	// An update without managed fields (a controller writing back an
	// object from its cache, which drops them) keeps the stored ones, as
	// upstream's field manager does; only an explicit empty list resets.
	edited := obj.(*corev1.ConfigMap)
	fromCache := edited.DeepCopy()
	fromCache.ManagedFields = nil
	fromCache.Data["c"] = "3"
	obj, err = m.Update(cmGVK, edited, fromCache, "controller", "")
	if err != nil {
		t.Fatal(err)
	}
	mf = managers(obj)
	_, creator := mf["kubectl-create/Update/"]
	_, editor := mf["editor/Update/"]
	ctrl, ok := mf["controller/Update/"]
	if !creator || !editor || !ok || !strings.Contains(string(ctrl.FieldsV1.Raw), `"f:c"`) {
		t.Errorf("managed fields after an update without them: %+v", mf)
	}

	// A status write is recorded with its subresource, and the main
	// resource's manager does not own status.
	podGVK := corev1.SchemeGroupVersion.WithKind("Pod")
	pod := livePod()
	obj, err = m.Update(podGVK, nil, pod, "creator", "")
	if err != nil {
		t.Fatal(err)
	}
	withStatus := obj.(*corev1.Pod).DeepCopy()
	withStatus.Status.Phase = corev1.PodRunning
	obj, err = m.Update(podGVK, obj, withStatus, "agent", "status")
	if err != nil {
		t.Fatal(err)
	}
	mf = managers(obj)
	e, ok = mf["agent/Update/status"]
	if !ok || !strings.Contains(string(e.FieldsV1.Raw), `"f:phase"`) {
		t.Errorf("status manager: %+v", mf)
	}
}

// TestUpdateKeepsWritingOnBadManagedFields: a client sending garbage
// managed fields does not fail its write.
func TestUpdateKeepsWritingOnBadManagedFields(t *testing.T) {
	m := newTestManager(t)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", ManagedFields: []metav1.ManagedFieldsEntry{
		{Manager: "x", Operation: "Bogus", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:nope":`)}},
	}}}
	if _, err := m.Update(corev1.SchemeGroupVersion.WithKind("ConfigMap"), nil, cm, "m", ""); err != nil {
		t.Fatal(err)
	}
}

func FuzzPatch(f *testing.F) {
	m := newTestManager(f)
	seeds := []struct {
		pt    types.PatchType
		patch string
	}{
		{types.JSONPatchType, `[{"op":"add","path":"/metadata/labels/x","value":"y"}]`},
		{types.JSONPatchType, `[{"op":"copy","from":"/spec","path":"/metadata/labels/x"}]`},
		{types.JSONPatchType, `[{"op":"move","from":"/spec/containers/0","path":"/spec/containers/-"}]`},
		{types.MergePatchType, `{"spec":{"containers":null}}`},
		{types.MergePatchType, `[]`},
		{types.StrategicMergePatchType, `{"spec":{"containers":[{"name":"a","$patch":"delete"}]}}`},
		{types.StrategicMergePatchType, `{"spec":{"$setElementOrder/containers":[{"name":"b"},{"name":"a"}]}}`},
		{types.StrategicMergePatchType, `{"metadata":{"$deleteFromPrimitiveList/finalizers":["x"]}}`},
		{types.StrategicMergePatchType, `{"spec":{"$retainKeys":["containers"]}}`},
	}
	for _, s := range seeds {
		f.Add(string(s.pt), []byte(s.patch))
	}
	f.Fuzz(func(t *testing.T, pt string, patch []byte) {
		switch types.PatchType(pt) {
		case types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType:
		default:
			pt = string(types.StrategicMergePatchType)
		}
		live := livePod()
		out, _, err := m.Patch(live, types.PatchType(pt), patch, Strict)
		if err != nil {
			if code := statusCode(err); code == 0 || code >= 500 {
				t.Fatalf("%s %q: not a client error: %v", pt, patch, err)
			}
			return
		}
		if !reflect.DeepEqual(live, livePod()) {
			t.Fatal("live object modified")
		}
		if _, err := json.Marshal(out); err != nil {
			t.Fatalf("patched object does not encode: %v", err)
		}
	})
}

func FuzzApply(f *testing.F) {
	m := newTestManager(f)
	f.Add([]byte(deploymentApply))
	f.Add([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: -1}\n"))
	f.Add([]byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"template":{"spec":{"containers":[{"name":"a","ports":[{"containerPort":1}]}]}}}}`))
	f.Fuzz(func(t *testing.T, patch []byte) {
		_, err := m.Apply(deploymentGVK, nil, patch, "fuzz", false, "")
		if err != nil {
			if code := statusCode(err); code == 0 || code >= 500 {
				t.Fatalf("%q: not a client error: %v", patch, err)
			}
		}
	})
}

// TestConcurrentUse: one Manager serves concurrent requests (run with -race).
func TestConcurrentUse(t *testing.T) {
	m := newTestManager(t)
	cmGVK := corev1.SchemeGroupVersion.WithKind("ConfigMap")
	done := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func(i int) {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("c", i)}, Data: map[string]string{"a": "1"}}
			if _, err := m.Update(cmGVK, nil, cm, "m", ""); err != nil {
				done <- err
				return
			}
			_, err := m.Apply(deploymentGVK, nil, []byte(deploymentApply), fmt.Sprint("mgr", i), false, "")
			done <- err
		}(i)
	}
	for i := 0; i < 8; i++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
