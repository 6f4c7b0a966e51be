package disruption

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/history/historytest"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/registry"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var t0 = time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)

// widgetsGVR is a made-up kind with a scale subresource, for the generic
// scale finder.
var widgetsGVR = schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) Eventf(obj runtime.Object, eventType, reason, messageFmt string, args ...interface{}) {
	m, _ := meta.Accessor(obj)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf("%s %s %s: %s", m.GetName(), eventType, reason, fmt.Sprintf(messageFmt, args...)))
}

func (r *recorder) has(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.events, func(e string) bool { return strings.HasPrefix(e, prefix) })
}

// resources is historytest's table (apps kinds) plus ReplicationControllers,
// PodDisruptionBudgets (status subresource, spec changes bump the
// generation) and Widgets with a scale subresource.
func resources() []*registry.Resource {
	keepStatus := func(obj, old runtime.Object) {
		switch o := obj.(type) {
		case *policyv1.PodDisruptionBudget:
			oldPDB := old.(*policyv1.PodDisruptionBudget)
			o.Status = oldPDB.Status
			o.Generation = oldPDB.Generation
			if !equalSpec(o, oldPDB) {
				o.Generation++
			}
		case *corev1.ReplicationController:
			o.Status = old.(*corev1.ReplicationController).Status
		}
	}
	keepSpec := func(obj, old runtime.Object) {
		switch o := obj.(type) {
		case *policyv1.PodDisruptionBudget:
			st := o.Status
			*o = *old.(*policyv1.PodDisruptionBudget).DeepCopy()
			o.Status = st
		case *corev1.ReplicationController:
			st := o.Status
			*o = *old.(*corev1.ReplicationController).DeepCopy()
			o.Status = st
		}
	}
	table := historytest.Resources()
	for _, r := range table {
		// As orch's registry serves them.
		if r.GroupVersion.Group == "apps" && r.Kind != "ControllerRevision" {
			r.Subresources = append(r.Subresources, "scale")
		}
	}
	return append(table,
		&registry.Resource{
			GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "replicationcontrollers", Kind: "ReplicationController", Namespaced: true,
			Subresources: []string{"status", "scale"}, PrepareForUpdate: keepStatus, PrepareForStatusUpdate: keepSpec,
			New:     func() runtime.Object { return &corev1.ReplicationController{} },
			NewList: func() runtime.Object { return &corev1.ReplicationControllerList{} },
		},
		&registry.Resource{
			GroupVersion: policyv1.SchemeGroupVersion, Name: "poddisruptionbudgets", Kind: "PodDisruptionBudget", Namespaced: true,
			Subresources: []string{"status"}, PrepareForUpdate: keepStatus, PrepareForStatusUpdate: keepSpec,
			New:     func() runtime.Object { return &policyv1.PodDisruptionBudget{} },
			NewList: func() runtime.Object { return &policyv1.PodDisruptionBudgetList{} },
		},
		&registry.Resource{
			GroupVersion: schema.GroupVersion{Group: "example.com", Version: "v1"}, Name: "widgets", Kind: "Widget", Namespaced: true,
			Subresources: []string{"scale"},
			// Any typed object with spec.replicas does for the fake.
			New:     func() runtime.Object { return &appsv1.ReplicaSet{} },
			NewList: func() runtime.Object { return &appsv1.ReplicaSetList{} },
		},
	)
}

func equalSpec(a, b *policyv1.PodDisruptionBudget) bool {
	return fmt.Sprint(a.Spec.MinAvailable, a.Spec.MaxUnavailable, a.Spec.Selector, a.Spec.UnhealthyPodEvictionPolicy) ==
		fmt.Sprint(b.Spec.MinAvailable, b.Spec.MaxUnavailable, b.Spec.Selector, b.Spec.UnhealthyPodEvictionPolicy)
}

type env struct {
	t     *testing.T
	ctx   context.Context
	api   *fakeapi.API
	clock *clocktesting.FakeClock
	rec   *recorder
	c     *Controller
}

