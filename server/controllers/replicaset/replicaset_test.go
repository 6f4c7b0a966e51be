package replicaset

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/replicaset/podsim"
)

func TestScaleUpCreatesOwnedPodsFromTemplate(t *testing.T) {
	e := newEnv(t, false, 0)
	rs := e.createRS(t, newRS("web", 3))
	if err := e.reconcile(t, "web"); err != nil {
		t.Fatal(err)
	}
	pods := e.pods(t)
	if len(pods) != 3 {
		t.Fatalf("%d pods, want 3", len(pods))
	}
	for _, p := range pods {
		if !strings.HasPrefix(p.Name, "web-") || len(p.Name) != len("web-")+5 {
			t.Errorf("pod name %q, want web-<5 random>", p.Name)
		}
		if p.GenerateName != "web-" {
			t.Errorf("generateName %q", p.GenerateName)
		}
		ref := metav1.GetControllerOf(p)
		if ref == nil || ref.UID != rs.UID || ref.Kind != "ReplicaSet" || ref.APIVersion != "apps/v1" ||
			ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
			t.Errorf("pod %s owner %+v", p.Name, ref)
		}
		if p.Labels["app"] != "web" || p.Labels["tier"] != "web" {
			t.Errorf("pod labels %v", p.Labels)
		}
		if len(p.Spec.Containers) != 1 || p.Spec.Containers[0].Image != "busybox" {
			t.Errorf("pod spec %+v", p.Spec)
		}
		if want := "Normal SuccessfulCreate Created pod: " + p.Name; !slices.Contains(e.rec.Events(), want) {
			t.Errorf("missing event %q in %v", want, e.rec.Events())
		}
	}
	// The status counts what the cache shows.
	if err := e.reconcile(t, "web"); err != nil {
		t.Fatal(err)
	}
	got := e.getRS(t, "web").Status
	want := appsv1.ReplicaSetStatus{Replicas: 3, FullyLabeledReplicas: 3, ObservedGeneration: 1}
	if !statusEqual(got, want) {
		t.Errorf("status %+v, want %+v", got, want)
	}
}

func TestExpectationsPreventDoubleCreates(t *testing.T) {
	e := newEnv(t, false, 0)
	e.createRS(t, newRS("web", 5))
	// Back-to-back syncs without waiting for the cache: the pods already
	// asked for must not be asked for again.
	for range 10 {
		if err := e.c.reconcile(e.ctx, "default/web"); err != nil && !isRequeue(err) {
			t.Fatal(err)
		}
	}
	creates := 0
	for _, a := range e.api.Actions() {
		if a.Verb == "create" && a.Resource == "pods" {
			creates++
		}
	}
	if creates != 5 {
		t.Fatalf("%d pod creates, want 5", creates)
	}
}

func isRequeue(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "requeue after")
}

func TestSlowStartStopsAfterFailingBatch(t *testing.T) {
	e := newEnv(t, false, 0)
	e.createRS(t, newRS("web", 10))
	var attempts, allowed atomic.Int32
	allowed.Store(3)
	quota := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "web-xxxxx",
		errors.New("exceeded quota: pods, requested: pods=1, used: pods=3, limited: pods=3"))
	e.api.SetFail(func(verb string, gvr schema.GroupVersionResource, _, _ string) error {
		if verb != "create" || gvr != podsGVR {
			return nil
		}
		if attempts.Add(1) > allowed.Load() {
			return quota
		}
		return nil
	})
	err := e.reconcile(t, "web")
	if err == nil {
		t.Fatal("reconcile succeeded, want the quota error")
	}
	// Batches 1 and 2 succeed, the batch of 4 fails: 7 attempts, not 10.
	if n := attempts.Load(); n != 7 {
		t.Errorf("%d create attempts, want 7 (1+2+4)", n)
	}
	if n := len(e.pods(t)); n != 3 {
		t.Errorf("%d pods, want 3", n)
	}
	if n := e.rec.Count("Warning FailedCreate Error creating: pods \"web-xxxxx\" is forbidden: exceeded quota"); n != 4 {
		t.Errorf("%d FailedCreate events, want 4: %v", n, e.rec.Events())
	}
	st := e.getRS(t, "web").Status
	cond := findCondition(st.Conditions, appsv1.ReplicaSetReplicaFailure)
	if cond == nil || cond.Status != corev1.ConditionTrue || cond.Reason != "FailedCreate" || cond.Message != quota.Error() {
		t.Fatalf("ReplicaFailure condition %+v", cond)
	}
	// Like Kubernetes, the status counts the pods the sync started from.
	if st.Replicas != 0 {
		t.Errorf("status.replicas %d, want 0", st.Replicas)
	}

	// Quota raised: the rest is created and the condition goes away.
	allowed.Store(100)
	if err := e.reconcile(t, "web"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.pods(t)); n != 10 {
		t.Fatalf("%d pods, want 10", n)
	}
	if err := e.reconcile(t, "web"); err != nil {
		t.Fatal(err)
	}
	st = e.getRS(t, "web").Status
	if findCondition(st.Conditions, appsv1.ReplicaSetReplicaFailure) != nil || st.Replicas != 10 {
		t.Fatalf("status after recovery %+v", st)
	}
}

