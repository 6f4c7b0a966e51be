package statefulset

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/history/historytest"
	"github.com/orch-dev/orch/server/controllers/informer"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type env struct {
	t        *testing.T
	api      *fakeapi.API
	kubelet  *historytest.Kubelet
	recorder *controllertest.Recorder
}

func start(t *testing.T) *env {
	t.Helper()
	api := fakeapi.New(historytest.Resources()...)
	api.MustCreate(fakeapi.Nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}})
	e := &env{t: t, api: api, kubelet: &historytest.Kubelet{API: api, DefaultNode: "node-1"}, recorder: &controllertest.Recorder{}}
	factory := informer.NewFactory(api, quiet)
	c := New(api, factory, e.recorder, Options{Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 3)
	go func() { _ = factory.Run(ctx); done <- struct{}{} }()
	go func() { _ = c.Run(ctx); done <- struct{}{} }()
	go func() { e.kubelet.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		for range 3 {
			<-done
		}
	})
	return e
}

func ptr[T any](v T) *T { return &v }

func statefulSet(name string, replicas int32) *appsv1.StatefulSet {
	lbls := map[string]string{"app": name}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Generation: 1},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: "nginx",
			Selector:    &metav1.LabelSelector{MatchLabels: lbls},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbls},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "c", Image: "nginx:1",
					VolumeMounts: []corev1.VolumeMount{{Name: "www", MountPath: "/usr/share/nginx/html"}},
				}}},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "www"},
				Spec:       corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}},
			}},
			PodManagementPolicy: appsv1.OrderedReadyPodManagement,
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{
				Type:          appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr(int32(0))},
			},
		},
	}
}

func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	if !controllertest.WaitUntil(10*time.Second, cond) {
		e.t.Fatalf("timed out waiting for %s; status %+v; pods: %s", what, e.sts("web").Status, e.describePods())
	}
}

func (e *env) pods() map[string]*corev1.Pod {
	objs, _, err := e.api.List(context.Background(), fakeapi.Pods, "default", metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]*corev1.Pod{}
	for _, o := range objs {
		p := o.(*corev1.Pod)
		out[p.Name] = p
	}
	return out
}

func (e *env) describePods() string {
	var b strings.Builder
	for _, p := range e.pods() {
		fmt.Fprintf(&b, "\n  %s rev=%s phase=%s ready=%v deleting=%v", p.Name, podRevision(p), p.Status.Phase, isRunningAndReady(p), p.DeletionTimestamp != nil)
	}
	return b.String()
}

// livePods maps the names of pods not being deleted to their revision.
func (e *env) livePods() map[string]string {
	out := map[string]string{}
	for name, p := range e.pods() {
		if p.DeletionTimestamp == nil {
			out[name] = podRevision(p)
		}
	}
	return out
}

func (e *env) sts(name string) *appsv1.StatefulSet {
	obj, err := e.api.Get(context.Background(), historytest.StatefulSets, "default", name)
	if err != nil {
		e.t.Fatal(err)
	}
	return obj.(*appsv1.StatefulSet)
}

func (e *env) update(name string, mutate func(*appsv1.StatefulSet)) {
	e.t.Helper()
	historytest.Update(e.t, e.api, historytest.StatefulSets, func() *appsv1.StatefulSet { return e.sts(name) }, mutate)
}

func (e *env) revisions() []*appsv1.ControllerRevision {
	e.t.Helper()
	return historytest.Revisions(e.t, e.api, "default")
}

func (e *env) claim(name string) (*corev1.PersistentVolumeClaim, bool) {
	obj, err := e.api.Get(context.Background(), historytest.PersistentVolumeClaims, "default", name)
	if err != nil {
		return nil, false
	}
	return obj.(*corev1.PersistentVolumeClaim), true
}

func (e *env) hasEvent(line string) bool {
	return slices.Contains(e.recorder.Events(), line)
}