// newEnv builds a controller on a fresh fake with its informers running;
// run also runs its workers (otherwise tests call reconcile themselves).
func newEnv(t *testing.T, run bool) *env {
	t.Helper()
	api := fakeapi.New(resources()...)
	clock := clocktesting.NewFakeClock(t0)
	api.Now = clock.Now
	factory := informer.NewFactory(api, quiet)
	rec := &recorder{}
	opts := Options{Logger: quiet, Clock: clock}
	if run {
		opts.Clock = nil // the queue's delays are real
	}
	c := New(api, factory, rec, opts)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = factory.Run(ctx) })
	if run {
		wg.Go(func() { _ = c.Run(ctx) })
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	if !informer.WaitForSync(ctx, append([]*informer.Informer{c.pdbInformer, c.podInformer}, c.owners...)...) {
		t.Fatal("informers did not sync")
	}
	return &env{t: t, ctx: ctx, api: api, clock: clock, rec: rec, c: c}
}

// waitCache waits until the informers show what the fake stores.
func (e *env) waitCache() {
	e.t.Helper()
	controllertest.WaitForCaches(e.t, e.api, append([]*informer.Informer{e.c.pdbInformer, e.c.podInformer}, e.c.owners...)...)
}

// sync reconciles the budget on a current cache, in the test's goroutine;
// it returns reconcile's result.
func (e *env) sync(name string) error {
	e.t.Helper()
	e.waitCache()
	err := e.c.reconcile(e.ctx, "default/"+name)
	e.waitCache()
	return err
}

func (e *env) mustSync(name string) {
	e.t.Helper()
	if err := e.sync(name); err != nil {
		if _, requeue := queue.RequeueDelay(err); !requeue {
			e.t.Fatalf("sync %s: %v", name, err)
		}
	}
}

func (e *env) pdb(name string) *policyv1.PodDisruptionBudget {
	e.t.Helper()
	obj, err := e.api.Get(e.ctx, pdbsGVR, "default", name)
	if err != nil {
		e.t.Fatal(err)
	}
	return obj.(*policyv1.PodDisruptionBudget)
}

func (e *env) create(gvr schema.GroupVersionResource, obj runtime.Object) runtime.Object {
	e.t.Helper()
	out, err := e.api.Create(e.ctx, gvr, obj, "test")
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func int32p(n int32) *int32 { return &n }

func intOrStr(s string) *intstr.IntOrString {
	v := intstr.Parse(s)
	return &v
}

func newPDB(name string, minAvailable, maxUnavailable string) *policyv1.PodDisruptionBudget {
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Generation: 1},
		Spec: policyv1.PodDisruptionBudgetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		},
	}
	if minAvailable != "" {
		pdb.Spec.MinAvailable = intOrStr(minAvailable)
	}
	if maxUnavailable != "" {
		pdb.Spec.MaxUnavailable = intOrStr(maxUnavailable)
	}
	return pdb
}

// podSpec describes a test pod: its owner (kind/name, "" for none) and
// state.
type podSpec struct {
	name     string
	owner    string
	ready    bool
	deleting bool
	labels   map[string]string
}