func TestScaleDownDeletesPreferredPods(t *testing.T) {
	e := newEnv(t, false, 0)
	rs := e.createRS(t, newRS("web", 6))
	now := time.Now()
	lbls := map[string]string{"app": "web", "tier": "web"}
	for _, s := range []podSpec{
		{name: "running-ready-a", node: "n1", phase: corev1.PodRunning, ready: true, readyAgo: time.Hour},
		{name: "running-ready-b", node: "n2", phase: corev1.PodRunning, ready: true, readyAgo: time.Hour},
		{name: "running-notready", node: "n1", phase: corev1.PodRunning},
		{name: "unknown", node: "n2", phase: corev1.PodUnknown},
		{name: "pending", node: "n3", phase: corev1.PodPending},
		{name: "unassigned", phase: corev1.PodPending},
	} {
		e.api.MustCreate(podsGVR, makePod(s, lbls, rs, now))
	}
	order := []string{"unassigned", "pending", "unknown", "running-notready"}
	for i, want := range order {
		e.scale(t, "web", int32(5-i))
		if err := e.reconcile(t, "web"); err != nil {
			t.Fatal(err)
		}
		if !e.gone(t, want) {
			t.Fatalf("step %d: pod %s not deleted; left %v", i, want, podNames(e.pods(t)))
		}
		if n := len(e.pods(t)); n != 5-i {
			t.Fatalf("step %d: %d pods left, want %d", i, n, 5-i)
		}
	}
	if !slices.Contains(e.rec.Events(), "Normal SuccessfulDelete Deleted pod: unassigned") {
		t.Errorf("missing SuccessfulDelete event: %v", e.rec.Events())
	}
}

func TestPodsToDeleteOrder(t *testing.T) {
	now := time.Now()
	mk := func(s podSpec) *corev1.Pod { return makePod(s, nil, nil, now) }
	cases := []struct {
		name  string
		pods  []podSpec
		first string
	}{
		{"unassigned before assigned", []podSpec{
			{name: "a", node: "n", phase: corev1.PodPending}, {name: "b", phase: corev1.PodPending}}, "b"},
		{"pending before running", []podSpec{
			{name: "a", node: "n", phase: corev1.PodRunning, ready: true}, {name: "b", node: "n", phase: corev1.PodPending}}, "b"},
		{"unknown before running", []podSpec{
			{name: "a", node: "n", phase: corev1.PodRunning}, {name: "b", node: "n", phase: corev1.PodUnknown}}, "b"},
		{"not ready before ready", []podSpec{
			{name: "a", node: "n", phase: corev1.PodRunning, ready: true}, {name: "b", node: "n", phase: corev1.PodRunning}}, "b"},
		{"doubled up before alone", []podSpec{
			{name: "a", node: "n1", phase: corev1.PodRunning, ready: true, readyAgo: time.Hour},
			{name: "b", node: "n2", phase: corev1.PodRunning, ready: true, readyAgo: time.Hour},
			{name: "c", node: "n2", phase: corev1.PodRunning, ready: true, readyAgo: time.Hour}}, "b"},
		{"ready more recently first", []podSpec{
			{name: "a", node: "n1", phase: corev1.PodRunning, ready: true, readyAgo: time.Hour},
			{name: "b", node: "n2", phase: corev1.PodRunning, ready: true, readyAgo: time.Second}}, "b"},
		{"more restarts first", []podSpec{
			{name: "a", node: "n1", phase: corev1.PodRunning, ready: true, readyAgo: time.Hour},
			{name: "b", node: "n2", phase: corev1.PodRunning, ready: true, readyAgo: time.Hour, restarts: 3}}, "b"},
		{"newer first", []podSpec{
			{name: "a", node: "n1", phase: corev1.PodPending, createdAgo: time.Hour},
			{name: "b", node: "n2", phase: corev1.PodPending, createdAgo: time.Minute}}, "b"},
		{"same log2 age bucket by uid", []podSpec{
			{name: "b", node: "n1", phase: corev1.PodPending, createdAgo: 70 * time.Second},
			{name: "a", node: "n2", phase: corev1.PodPending, createdAgo: 80 * time.Second}}, "a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var pods []*corev1.Pod
			for _, s := range tc.pods {
				pods = append(pods, mk(s))
			}
			got := podsToDelete(pods, pods, 1, now)
			if got[0].Name != tc.first {
				t.Errorf("first victim %s, want %s", got[0].Name, tc.first)
			}
		})
	}
	t.Run("deletion cost", func(t *testing.T) {
		a, b := mk(podSpec{name: "a", node: "n", phase: corev1.PodRunning, ready: true}), mk(podSpec{name: "b", node: "n", phase: corev1.PodRunning, ready: true})
		a.Annotations = map[string]string{podDeletionCostAnnotation: "10"}
		b.Annotations = map[string]string{podDeletionCostAnnotation: "-5"}
		if got := podsToDelete([]*corev1.Pod{a, b}, nil, 1, now); got[0].Name != "b" {
			t.Errorf("first victim %s, want the cheaper b", got[0].Name)
		}
	})
}