func sameKeys(m map[string]string, keys ...string) bool {
	if len(m) != len(keys) {
		return false
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}

func allAt(m map[string]string, rev string) bool {
	for _, r := range m {
		if r != rev {
			return false
		}
	}
	return true
}

func TestOrderedStartAndScaleDown(t *testing.T) {
	e := start(t)
	e.kubelet.HoldNotReady(func(p *corev1.Pod) bool { return p.Name == "web-1" })
	e.api.MustCreate(historytest.StatefulSets, statefulSet("web", 3))

	e.waitFor("web-0 and web-1", func() bool { return sameKeys(e.livePods(), "web-0", "web-1") })
	time.Sleep(100 * time.Millisecond)
	if _, ok := e.pods()["web-2"]; ok {
		t.Fatalf("web-2 created before web-1 was ready: %s", e.describePods())
	}
	for _, c := range []string{"www-web-0", "www-web-1"} {
		claim, ok := e.claim(c)
		if !ok {
			t.Fatalf("claim %s not created", c)
		}
		if claim.Labels["app"] != "web" || len(claim.OwnerReferences) != 0 {
			t.Errorf("claim %s labels %v owners %v", c, claim.Labels, claim.OwnerReferences)
		}
	}
	if _, ok := e.claim("www-web-2"); ok {
		t.Error("claim of web-2 created before its pod is due")
	}

	pod := e.pods()["web-0"]
	revs := e.revisions()
	if len(revs) != 1 || revs[0].Revision != 1 || !strings.HasPrefix(revs[0].Name, "web-") {
		t.Fatalf("revisions %+v", revs)
	}
	wantLabels := map[string]string{
		"app": "web", "statefulset.kubernetes.io/pod-name": "web-0", "apps.kubernetes.io/pod-index": "0",
		"controller-revision-hash": revs[0].Name,
	}
	for k, v := range wantLabels {
		if pod.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, pod.Labels[k], v)
		}
	}
	if pod.Spec.Hostname != "web-0" || pod.Spec.Subdomain != "nginx" {
		t.Errorf("hostname %q subdomain %q", pod.Spec.Hostname, pod.Spec.Subdomain)
	}
	if v := pod.Spec.Volumes; len(v) != 1 || v[0].Name != "www" || v[0].PersistentVolumeClaim == nil || v[0].PersistentVolumeClaim.ClaimName != "www-web-0" {
		t.Errorf("volumes %+v", v)
	}
	if ref := metav1.GetControllerOf(pod); ref == nil || ref.Kind != "StatefulSet" || ref.Name != "web" {
		t.Errorf("controller %+v", ref)
	}
	for _, line := range []string{
		"Normal SuccessfulCreate create Pod web-0 in StatefulSet web successful",
		"Normal SuccessfulCreate create Claim www-web-0 Pod web-0 in StatefulSet web success",
	} {
		if !e.hasEvent(line) {
			t.Errorf("no event %q in %q", line, e.recorder.Events())
		}
	}

	e.kubelet.HoldNotReady(nil)
	e.waitFor("all three ready", func() bool { return e.sts("web").Status.ReadyReplicas == 3 })
	st := e.sts("web").Status
	if st.Replicas != 3 || st.CurrentReplicas != 3 || st.UpdatedReplicas != 3 || st.AvailableReplicas != 3 ||
		st.ObservedGeneration != 1 || st.CurrentRevision != revs[0].Name || st.UpdateRevision != revs[0].Name {
		t.Fatalf("status %+v", st)
	}

	e.update("web", func(s *appsv1.StatefulSet) { s.Spec.Replicas = ptr(int32(1)) })
	e.waitFor("scaled down to web-0", func() bool { return sameKeys(e.livePods(), "web-0") && len(e.pods()) == 1 })
	var deleted []string
	for _, a := range e.api.Actions() {
		if a.Verb == "delete" && a.Resource == "pods" {
			deleted = append(deleted, a.Name)
		}
	}
	// web-2 first; the kubelet finishes each deletion with a second delete.
	if len(deleted) == 0 || deleted[0] != "web-2" || deleted[len(deleted)-1] != "web-1" || slices.Index(deleted, "web-1") < slices.Index(deleted, "web-2") {
		t.Fatalf("pods deleted in order %v, want web-2 then web-1", deleted)
	}
	e.waitFor("status of 1", func() bool {
		st := e.sts("web").Status
		return st.Replicas == 1 && st.ReadyReplicas == 1 && st.ObservedGeneration == 2
	})
	// Retain: the claims stay.
	for _, c := range []string{"www-web-0", "www-web-1", "www-web-2"} {
		if _, ok := e.claim(c); !ok {
			t.Errorf("claim %s deleted under the Retain policy", c)
		}
	}
}