func (e *env) addPod(p podSpec) *corev1.Pod {
	e.t.Helper()
	lbls := p.labels
	if lbls == nil {
		lbls = map[string]string{"app": "web"}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: p.name, Labels: lbls},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if p.owner != "" {
		kind, name, _ := strings.Cut(p.owner, "/")
		owner := e.ownerRef(kind, name)
		pod.OwnerReferences = []metav1.OwnerReference{owner}
	}
	status := corev1.ConditionFalse
	if p.ready {
		status = corev1.ConditionTrue
	}
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	out := e.create(fakeapi.Pods, pod).(*corev1.Pod)
	if p.deleting {
		if _, err := e.api.Delete(e.ctx, fakeapi.Pods, "default", p.name, nil); err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

var ownerKinds = map[string]schema.GroupVersionResource{
	"ReplicaSet":            fakeapi.ReplicaSets,
	"Deployment":            fakeapi.Deployments,
	"StatefulSet":           historytest.StatefulSets,
	"ReplicationController": rcsGVR,
	"Widget":                widgetsGVR,
}

// ownerRef returns a controller reference to an existing object, or to a
// made-up one if it does not exist.
func (e *env) ownerRef(kind, name string) metav1.OwnerReference {
	gvr := ownerKinds[kind]
	ref := metav1.OwnerReference{APIVersion: gvr.GroupVersion().String(), Kind: kind, Name: name, UID: types.UID("missing-" + name), Controller: new(true)}
	if obj, err := e.api.Get(e.ctx, gvr, "default", name); err == nil {
		m, _ := meta.Accessor(obj)
		ref.UID = m.GetUID()
	}
	return ref
}

// addOwner creates a workload of kind with replicas; owner ("kind/name")
// controls it if given.
func (e *env) addOwner(kind, name string, replicas int32, owner string) {
	e.t.Helper()
	om := metav1.ObjectMeta{Namespace: "default", Name: name, Generation: 1}
	if owner != "" {
		k, n, _ := strings.Cut(owner, "/")
		om.OwnerReferences = []metav1.OwnerReference{e.ownerRef(k, n)}
	}
	var obj runtime.Object
	switch kind {
	case "ReplicaSet", "Widget":
		obj = &appsv1.ReplicaSet{ObjectMeta: om, Spec: appsv1.ReplicaSetSpec{Replicas: int32p(replicas)}}
	case "Deployment":
		obj = &appsv1.Deployment{ObjectMeta: om, Spec: appsv1.DeploymentSpec{Replicas: int32p(replicas)}}
	case "StatefulSet":
		obj = &appsv1.StatefulSet{ObjectMeta: om, Spec: appsv1.StatefulSetSpec{Replicas: int32p(replicas)}}
	case "ReplicationController":
		obj = &corev1.ReplicationController{ObjectMeta: om, Spec: corev1.ReplicationControllerSpec{Replicas: int32p(replicas)}}
	default:
		e.t.Fatalf("unknown kind %s", kind)
	}
	e.create(ownerKinds[kind], obj)
}

// wantStatus is the part of a budget's status the table tests check.
type wantStatus struct {
	expected, desired, current, allowed int32
	reason                              string // of DisruptionAllowed
}

func statusOf(pdb *policyv1.PodDisruptionBudget) wantStatus {
	got := wantStatus{
		expected: pdb.Status.ExpectedPods, desired: pdb.Status.DesiredHealthy,
		current: pdb.Status.CurrentHealthy, allowed: pdb.Status.DisruptionsAllowed,
	}
	if c := meta.FindStatusCondition(pdb.Status.Conditions, policyv1.DisruptionAllowedCondition); c != nil {
		got.reason = c.Reason
		wantStatus := metav1.ConditionFalse
		if c.Reason == policyv1.SufficientPodsReason {
			wantStatus = metav1.ConditionTrue
		}
		if c.Status != wantStatus {
			got.reason += "(wrong status " + string(c.Status) + ")"
		}
	}
	return got
}

type owner struct {
	kind, name string
	replicas   int32
	owner      string
}

func TestStatus(t *testing.T) {
	ready := func(name, owner string) podSpec { return podSpec{name: name, owner: owner, ready: true} }
	unready := func(name, owner string) podSpec { return podSpec{name: name, owner: owner} }
	tests := []struct {
		name           string
		minAvailable   string
		maxUnavailable string
		owners         []owner
		pods           []podSpec
		want           wantStatus
		wantEvent      string
	}{{
		name: "minAvailable 2 of 3 ready pods", minAvailable: "2",
		pods: []podSpec{ready("a", ""), ready("b", ""), ready("c", "")},
		want: wantStatus{expected: 3, desired: 2, current: 3, allowed: 1, reason: policyv1.SufficientPodsReason},
	}, {
		name: "minAvailable 2 with one pod not ready", minAvailable: "2",
		pods: []podSpec{ready("a", ""), ready("b", ""), unready("c", "")},
		want: wantStatus{expected: 3, desired: 2, current: 2, allowed: 0, reason: policyv1.InsufficientPodsReason},
	}, {
		name: "minAvailable above the pods", minAvailable: "5",
		pods: []podSpec{ready("a", ""), ready("b", "")},
		want: wantStatus{expected: 2, desired: 5, current: 2, allowed: 0, reason: policyv1.InsufficientPodsReason},
	}, {
		name: "a pod being deleted is not healthy", minAvailable: "1",
		pods: []podSpec{ready("a", ""), {name: "b", ready: true, deleting: true}},
		want: wantStatus{expected: 2, desired: 1, current: 1, allowed: 0, reason: policyv1.InsufficientPodsReason},
	}, {
		name: "no pods allow nothing", minAvailable: "0",
		want:      wantStatus{reason: policyv1.InsufficientPodsReason},
		wantEvent: "web Normal NoPods: No matching pods found",
	}, {
		name: "pods of other labels do not count", minAvailable: "1",
		pods: []podSpec{ready("a", ""), ready("b", ""), {name: "other", ready: true, labels: map[string]string{"app": "db"}}},
		want: wantStatus{expected: 2, desired: 1, current: 2, allowed: 1, reason: policyv1.SufficientPodsReason},
	}, {
		name: "maxUnavailable 50% of a Deployment", maxUnavailable: "50%",
		owners: []owner{{kind: "Deployment", name: "web", replicas: 4}, {kind: "ReplicaSet", name: "web-1", replicas: 4, owner: "Deployment/web"}},
		pods:   []podSpec{ready("a", "ReplicaSet/web-1"), ready("b", "ReplicaSet/web-1"), ready("c", "ReplicaSet/web-1"), ready("d", "ReplicaSet/web-1")},
		want:   wantStatus{expected: 4, desired: 2, current: 4, allowed: 2, reason: policyv1.SufficientPodsReason},
	}, {
		name: "maxUnavailable 50% rounds unavailability up", maxUnavailable: "50%",
		owners: []owner{{kind: "ReplicaSet", name: "web", replicas: 3}},
		pods:   []podSpec{ready("a", "ReplicaSet/web"), ready("b", "ReplicaSet/web"), unready("c", "ReplicaSet/web")},
		want:   wantStatus{expected: 3, desired: 1, current: 2, allowed: 1, reason: policyv1.SufficientPodsReason},
	}, {
		name: "a Deployment mid-rollout counts once", maxUnavailable: "1",
		owners: []owner{
			{kind: "Deployment", name: "web", replicas: 3},
			{kind: "ReplicaSet", name: "web-old", replicas: 1, owner: "Deployment/web"},
			{kind: "ReplicaSet", name: "web-new", replicas: 3, owner: "Deployment/web"},
		},
		pods: []podSpec{ready("a", "ReplicaSet/web-old"), ready("b", "ReplicaSet/web-new"), ready("c", "ReplicaSet/web-new"), unready("d", "ReplicaSet/web-new")},
		want: wantStatus{expected: 3, desired: 2, current: 3, allowed: 1, reason: policyv1.SufficientPodsReason},
	}, {
		name: "maxUnavailable 1 of a StatefulSet with one pod not ready", maxUnavailable: "1",
		owners: []owner{{kind: "StatefulSet", name: "web", replicas: 3}},
		pods:   []podSpec{ready("web-0", "StatefulSet/web"), ready("web-1", "StatefulSet/web"), unready("web-2", "StatefulSet/web")},
		want:   wantStatus{expected: 3, desired: 2, current: 2, allowed: 0, reason: policyv1.InsufficientPodsReason},
	}, {
		name: "minAvailable 50% of a ReplicationController rounds up", minAvailable: "50%",
		owners: []owner{{kind: "ReplicationController", name: "web", replicas: 3}},
		pods:   []podSpec{ready("a", "ReplicationController/web"), ready("b", "ReplicationController/web"), ready("c", "ReplicationController/web")},
		want:   wantStatus{expected: 3, desired: 2, current: 3, allowed: 1, reason: policyv1.SufficientPodsReason},
	}, {
		name: "minAvailable percentage counts the scale, not the pods", minAvailable: "60%",
		owners: []owner{{kind: "ReplicaSet", name: "web-a", replicas: 2}, {kind: "ReplicaSet", name: "web-b", replicas: 3}},
		// Two pods still missing: the budget is not met.
		pods: []podSpec{ready("a", "ReplicaSet/web-a"), ready("b", "ReplicaSet/web-b"), ready("c", "ReplicaSet/web-b")},
		want: wantStatus{expected: 5, desired: 3, current: 3, allowed: 0, reason: policyv1.InsufficientPodsReason},
	}, {
		name: "a kind with a scale subresource", minAvailable: "50%",
		owners: []owner{{kind: "Widget", name: "web", replicas: 2}},
		pods:   []podSpec{ready("a", "Widget/web"), ready("b", "Widget/web")},
		want:   wantStatus{expected: 2, desired: 1, current: 2, allowed: 1, reason: policyv1.SufficientPodsReason},
	}, {
		name: "unmanaged pods are not expected", maxUnavailable: "1",
		owners:    []owner{{kind: "ReplicaSet", name: "web", replicas: 2}},
		pods:      []podSpec{ready("a", "ReplicaSet/web"), ready("b", "ReplicaSet/web"), ready("loose", "")},
		want:      wantStatus{expected: 2, desired: 1, current: 3, allowed: 2, reason: policyv1.SufficientPodsReason},
		wantEvent: "web Warning UnmanagedPods: Pods selected by this PodDisruptionBudget",
	}, {
		name: "maxUnavailable with no controllers allows nothing", maxUnavailable: "1",
		pods:      []podSpec{ready("a", ""), ready("b", "")},
		want:      wantStatus{expected: 0, desired: 0, current: 2, allowed: 0, reason: policyv1.InsufficientPodsReason},
		wantEvent: "web Warning UnmanagedPods:",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, false)
			for _, o := range tt.owners {
				e.addOwner(o.kind, o.name, o.replicas, o.owner)
			}
			for _, p := range tt.pods {
				e.addPod(p)
			}
			e.create(pdbsGVR, newPDB("web", tt.minAvailable, tt.maxUnavailable))
			e.mustSync("web")
			pdb := e.pdb("web")
			if got := statusOf(pdb); got != tt.want {
				t.Errorf("status = %+v, want %+v", got, tt.want)
			}
			if pdb.Status.ObservedGeneration != 1 {
				t.Errorf("observedGeneration = %d, want 1", pdb.Status.ObservedGeneration)
			}
			if tt.wantEvent != "" && !e.rec.has(tt.wantEvent) {
				t.Errorf("no event %q in %q", tt.wantEvent, e.rec.events)
			}

			// Nothing changed: no second write.
			before := len(e.api.Actions())
			e.mustSync("web")
			if after := e.api.Actions(); len(after) != before {
				t.Errorf("unchanged status rewritten: %v", after[before:])
			}
		})
	}
}