func TestAdoptionAndRelease(t *testing.T) {
	e := newEnv(t, false, 0)
	rs := e.createRS(t, newRS("web", 2))
	lbls := map[string]string{"app": "web", "tier": "web"}
	now := time.Now()
	e.api.MustCreate(podsGVR, makePod(podSpec{name: "orphan", node: "n1", phase: corev1.PodRunning, ready: true}, lbls, nil, now))
	e.api.MustCreate(podsGVR, makePod(podSpec{name: "owned", node: "n1", phase: corev1.PodRunning, ready: true}, lbls, rs, now))
	other := newRS("other", 1)
	other.UID = "other-uid"
	e.api.MustCreate(podsGVR, makePod(podSpec{name: "foreign", node: "n1", phase: corev1.PodRunning}, lbls, other, now))
	e.api.MustCreate(podsGVR, makePod(podSpec{name: "unrelated", node: "n1", phase: corev1.PodRunning}, map[string]string{"app": "db"}, nil, now))

	if err := e.reconcile(t, "web"); err != nil {
		t.Fatal(err)
	}
	get := func(name string) *corev1.Pod {
		obj, err := e.api.Get(e.ctx, podsGVR, "default", name)
		if err != nil {
			t.Fatal(err)
		}
		return obj.(*corev1.Pod)
	}
	if ref := metav1.GetControllerOf(get("orphan")); ref == nil || ref.UID != rs.UID {
		t.Fatalf("orphan not adopted: %+v", ref)
	}
	if ref := metav1.GetControllerOf(get("foreign")); ref == nil || ref.UID != "other-uid" {
		t.Fatalf("another controller's pod was taken: %+v", ref)
	}
	if ref := metav1.GetControllerOf(get("unrelated")); ref != nil {
		t.Fatalf("non-matching pod adopted")
	}
	if n := len(e.pods(t)); n != 4 {
		t.Fatalf("%d pods, want 4 (2 owned already, nothing created)", n)
	}

	// Relabelled out of the selector: released, and replaced.
	p := get("owned")
	p.Labels = map[string]string{"app": "debug"}
	if _, err := e.api.Update(e.ctx, podsGVR, p, "", "test"); err != nil {
		t.Fatal(err)
	}
	if err := e.reconcile(t, "web"); err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(get("owned")); ref != nil {
		t.Fatalf("relabelled pod not released: %+v", ref)
	}
	owned := 0
	for _, p := range e.pods(t) {
		if ref := metav1.GetControllerOf(p); ref != nil && ref.UID == rs.UID {
			owned++
		}
	}
	if owned != 2 {
		t.Fatalf("%d owned pods after release, want 2", owned)
	}
}

