package history

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/registry"
)

var dsKind = appsv1.SchemeGroupVersion.WithKind("DaemonSet")

func template(image string) *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "a"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
	}
}

func TestHashAndName(t *testing.T) {
	data := []byte(`{"spec":{}}`)
	one, two := int32(1), int32(2)
	tests := []struct {
		name  string
		a, b  string
		equal bool
	}{
		{"same data, no count", Hash(data, nil), Hash(data, nil), true},
		{"collision count changes the hash", Hash(data, &one), Hash(data, &two), false},
		{"data changes the hash", Hash(data, nil), Hash([]byte(`{"spec":{"x":1}}`), nil), false},
	}
	for _, tt := range tests {
		if (tt.a == tt.b) != tt.equal {
			t.Errorf("%s: %q vs %q", tt.name, tt.a, tt.b)
		}
	}
	h := Hash(data, nil)
	for _, r := range h {
		// SafeEncodeString avoids vowels and look-alike digits.
		if strings.ContainsRune("aeiou013", r) {
			t.Errorf("hash %q contains %q", h, r)
		}
	}
	long := strings.Repeat("x", 300)
	if n := Name(long, h); len(n) != maxPrefixLen+1+len(h) || !strings.HasSuffix(n, "-"+h) {
		t.Errorf("Name of a long prefix = %q (%d bytes)", n, len(n))
	}
	if n := Name("web", "abc"); n != "web-abc" {
		t.Errorf("Name = %q", n)
	}
}