func TestSyncFailureFailsSafe(t *testing.T) {
	e := newEnv(t, false)
	e.addOwner("ReplicaSet", "web", 2, "")
	e.addPod(podSpec{name: "a", owner: "ReplicaSet/web", ready: true})
	e.addPod(podSpec{name: "b", owner: "ReplicaSet/web", ready: true})
	e.create(pdbsGVR, newPDB("web", "", "1"))
	e.mustSync("web")
	if got := e.pdb("web").Status.DisruptionsAllowed; got != 1 {
		t.Fatalf("disruptionsAllowed = %d, want 1", got)
	}

	// A pod whose controller is gone: expected pods cannot be computed.
	e.addPod(podSpec{name: "orphan", owner: "ReplicaSet/gone", ready: true})
	err := e.sync("web")
	if err == nil || !strings.Contains(err.Error(), `found no controllers for pod "orphan"`) {
		t.Fatalf("sync error = %v, want found no controllers", err)
	}
	pdb := e.pdb("web")
	if pdb.Status.DisruptionsAllowed != 0 {
		t.Errorf("disruptionsAllowed = %d, want 0", pdb.Status.DisruptionsAllowed)
	}
	c := meta.FindStatusCondition(pdb.Status.Conditions, policyv1.DisruptionAllowedCondition)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != policyv1.SyncFailedReason || c.Message != `found no controllers for pod "orphan"` {
		t.Errorf("condition = %+v, want False SyncFailed", c)
	}
	if !e.rec.has("web Warning CalculateExpectedPodCountFailed: Failed to calculate the number of expected pods: found no controllers") {
		t.Errorf("events = %q", e.rec.events)
	}

	// The orphan goes: the budget recovers.
	if _, err := e.api.Delete(e.ctx, fakeapi.Pods, "default", "orphan", &metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	e.mustSync("web")
	if got := statusOf(e.pdb("web")); got != (wantStatus{expected: 2, desired: 1, current: 2, allowed: 1, reason: policyv1.SufficientPodsReason}) {
		t.Errorf("status after recovery = %+v", got)
	}
}

func TestBadSelectorFailsSafe(t *testing.T) {
	e := newEnv(t, false)
	pdb := newPDB("web", "1", "")
	pdb.Spec.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Bogus"}}}
	e.create(pdbsGVR, pdb)
	if err := e.sync("web"); err == nil {
		t.Fatal("sync succeeded with an invalid selector")
	}
	c := meta.FindStatusCondition(e.pdb("web").Status.Conditions, policyv1.DisruptionAllowedCondition)
	if c == nil || c.Reason != policyv1.SyncFailedReason {
		t.Errorf("condition = %+v, want SyncFailed", c)
	}
}

func TestEmptySelectorSelectsNamespace(t *testing.T) {
	e := newEnv(t, false)
	e.addPod(podSpec{name: "a", ready: true, labels: map[string]string{"x": "1"}})
	e.addPod(podSpec{name: "b", ready: true, labels: map[string]string{"y": "2"}})
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "c"}}
	e.create(fakeapi.Pods, other)
	pdb := newPDB("all", "1", "")
	pdb.Spec.Selector = &metav1.LabelSelector{}
	e.create(pdbsGVR, pdb)
	e.mustSync("all")
	if got := statusOf(e.pdb("all")); got != (wantStatus{expected: 2, desired: 1, current: 2, allowed: 1, reason: policyv1.SufficientPodsReason}) {
		t.Errorf("status = %+v", got)
	}
}