func TestStatusCountsReadyAndAvailable(t *testing.T) {
	e := newEnv(t, false, 0)
	spec := newRS("web", 4)
	spec.Spec.MinReadySeconds = 60
	rs := e.createRS(t, spec)
	now := time.Now()
	full := map[string]string{"app": "web", "tier": "web"}
	partial := map[string]string{"app": "web"}
	e.api.MustCreate(podsGVR, makePod(podSpec{name: "old-ready", node: "n", phase: corev1.PodRunning, ready: true, readyAgo: time.Hour}, full, rs, now))
	e.api.MustCreate(podsGVR, makePod(podSpec{name: "new-ready", node: "n", phase: corev1.PodRunning, ready: true, readyAgo: time.Second}, full, rs, now))
	e.api.MustCreate(podsGVR, makePod(podSpec{name: "not-ready", node: "n", phase: corev1.PodRunning}, full, rs, now))
	e.api.MustCreate(podsGVR, makePod(podSpec{name: "partial", node: "n", phase: corev1.PodPending}, partial, rs, now))
	if err := e.reconcile(t, "web"); err != nil {
		t.Fatal(err)
	}
	got := e.getRS(t, "web").Status
	want := appsv1.ReplicaSetStatus{Replicas: 4, FullyLabeledReplicas: 3, ReadyReplicas: 2, AvailableReplicas: 1, ObservedGeneration: 1}
	if !statusEqual(got, want) {
		t.Errorf("status %+v, want %+v", got, want)
	}
}

func TestMinReadySecondsRequeues(t *testing.T) {
	e := newEnv(t, false, 0)
	spec := newRS("web", 1)
	spec.Spec.MinReadySeconds = 30
	rs := e.createRS(t, spec)
	e.api.MustCreate(podsGVR, makePod(podSpec{name: "p", node: "n", phase: corev1.PodRunning, ready: true, readyAgo: time.Second},
		map[string]string{"app": "web", "tier": "web"}, rs, time.Now()))
	err := e.reconcile(t, "web")
	if !isRequeue(err) || !strings.Contains(err.Error(), "30s") {
		t.Fatalf("reconcile = %v, want a requeue after 30s", err)
	}
}

func TestReplicationControllerAdapter(t *testing.T) {
	e := newEnv(t, true, 2)
	podsim.Start(t, e.api, "node-1")
	rc := e.api.MustCreate(rcGVR, &corev1.ReplicationController{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "legacy", Generation: 1},
		Spec: corev1.ReplicationControllerSpec{
			Replicas: int32p(2),
			Selector: map[string]string{"app": "legacy"},
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "legacy"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}).(*corev1.ReplicationController)
	controllertest.Eventually(t, 10*time.Second, "rc status ready", func() bool {
		obj, err := e.api.Get(context.Background(), rcGVR, "default", "legacy")
		if err != nil {
			return false
		}
		st := obj.(*corev1.ReplicationController).Status
		return st.Replicas == 2 && st.ReadyReplicas == 2 && st.AvailableReplicas == 2 && st.FullyLabeledReplicas == 2 && st.ObservedGeneration == 1
	})
	for _, p := range e.pods(t) {
		ref := metav1.GetControllerOf(p)
		if ref == nil || ref.Kind != "ReplicationController" || ref.APIVersion != "v1" || ref.UID != rc.UID {
			t.Errorf("pod %s owner %+v", p.Name, ref)
		}
		if !strings.HasPrefix(p.Name, "legacy-") {
			t.Errorf("pod name %s", p.Name)
		}
	}
}

func TestRunConvergesWithSimulatedKubelet(t *testing.T) {
	e := newEnv(t, false, 2)
	podsim.Start(t, e.api, "node-1")
	e.createRS(t, newRS("web", 5))
	waitStatus := func(n int32, gen int64) {
		t.Helper()
		controllertest.Eventually(t, 10*time.Second, "replica set status", func() bool {
			rs := e.getRS(t, "web")
			st := rs.Status
			return len(e.pods(t)) == int(n) && st.Replicas == n && st.ReadyReplicas == n && st.AvailableReplicas == n && st.ObservedGeneration == gen
		})
	}
	waitStatus(5, 1)
	e.scale(t, "web", 2)
	waitStatus(2, 2)
	e.scale(t, "web", 0)
	waitStatus(0, 3)
	if n := e.rec.Count("Normal SuccessfulDelete"); n != 5 {
		t.Errorf("%d SuccessfulDelete events, want 5", n)
	}
}