func TestParallelStartsAllAtOnce(t *testing.T) {
	e := start(t)
	e.kubelet.HoldNotReady(func(p *corev1.Pod) bool { return true })
	set := statefulSet("web", 3)
	set.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
	e.api.MustCreate(historytest.StatefulSets, set)
	e.waitFor("all three pods while none is ready", func() bool { return sameKeys(e.livePods(), "web-0", "web-1", "web-2") })
	e.kubelet.HoldNotReady(nil)
	e.waitFor("all ready", func() bool { return e.sts("web").Status.ReadyReplicas == 3 })
}

func TestPartitionedRollingUpdateAndRollback(t *testing.T) {
	e := start(t)
	set := statefulSet("web", 3)
	set.Spec.UpdateStrategy.RollingUpdate.Partition = ptr(int32(1))
	e.api.MustCreate(historytest.StatefulSets, set)
	e.waitFor("all ready", func() bool { return e.sts("web").Status.ReadyReplicas == 3 })
	oldRev := e.revisions()[0].Name

	e.update("web", func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Image = "nginx:2" })
	e.waitFor("two revisions", func() bool { return len(e.revisions()) == 2 })
	newRev := e.revisions()[1].Name
	e.waitFor("web-1 and web-2 updated", func() bool {
		p := e.livePods()
		return len(p) == 3 && p["web-0"] == oldRev && p["web-1"] == newRev && p["web-2"] == newRev
	})
	e.waitFor("status of a partitioned update", func() bool {
		st := e.sts("web").Status
		return st.ReadyReplicas == 3 && st.UpdatedReplicas == 2 && st.CurrentReplicas == 1 &&
			st.CurrentRevision == oldRev && st.UpdateRevision == newRev && st.ObservedGeneration == 2
	})
	var deleted []string
	for _, a := range e.api.Actions() {
		if a.Verb == "delete" && a.Resource == "pods" && !slices.Contains(deleted, a.Name) {
			deleted = append(deleted, a.Name)
		}
	}
	if !slices.Equal(deleted, []string{"web-2", "web-1"}) {
		t.Fatalf("replaced %v, want web-2 then web-1", deleted)
	}

	e.update("web", func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.RollingUpdate.Partition = ptr(int32(0)) })
	e.waitFor("update complete", func() bool {
		st := e.sts("web").Status
		return allAt(e.livePods(), newRev) && st.ReadyReplicas == 3 && st.UpdatedReplicas == 3 && st.CurrentReplicas == 3 &&
			st.CurrentRevision == newRev && st.UpdateRevision == newRev
	})

	// Rollback: the old template again reuses its revision, renumbered 3.
	e.update("web", func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Image = "nginx:1" })
	e.waitFor("rolled back", func() bool {
		st := e.sts("web").Status
		return len(e.livePods()) == 3 && allAt(e.livePods(), oldRev) && st.ReadyReplicas == 3 && st.CurrentRevision == oldRev && st.UpdateRevision == oldRev
	})
	revs := e.revisions()
	if len(revs) != 2 || revs[0].Name != newRev || revs[0].Revision != 2 || revs[1].Name != oldRev || revs[1].Revision != 3 {
		t.Fatalf("revisions after rollback: %s=%d %s=%d", revs[0].Name, revs[0].Revision, revs[1].Name, revs[1].Revision)
	}
}