// evict does what the API server's eviction does to a budget: take one
// allowed disruption and record the pod.
func (e *env) evict(pdbName, pod string) {
	e.t.Helper()
	pdb := e.pdb(pdbName)
	pdb.Status.DisruptionsAllowed--
	if pdb.Status.DisruptedPods == nil {
		pdb.Status.DisruptedPods = map[string]metav1.Time{}
	}
	pdb.Status.DisruptedPods[pod] = metav1.NewTime(e.clock.Now())
	if _, err := e.api.Update(e.ctx, pdbsGVR, pdb, "status", "test"); err != nil {
		e.t.Fatal(err)
	}
}

func TestDisruptedPods(t *testing.T) {
	e := newEnv(t, false)
	for _, name := range []string{"a", "b", "c"} {
		e.addPod(podSpec{name: name, ready: true})
	}
	e.create(pdbsGVR, newPDB("web", "1", ""))
	e.mustSync("web")

	// Two evictions: one pod is deleted, the other's deletion never comes.
	e.evict("web", "a")
	e.evict("web", "b")
	if _, err := e.api.Delete(e.ctx, fakeapi.Pods, "default", "a", nil); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(30 * time.Second)
	err := e.sync("web")
	delay, requeue := queue.RequeueDelay(err)
	if !requeue || delay != DeletionTimeout-30*time.Second {
		t.Fatalf("sync = %v, want a recheck after %v", err, DeletionTimeout-30*time.Second)
	}
	pdb := e.pdb("web")
	// a is terminating, b is about to be: neither is healthy; a's entry
	// is no longer needed.
	if got := statusOf(pdb); got != (wantStatus{expected: 3, desired: 1, current: 1, allowed: 0, reason: policyv1.InsufficientPodsReason}) {
		t.Errorf("status = %+v", got)
	}
	if _, ok := pdb.Status.DisruptedPods["b"]; !ok || len(pdb.Status.DisruptedPods) != 1 {
		t.Errorf("disruptedPods = %v, want only b", pdb.Status.DisruptedPods)
	}

	// Past the deletion timeout b counts again, with a warning.
	e.clock.Step(DeletionTimeout)
	if err := e.sync("web"); err != nil {
		t.Fatalf("sync: %v", err)
	}
	pdb = e.pdb("web")
	if len(pdb.Status.DisruptedPods) != 0 {
		t.Errorf("disruptedPods = %v, want none", pdb.Status.DisruptedPods)
	}
	if got := statusOf(pdb); got != (wantStatus{expected: 3, desired: 1, current: 2, allowed: 1, reason: policyv1.SufficientPodsReason}) {
		t.Errorf("status = %+v", got)
	}
	if !e.rec.has("b Warning NotDeleted: Pod was expected by PDB default/web to be deleted but it wasn't") {
		t.Errorf("events = %q", e.rec.events)
	}
}