// The revision data is what `kubectl rollout undo` sends back as a
// strategic merge patch: applied to a workload with another template it
// restores the recorded one exactly.
func TestTemplatePatchRestoresTemplate(t *testing.T) {
	recorded := template("busybox:1")
	recorded.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	data, err := TemplatePatch(recorded)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"$patch":"replace"`) || !strings.HasPrefix(string(data), `{"spec":{"template":{`) {
		t.Fatalf("patch %s", data)
	}
	again, _ := TemplatePatch(recorded.DeepCopy())
	if string(again) != string(data) {
		t.Fatal("equal templates give different data")
	}

	current := &appsv1.DaemonSet{Spec: appsv1.DaemonSetSpec{Template: *template("busybox:2")}}
	current.Spec.Template.Labels["extra"] = "x"
	current.Spec.Template.Spec.Containers = append(current.Spec.Template.Spec.Containers, corev1.Container{Name: "sidecar", Image: "s"})
	raw, _ := json.Marshal(current)
	patched, err := strategicpatch.StrategicMergePatch(raw, data, &appsv1.DaemonSet{})
	if err != nil {
		t.Fatal(err)
	}
	var out appsv1.DaemonSet
	if err := json.Unmarshal(patched, &out); err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(out.Spec.Template, *recorded) {
		t.Fatalf("patched template %+v, want %+v", out.Spec.Template, *recorded)
	}
	got, err := TemplateOf(&appsv1.ControllerRevision{Data: runtime.RawExtension{Raw: data}})
	if err != nil || !apiequality.Semantic.DeepEqual(*got, *recorded) {
		t.Fatalf("TemplateOf = %+v, %v", got, err)
	}
}

func TestSortAndNext(t *testing.T) {
	t0 := metav1.NewTime(time.Unix(100, 0))
	t1 := metav1.NewTime(time.Unix(200, 0))
	revs := []*appsv1.ControllerRevision{
		{ObjectMeta: metav1.ObjectMeta{Name: "c", CreationTimestamp: t0}, Revision: 3},
		{ObjectMeta: metav1.ObjectMeta{Name: "b", CreationTimestamp: t1}, Revision: 1},
		{ObjectMeta: metav1.ObjectMeta{Name: "a", CreationTimestamp: t1}, Revision: 1},
		{ObjectMeta: metav1.ObjectMeta{Name: "d", CreationTimestamp: t0}, Revision: 1},
	}
	Sort(revs)
	var names []string
	for _, r := range revs {
		names = append(names, r.Name)
	}
	if strings.Join(names, "") != "dabc" {
		t.Errorf("sorted %v, want d a b c", names)
	}
	if n := Next(revs); n != 4 {
		t.Errorf("Next = %d", n)
	}
	if n := Next(nil); n != 1 {
		t.Errorf("Next of none = %d", n)
	}
}

func newHistory(t *testing.T) (*fakeapi.API, *History, *informer.Informer) {
	t.Helper()
	revisions := &registry.Resource{
		GroupVersion: appsv1.SchemeGroupVersion, Name: "controllerrevisions", Kind: "ControllerRevision", Namespaced: true,
		New: func() runtime.Object { return &appsv1.ControllerRevision{} }, NewList: func() runtime.Object { return &appsv1.ControllerRevisionList{} },
	}
	api := fakeapi.New(append(fakeapi.Resources(), revisions)...)
	inf := informer.New(api, GVR, informer.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = inf.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return api, NewHistory(api, inf, "test", "controller-revision-hash"), inf
}

func waitLen(t *testing.T, inf *informer.Informer, n int) {
	t.Helper()
	if !controllertest.WaitUntil(5*time.Second, func() bool { return inf.Len() == n }) {
		t.Fatalf("cache has %d revisions, want %d", inf.Len(), n)
	}
}

func TestCreateHandlesCollisions(t *testing.T) {
	api, h, _ := newHistory(t)
	ctx := context.Background()
	parent := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ds", UID: "p"}}
	data, _ := TemplatePatch(template("one"))
	count := int32(0)
	rev := New(parent, dsKind, map[string]string{"app": "a"}, data, 1, &count)
	created, err := h.Create(ctx, parent, rev, &count)
	if err != nil {
		t.Fatal(err)
	}
	if count != 0 || created.Name != "ds-"+Hash(data, &count) || created.Labels["controller-revision-hash"] != Hash(data, &count) {
		t.Fatalf("created %s labels %v, count %d", created.Name, created.Labels, count)
	}
	// The same data again: the existing revision, no collision.
	again, err := h.Create(ctx, parent, rev, &count)
	if err != nil || again.UID != created.UID || count != 0 {
		t.Fatalf("recreate: %v, uid %s vs %s, count %d", err, again.UID, created.UID, count)
	}
	// Other data under the same name: the count goes up and the name moves.
	squatter := created.DeepCopy()
	squatter.ResourceVersion, squatter.UID = "", ""
	other, _ := TemplatePatch(template("two"))
	squatter.Name = Name("ds", Hash(other, &count))
	api.MustCreate(GVR, squatter)
	rev2 := New(parent, dsKind, nil, other, 2, &count)
	created2, err := h.Create(ctx, parent, rev2, &count)
	if err != nil {
		t.Fatal(err)
	}
	if count != 1 || created2.Name != Name("ds", Hash(other, &count)) {
		t.Fatalf("after a collision: %s, count %d", created2.Name, count)
	}
}

func TestClaimAdoptsAndReleases(t *testing.T) {
	api, h, inf := newHistory(t)
	ctx := context.Background()
	parent := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ds", UID: "p"}}
	other := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other", UID: "o"}}
	mk := func(name string, lbls map[string]string, owner metav1.Object) {
		r := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: lbls}}
		if owner != nil {
			r.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(owner, dsKind)}
		}
		api.MustCreate(GVR, r)
	}
	match := map[string]string{"app": "a"}
	mk("owned", match, parent)
	mk("orphan", match, nil)
	mk("orphan-mismatch", map[string]string{"app": "b"}, nil)
	mk("owned-mismatch", map[string]string{"app": "b"}, parent)
	mk("others", match, other)
	waitLen(t, inf, 5)

	claimed, err := h.Claim(ctx, parent, dsKind, labels.SelectorFromSet(match))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range claimed {
		got[r.Name] = true
	}
	if len(got) != 2 || !got["owned"] || !got["orphan"] {
		t.Fatalf("claimed %v, want owned and orphan", got)
	}
	check := func(name string, wantOwner schema.GroupVersionKind, uid string) {
		obj, err := api.Get(ctx, GVR, "ns", name)
		if err != nil {
			t.Fatal(err)
		}
		ref := metav1.GetControllerOf(obj.(*appsv1.ControllerRevision))
		switch {
		case uid == "" && ref != nil:
			t.Errorf("%s still owned by %s", name, ref.UID)
		case uid != "" && (ref == nil || string(ref.UID) != uid || ref.Kind != wantOwner.Kind):
			t.Errorf("%s owner %+v, want %s", name, ref, uid)
		}
	}
	check("orphan", dsKind, "p")
	check("owned-mismatch", dsKind, "")
	check("orphan-mismatch", dsKind, "")
	check("others", dsKind, "o")
}

func TestTruncateKeepsLiveAndNewest(t *testing.T) {
	api, h, _ := newHistory(t)
	ctx := context.Background()
	var revs []*appsv1.ControllerRevision
	for i, name := range []string{"r1", "r2", "r3", "r4", "r5"} {
		r := api.MustCreate(GVR, &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Revision: int64(i + 1)})
		revs = append(revs, r.(*appsv1.ControllerRevision))
	}
	live := map[string]bool{"r1": true, "r5": true}
	if err := h.Truncate(ctx, revs, func(r *appsv1.ControllerRevision) bool { return live[r.Name] }, 1); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"r1": true, "r2": false, "r3": false, "r4": true, "r5": true} {
		if got := api.Exists(GVR, "ns", name); got != want {
			t.Errorf("%s exists = %v, want %v", name, got, want)
		}
	}
}