func TestOnDelete(t *testing.T) {
	e := start(t)
	set := statefulSet("web", 2)
	set.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
	e.api.MustCreate(historytest.StatefulSets, set)
	e.waitFor("all ready", func() bool { return e.sts("web").Status.ReadyReplicas == 2 })
	oldRev := e.revisions()[0].Name

	e.update("web", func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Image = "nginx:2" })
	e.waitFor("observed", func() bool { return e.sts("web").Status.ObservedGeneration == 2 })
	time.Sleep(50 * time.Millisecond)
	if !allAt(e.livePods(), oldRev) {
		t.Fatalf("OnDelete replaced pods by itself: %s", e.describePods())
	}
	newRev := e.sts("web").Status.UpdateRevision
	if _, err := e.api.Delete(context.Background(), fakeapi.Pods, "default", "web-0", nil); err != nil {
		t.Fatal(err)
	}
	e.waitFor("web-0 recreated at the update revision", func() bool {
		p := e.livePods()
		return p["web-0"] == newRev && p["web-1"] == oldRev
	})
	e.waitFor("counts", func() bool {
		st := e.sts("web").Status
		return st.UpdatedReplicas == 1 && st.CurrentReplicas == 1 && st.ReadyReplicas == 2
	})
}

func TestClaimRetentionPolicyDelete(t *testing.T) {
	e := start(t)
	set := statefulSet("web", 2)
	set.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
		WhenDeleted: appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
		WhenScaled:  appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
	}
	e.api.MustCreate(historytest.StatefulSets, set)
	e.waitFor("all ready", func() bool { return e.sts("web").Status.ReadyReplicas == 2 })
	uid := e.sts("web").UID
	for _, c := range []string{"www-web-0", "www-web-1"} {
		claim, _ := e.claim(c)
		if len(claim.OwnerReferences) != 1 || claim.OwnerReferences[0].UID != uid || claim.OwnerReferences[0].Kind != "StatefulSet" {
			t.Fatalf("claim %s owners %+v, want the stateful set", c, claim.OwnerReferences)
		}
	}

	web1UID := e.pods()["web-1"].UID
	e.update("web", func(s *appsv1.StatefulSet) { s.Spec.Replicas = ptr(int32(1)) })
	e.waitFor("web-1 gone", func() bool { _, ok := e.pods()["web-1"]; return !ok })
	claim, _ := e.claim("www-web-1")
	var owners []string
	for _, r := range claim.OwnerReferences {
		owners = append(owners, r.Kind+"/"+r.Name+"/"+string(r.UID))
	}
	want := []string{"StatefulSet/web/" + string(uid), "Pod/web-1/" + string(web1UID)}
	if !slices.Equal(owners, want) {
		t.Fatalf("owners of the condemned claim %v, want %v (the garbage collector deletes it with the pod)", owners, want)
	}
	claim0, _ := e.claim("www-web-0")
	if len(claim0.OwnerReferences) != 1 {
		t.Fatalf("owners of a kept claim %+v", claim0.OwnerReferences)
	}
}

func TestFailedPodIsRecreated(t *testing.T) {
	e := start(t)
	e.api.MustCreate(historytest.StatefulSets, statefulSet("web", 2))
	e.waitFor("all ready", func() bool { return e.sts("web").Status.ReadyReplicas == 2 })
	uid := e.pods()["web-1"].UID
	e.kubelet.Fail("default", "web-1")
	e.waitFor("web-1 recreated", func() bool {
		p, ok := e.pods()["web-1"]
		return ok && p.UID != uid && isRunningAndReady(p)
	})
}

func TestParentAndOrdinal(t *testing.T) {
	tests := []struct {
		name   string
		parent string
		ord    int
	}{
		{"web-0", "web", 0},
		{"my-db-12", "my-db", 12},
		{"web", "", -1},
		{"web-x", "", -1},
	}
	for _, tt := range tests {
		parent, ord := parentAndOrdinal(tt.name)
		if parent != tt.parent || ord != tt.ord {
			t.Errorf("parentAndOrdinal(%q) = %q, %d; want %q, %d", tt.name, parent, ord, tt.parent, tt.ord)
		}
	}
}