func TestObservedGenerationFollowsSpec(t *testing.T) {
	e := newEnv(t, false)
	for _, name := range []string{"a", "b", "c"} {
		e.addPod(podSpec{name: name, ready: true})
	}
	e.create(pdbsGVR, newPDB("web", "2", ""))
	e.mustSync("web")
	pdb := e.pdb("web")
	pdb.Spec.MinAvailable = intOrStr("3")
	if _, err := e.api.Update(e.ctx, pdbsGVR, pdb, "", "test"); err != nil {
		t.Fatal(err)
	}
	if g := e.pdb("web").Generation; g != 2 {
		t.Fatalf("generation = %d, want 2", g)
	}
	e.mustSync("web")
	pdb = e.pdb("web")
	if pdb.Status.ObservedGeneration != 2 || pdb.Status.DisruptionsAllowed != 0 {
		t.Errorf("observedGeneration %d, disruptionsAllowed %d; want 2, 0", pdb.Status.ObservedGeneration, pdb.Status.DisruptionsAllowed)
	}
	c := meta.FindStatusCondition(pdb.Status.Conditions, policyv1.DisruptionAllowedCondition)
	if c == nil || c.ObservedGeneration != 2 || c.Reason != policyv1.InsufficientPodsReason {
		t.Errorf("condition = %+v", c)
	}
}

func TestStaleDisruptionTargetReset(t *testing.T) {
	e := newEnv(t, false)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "a"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{
			Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI",
			Message: "Eviction API: evicting", LastTransitionTime: metav1.NewTime(t0),
		}}},
	}
	e.create(fakeapi.Pods, pod)
	kubelet := pod.DeepCopy()
	kubelet.Name = "by-kubelet"
	kubelet.Status.Conditions[0].Reason = corev1.PodReasonTerminationByKubelet
	e.create(fakeapi.Pods, kubelet)
	e.waitCache()

	if err := e.c.reconcileStalePod(e.ctx, "default/a"); err == nil {
		t.Fatal("fresh condition reset")
	} else if d, ok := queue.RequeueDelay(err); !ok || d != StalePodDisruptionTimeout {
		t.Fatalf("reconcile = %v, want a recheck after %v", err, StalePodDisruptionTimeout)
	}
	e.clock.Step(StalePodDisruptionTimeout + time.Second)
	for _, key := range []string{"default/a", "default/by-kubelet"} {
		if err := e.c.reconcileStalePod(e.ctx, key); err != nil {
			t.Fatalf("reconcile %s: %v", key, err)
		}
	}
	get := func(name string) corev1.PodCondition {
		obj, err := e.api.Get(e.ctx, fakeapi.Pods, "default", name)
		if err != nil {
			t.Fatal(err)
		}
		return obj.(*corev1.Pod).Status.Conditions[0]
	}
	if c := get("a"); c.Status != corev1.ConditionFalse || c.Reason != "EvictionByEvictionAPI" || !c.LastTransitionTime.Time.Equal(t0.Add(StalePodDisruptionTimeout+time.Second)) {
		t.Errorf("condition of a = %+v, want False", c)
	}
	if c := get("by-kubelet"); c.Status != corev1.ConditionTrue {
		t.Errorf("kubelet's condition changed: %+v", c)
	}
}

// TestRun runs the controller's workers: the status follows pod changes
// without the test reconciling.
func TestRun(t *testing.T) {
	e := newEnv(t, true)
	e.create(pdbsGVR, newPDB("web", "2", ""))
	for _, name := range []string{"a", "b", "c"} {
		e.addPod(podSpec{name: name, ready: true})
	}
	waitStatus := func(want wantStatus) {
		t.Helper()
		if !controllertest.WaitUntil(10*time.Second, func() bool { return statusOf(e.pdb("web")) == want }) {
			t.Fatalf("status = %+v, want %+v", statusOf(e.pdb("web")), want)
		}
	}
	waitStatus(wantStatus{expected: 3, desired: 2, current: 3, allowed: 1, reason: policyv1.SufficientPodsReason})

	// A pod turns unready.
	obj, _ := e.api.Get(e.ctx, fakeapi.Pods, "default", "c")
	pod := obj.(*corev1.Pod)
	pod.Status.Conditions[0].Status = corev1.ConditionFalse
	if _, err := e.api.Update(e.ctx, fakeapi.Pods, pod, "status", "test"); err != nil {
		t.Fatal(err)
	}
	waitStatus(wantStatus{expected: 3, desired: 2, current: 2, allowed: 0, reason: policyv1.InsufficientPodsReason})

	// Its labels change: it leaves the budget.
	obj, _ = e.api.Get(e.ctx, fakeapi.Pods, "default", "c")
	pod = obj.(*corev1.Pod)
	pod.Labels = map[string]string{"app": "other"}
	if _, err := e.api.Update(e.ctx, fakeapi.Pods, pod, "", "test"); err != nil {
		t.Fatal(err)
	}
	waitStatus(wantStatus{expected: 2, desired: 2, current: 2, allowed: 0, reason: policyv1.InsufficientPodsReason})

	// A new ready pod joins.
	e.addPod(podSpec{name: "d", ready: true})
	waitStatus(wantStatus{expected: 3, desired: 2, current: 3, allowed: 1, reason: policyv1.SufficientPodsReason})
}

// TestRunPercentageFollowsScale: a workload scaled before its pods change
// requeues the budgets of its namespace.
func TestRunPercentageFollowsScale(t *testing.T) {
	e := newEnv(t, true)
	e.addOwner("StatefulSet", "web", 2, "")
	e.addPod(podSpec{name: "web-0", owner: "StatefulSet/web", ready: true})
	e.addPod(podSpec{name: "web-1", owner: "StatefulSet/web", ready: true})
	e.create(pdbsGVR, newPDB("web", "50%", ""))
	wait := func(want wantStatus) {
		t.Helper()
		if !controllertest.WaitUntil(10*time.Second, func() bool { return statusOf(e.pdb("web")) == want }) {
			t.Fatalf("status = %+v, want %+v", statusOf(e.pdb("web")), want)
		}
	}
	wait(wantStatus{expected: 2, desired: 1, current: 2, allowed: 1, reason: policyv1.SufficientPodsReason})
	obj, _ := e.api.Get(e.ctx, historytest.StatefulSets, "default", "web")
	ss := obj.(*appsv1.StatefulSet)
	ss.Spec.Replicas = int32p(6)
	if _, err := e.api.Update(e.ctx, historytest.StatefulSets, ss, "", "test"); err != nil {
		t.Fatal(err)
	}
	wait(wantStatus{expected: 6, desired: 3, current: 2, allowed: 0, reason: policyv1.InsufficientPodsReason})
}

// TestConflictIsNotAFailure: an eviction that wrote the budget first makes
// the status write conflict; the budget is not marked SyncFailed (the
// eviction's watch event queues it again).
func TestConflictIsNotAFailure(t *testing.T) {
	e := newEnv(t, false)
	e.addPod(podSpec{name: "a", ready: true})
	e.create(pdbsGVR, newPDB("web", "0", ""))
	e.api.SetFail(func(verb string, gvr schema.GroupVersionResource, _, _ string) error {
		if verb == "update" && gvr == pdbsGVR {
			return apierrors.NewConflict(gvr.GroupResource(), "web", errors.New("the object has been modified"))
		}
		return nil
	})
	if err := e.sync("web"); err != nil {
		t.Fatalf("sync = %v, want nil", err)
	}
	e.api.SetFail(nil)
	if c := meta.FindStatusCondition(e.pdb("web").Status.Conditions, policyv1.DisruptionAllowedCondition); c != nil {
		t.Errorf("condition written despite the conflict: %+v", c)
	}
	e.mustSync("web")
	if got := e.pdb("web").Status.DisruptionsAllowed; got != 1 {
		t.Errorf("disruptionsAllowed = %d, want 1", got)
	}
}
